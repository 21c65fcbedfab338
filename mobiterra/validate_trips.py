"""The truth's trips as the network can see them, for scoring ``od_trips``.

The simulator's ``trips`` are every move between two true stays, however short the stay
and however few events it holds. The pipeline's trips link two *observed* stays: runs of
a user's events at one place (H3 parent at ``StayParams.same_place_resolution``) spanning
at least ``min_time_stay_s`` (``jobs/stays.py``). A one-hour errand without two events
15 minutes apart, or a move between two hexagons of one res-7 place, is a trip of the
truth that no antenna trace reveals: at ~6 events a user-day most of the truth's trips
are of that kind, which is what made the raw comparison read -80 %.

So the daily OD is scored against the truth's *observable* trips, derived from the true
stays and the events actually emitted (nothing from the run's outputs):

1. consecutive true stays of a user at the same place (res-7 parent of the true hexagon;
   the truth cuts stays at local midnight) are one stay;
2. a stay is observable when the user's events during it span >= ``min_time_stay_s``;
3. a trip links two consecutive observable stays at different places *served by
   different antenna cells* (the cell carrying most of each stay's events); it departs at
   the true end of its origin stay, between the true stays' départements.

The cell condition is the network's spatial resolution: a rural cell reaches 10 km, so a
move to the next village under the same antenna leaves no trace (22-27 % of the moves
between observable stays in the rural départements of a 40 M-event month, under 3 % in
Paris and Lyon). Moves between *different* cells that the pipeline's same-place
resolution merges still count against it.

This keeps what the pipeline must still get right (placing events through the coverage,
segmenting, cutting passes, attributing days and départements) and drops only what the
events cannot contain. The raw truth trips are still reported beside it
(``all_truth_trips``) as the share of moves the network sees.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import h3.api.basic_int as h3i
import numpy as np
import pandas as pd

STAY_COLUMNS = ["user_id", "start", "end", "h3_cell", "departement_code"]
EVENT_COLUMNS = ["user_id", "timestamp", "cell_id"]
TRIP_COLUMNS = [
    "user_id",
    "departure",
    "origin_h3",
    "destination_h3",
    "origin_departement",
    "destination_departement",
]


def with_place(stays: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """``place``: the int64 H3 parent of each stay's true hexagon at ``resolution``."""
    cells = stays["h3_cell"].map(h3i.str_to_int) if len(stays) else stays["h3_cell"]
    places = np.fromiter(
        (h3i.cell_to_parent(int(c), resolution) for c in cells), np.int64, len(stays)
    )
    return stays.assign(place=places)


def merge_same_place(stays: pd.DataFrame) -> pd.DataFrame:
    """Consecutive stays of a user at one ``place`` merged (first start, last end; the
    first one's département: a place of one res-7 cell rarely straddles a border)."""
    stays = stays.sort_values(["user_id", "start"], kind="stable").reset_index(drop=True)
    new = (stays["user_id"] != stays["user_id"].shift()) | (
        stays["place"] != stays["place"].shift()
    )
    group = new.cumsum()
    agg = {c: "first" for c in stays.columns if c not in ("end",)}
    agg["end"] = "last"
    if "first_event" in stays.columns:
        agg |= {"first_event": "min", "last_event": "max"}
    # the merged stay's cell: its first part's (a dropped pass between two halves of a
    # stay leaves both halves on their place's cell)
    return stays.groupby(group, sort=False).agg(agg).reset_index(drop=True)[list(stays.columns)]


def with_observed_span(stays: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """``first_event``, ``last_event``, ``cell_id``: the user's first and last event inside
    each stay and the cell carrying most of them (lowest id on ties; null without events).

    An event belongs to the latest stay started at or before it, when it is not after
    that stay's end (events while travelling belong to no stay)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("stays_t", stays.reset_index(drop=True).assign(_row=lambda d: d.index))
        con.register("events_t", events[EVENT_COLUMNS])
        spans = con.execute(
            """
            WITH j AS (
                SELECT s._row, e.cell_id, e.timestamp
                FROM events_t e ASOF JOIN stays_t s
                  ON e.user_id = s.user_id AND e.timestamp >= s.start
                WHERE e.timestamp <= s."end"
            ), n AS (
                SELECT _row, cell_id, count(*) AS n FROM j GROUP BY _row, cell_id
            )
            SELECT t._row, t.first_event, t.last_event, m.cell_id
            FROM (SELECT _row, min(timestamp) AS first_event, max(timestamp) AS last_event
                  FROM j GROUP BY _row) t
            JOIN (SELECT _row, first(cell_id ORDER BY n DESC, cell_id ASC) AS cell_id
                  FROM n GROUP BY _row) m USING (_row)
            """
        ).df()
    finally:
        con.close()
    spans = spans.set_index("_row")
    out = stays.reset_index(drop=True)
    return out.assign(
        first_event=spans["first_event"].reindex(out.index).to_numpy(),
        last_event=spans["last_event"].reindex(out.index).to_numpy(),
        cell_id=spans["cell_id"].reindex(out.index).to_numpy(),
    )


def observable_trips(
    stays: pd.DataFrame, events: pd.DataFrame, min_time_stay_s: int, same_place_resolution: int
) -> pd.DataFrame:
    """The truth's trips between stays the events reveal (TRIP_COLUMNS); see the module
    docstring. ``stays``: STAY_COLUMNS (truth ``stays``); ``events``: EVENT_COLUMNS."""
    if stays.empty:
        return pd.DataFrame(columns=TRIP_COLUMNS)
    placed = merge_same_place(with_place(stays[STAY_COLUMNS], same_place_resolution))
    spans = with_observed_span(placed, events)
    span_s = (spans["last_event"] - spans["first_event"]).dt.total_seconds()
    seen = spans[span_s >= min_time_stay_s]
    seen = merge_same_place(seen)  # a dropped pass between two halves of one stay
    following = seen.groupby("user_id", sort=False).shift(-1)
    moved = (
        following["place"].notna()
        & (following["place"] != seen["place"])
        & (following["cell_id"] != seen["cell_id"])
    )
    return pd.DataFrame(
        {
            "user_id": seen["user_id"][moved],
            "departure": seen["end"][moved],
            "origin_h3": seen["h3_cell"][moved],
            "destination_h3": following["h3_cell"][moved],
            "origin_departement": seen["departement_code"][moved],
            "destination_departement": following["departement_code"][moved],
        }
    ).reset_index(drop=True)


def read_month(
    truth: Path, events_path: Path, month: str, timezone: str = "Europe/Paris"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(truth stays, events) around ``month``: a local day either side, so that stays
    crossing the month's edges are whole."""
    first = pd.Timestamp(f"{month}-01", tz=timezone)
    lo = (first - pd.Timedelta(days=1)).tz_convert("UTC")
    hi = (first + pd.offsets.MonthBegin(1) + pd.Timedelta(days=1)).tz_convert("UTC")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        stays_glob = _glob(truth / "stays")
        events_glob = _glob(events_path)
        stays = con.execute(
            f'SELECT user_id, start, "end", h3_cell, departement_code FROM '
            f"read_parquet('{stays_glob}', hive_partitioning = false) "
            f'WHERE "end" >= ? AND start < ?',
            [lo.to_pydatetime(), hi.to_pydatetime()],
        ).df()
        events = con.execute(
            f"SELECT CAST(user_id AS VARCHAR) AS user_id, timestamp, "
            f"CAST(cell_id AS VARCHAR) AS cell_id FROM "
            f"read_parquet('{events_glob}', hive_partitioning = false) "
            f"WHERE timestamp >= ? AND timestamp < ?",
            [lo.to_pydatetime(), hi.to_pydatetime()],
        ).df()
    finally:
        con.close()
    return stays, events


def _glob(path: Path) -> str:
    if path.is_dir():
        return str(path / "**" / "*.parquet")
    return str(path if path.exists() else path.with_suffix(".parquet"))
