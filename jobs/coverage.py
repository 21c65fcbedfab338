"""Coverage: which H3 cells (finest resolution) each antenna cell covers, with weights.

Computed once per cells table on the driver (the table is small) and broadcast into the
jobs, so the event path never calls h3 or a Python UDF. Coarser resolutions are H3
parents of the finest cell (see mobiterra.h3cols), so every resolution nests exactly.

Strategies plug in through ``STRATEGIES``: each maps the validated cells (status ``ok``)
to rows (cell_id, valid_from, valid_to, h3_id, weight) whose weights sum to 1 per row
of the cells table.
"""

from __future__ import annotations

from collections.abc import Callable

import h3
import numpy as np
import pandas as pd

from jobs import cells as cells_rules
from mobiterra import columns as C

COVERAGE_COLUMNS = [C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT]


def point_coverage(cells: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Each antenna cell covers the one hexagon holding its site, with weight 1."""
    h3_ids = [
        h3.str_to_int(h3.latlng_to_cell(lat, lon, resolution))
        for lat, lon in zip(cells[C.LAT], cells[C.LON], strict=True)
    ]
    out = cells[[C.CELL_ID, C.VALID_FROM, C.VALID_TO]].copy()
    out[C.H3_ID] = np.asarray(h3_ids, dtype="int64")
    out[C.WEIGHT] = 1.0
    return out[COVERAGE_COLUMNS]


Strategy = Callable[[pd.DataFrame, int], pd.DataFrame]
STRATEGIES: dict[str, Strategy] = {"point": point_coverage}


def coverage_table(cells: pd.DataFrame, strategy: str, resolution: int) -> pd.DataFrame:
    """Coverage rows for the usable cells (status ok) under the named strategy."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown coverage strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    usable = cells[cells[cells_rules.STATUS] == cells_rules.OK]
    table = STRATEGIES[strategy](usable.reset_index(drop=True), resolution)
    sums = table.groupby([C.CELL_ID, C.VALID_FROM, C.VALID_TO], dropna=False)[C.WEIGHT].sum()
    if len(sums) and not np.allclose(sums.to_numpy(), 1.0):
        raise AssertionError(f"coverage strategy {strategy!r} weights do not sum to 1 per cell")
    return table
