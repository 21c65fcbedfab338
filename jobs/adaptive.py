"""Adaptive resolution for flows: each flow at the finest resolution where it is published.

A flow below k between two hexagons is suppressed at the finest resolution, but the
pair of parents that holds it is published once it reaches k (the counts come at every
resolution). For a flow map that must not draw a person twice, this layer keeps, for
every published row, only its *remainder*: the row minus its maximal published
descendants (finer published rows inside it). By the gate's secondary rule that
remainder is 0 or >= k, and it is computed from published rows only, so the layer
reveals nothing the tables do not. Rows with remainder 0 are dropped; the layer's rows
are disjoint and add up to the coarsest published totals (for additive counts:
residence-shift users, trips).
"""

from __future__ import annotations

import pandas as pd

from mobiterra import columns as C
from mobiterra.h3tree import as_int_cells, nearest_ancestor


def adaptive_flows(
    published: pd.DataFrame, cells: tuple[str, ...], counts: tuple[str, ...], group=()
) -> pd.DataFrame:
    """Published rows -> (same columns) remainders at each row's own resolution.

    ``counts`` must be additive over cells (users of residence_shift, trips of od_trips;
    not distinct users of od_trips, whose remainder is no count of people).
    """
    df = as_int_cells(published, cells).reset_index(drop=True)
    group = [g for g in group if g in df.columns]
    nearest, _ = nearest_ancestor(df, list(cells), group)
    inner = nearest >= 0
    covered = df[inner].groupby(nearest[inner])[list(counts)].sum()
    remainder = df[list(counts)].sub(covered.reindex(df.index).fillna(0), fill_value=0)
    out = df[[C.RESOLUTION, *cells, *group]].join(remainder.astype("int64"))
    keep = (remainder > 0).any(axis=1)
    return out[keep].reset_index(drop=True)
