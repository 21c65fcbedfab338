"""Validate the antenna cells table on the driver (it is small: ~10^5 rows nationally).

Every row gets a ``status``: ``ok`` or the reason events on it will be quarantined for.
Rows that cannot even be keyed (no cell id) go to the cells quarantine.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from mobiterra import columns as C

STATUS = "status"
OK = "ok"
INVALID_COORDINATES = "invalid_cell_coordinates"
AMBIGUOUS = "ambiguous_cell"  # same id, overlapping validity periods: no way to pick a site
NULL_CELL_ID = "null_cell_id"


def _to_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def _to_date(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, errors="coerce").dt.date


def validate_cells(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (cells with a status column, quarantined cell rows with a reason)."""
    cells = raw.copy()
    cells[C.CELL_ID] = cells[C.CELL_ID].astype("string").str.strip()
    cells.loc[cells[C.CELL_ID] == "", C.CELL_ID] = pd.NA
    for col in (C.LAT, C.LON, C.AZIMUTH_DEG, C.RANGE_M):
        cells[col] = _to_float(cells[col])
    for col in (C.VALID_FROM, C.VALID_TO):
        cells[col] = _to_date(cells[col])
    cells = cells.drop_duplicates()

    no_id = cells[C.CELL_ID].isna()
    quarantine = pd.DataFrame({C.REASON: NULL_CELL_ID, C.CELL_ID: cells.loc[no_id, C.CELL_ID]})
    cells = cells[~no_id].copy()

    lat, lon = cells[C.LAT], cells[C.LON]
    bad_coords = (
        lat.isna()
        | lon.isna()
        | ~np.isfinite(lat)
        | ~np.isfinite(lon)
        | (lat.abs() > 90)
        | (lon.abs() > 180)
        | ((lat == 0) & (lon == 0))
    )
    cells[STATUS] = np.where(bad_coords, INVALID_COORDINATES, OK)

    ambiguous_ids = _overlapping_ids(cells)
    amb = cells[C.CELL_ID].isin(ambiguous_ids)
    quarantine = pd.concat(
        [
            quarantine,
            pd.DataFrame(
                {C.REASON: INVALID_COORDINATES, C.CELL_ID: cells.loc[bad_coords & ~amb, C.CELL_ID]}
            ),
            pd.DataFrame({C.REASON: AMBIGUOUS, C.CELL_ID: cells.loc[amb, C.CELL_ID]}),
        ],
        ignore_index=True,
    )[[C.REASON, C.CELL_ID]]
    # An ambiguous id collapses to one open-ended row so that every event on it matches
    # exactly one row and is quarantined with that reason.
    collapsed = (
        cells[amb]
        .drop_duplicates(C.CELL_ID)
        .assign(**{STATUS: AMBIGUOUS, C.VALID_FROM: None, C.VALID_TO: None})
    )
    cells = pd.concat([cells[~amb], collapsed], ignore_index=True)
    return cells.reset_index(drop=True), quarantine.reset_index(drop=True)


def _overlapping_ids(cells: pd.DataFrame) -> set[str]:
    """Cell ids whose rows overlap in time (null bounds are open-ended)."""
    dup = cells[cells.duplicated(C.CELL_ID, keep=False)]
    out: set[str] = set()
    for cell_id, g in dup.groupby(C.CELL_ID):
        spans = sorted(
            (_bound(vf, date.min), _bound(vt, date.max))
            for vf, vt in zip(g[C.VALID_FROM], g[C.VALID_TO], strict=True)
        )
        latest_end = spans[0][1]
        for start, end in spans[1:]:
            if start <= latest_end:
                out.add(cell_id)
                break
            latest_end = max(latest_end, end)
    return out


def _bound(value, open_end: date) -> date:
    """A validity bound as a date; null/NaT is open-ended (NaT is a ``date`` instance too)."""
    return open_end if value is None or pd.isna(value) else value
