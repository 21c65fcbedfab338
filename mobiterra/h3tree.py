"""Published multi-resolution tables as trees, in pandas (for readers of the outputs).

A row's ancestors are the rows of the same period whose cells are the H3 parents of its
cells at a coarser resolution of the table; with some rows missing (suppressed), a row's
*nearest* published ancestor may be several resolutions up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mobiterra import columns as C

_KEEP = np.int64(~(0xF << 52))


def parent_np(cells, res: int) -> np.ndarray:
    """Parent of int64 H3 cells at resolution ``res`` (bit arithmetic, as h3cols)."""
    res = int(res)  # a numpy int32 resolution (Parquet) would overflow the shifts
    digits = np.int64((1 << 3 * (15 - res)) - 1)
    return (np.asarray(cells, dtype=np.int64) & _KEEP) | np.int64(res << 52) | digits


def as_int_cells(df: pd.DataFrame, cells: Sequence[str]) -> pd.DataFrame:
    """Published hex strings -> int64 H3 ids (int columns are left alone)."""
    out = df.copy()
    for c in cells:
        if not pd.api.types.is_integer_dtype(out[c]):
            out[c] = out[c].map(lambda s: int(s, 16)).astype(np.int64)
    return out


def nearest_ancestor(
    df: pd.DataFrame, cells: Sequence[str], group: Sequence[str] = ()
) -> tuple[pd.Series, pd.Series]:
    """Positional index and resolution of each row's nearest ancestor row (-1 if none).

    ``df`` has a RangeIndex, ``resolution``, int64 ``cells`` and the ``group`` columns.
    """
    levels = sorted(df[C.RESOLUTION].unique())
    nearest = pd.Series(-1, index=df.index)
    nearest_res = pd.Series(-1, index=df.index)
    keyed = df[[C.RESOLUTION, *cells, *group]].assign(_row=np.arange(len(df)))
    for i, r in enumerate(levels):  # coarse to fine: finer ancestors overwrite coarser
        rows = keyed[keyed[C.RESOLUTION] == r].drop(columns=C.RESOLUTION)
        rows = rows.rename(columns={"_row": "_anc"})
        finer = keyed[keyed[C.RESOLUTION].isin(levels[i + 1 :])]
        up = finer.assign(**{c: parent_np(finer[c], r) for c in cells}).drop(columns=C.RESOLUTION)
        hit = up.merge(rows, on=[*cells, *group], how="inner")
        nearest.iloc[hit["_row"].to_numpy()] = hit["_anc"].to_numpy()
        nearest_res.iloc[hit["_row"].to_numpy()] = r
    return nearest, nearest_res
