"""Stays and trips: continuous time segmentation of each user's events (no Python UDF).

After Eurostat Multi-MNO's continuous time segmentation, simplified to what a window pass
can do: an event's place is its antenna cell's *main* H3 cell (highest coverage weight;
the sectors of one compact mast share the mast's, :func:`main_cells`); "same place" means
the same H3 parent at ``same_place_resolution``; a silence longer than
``max_time_missing_stay_s`` ends a stay; runs shorter than ``min_time_stay_s`` are passes.

    events --with_main_cell--> located --with_segment_ids--> segmented
           --collapse_segments--> segments --filter_sandwiched_passes--> segments
           --merge_stays--> --filter_short_stays--> --merge_stays--> stays
    stays --trips_from_stays--> trips

The same stays come from jobs/java/org/mobiterra/Stays.java (:func:`stays_by_java`, one
pass per partition of the events shuffled by user) when the session has jobs/java's jar;
the window functions (:func:`stays_by_windows`) serve Spark Connect and machines without
a JDK. Tests run both and compare them on random events.
"""

from __future__ import annotations

from datetime import date

import h3
import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.residence import with_coverage, with_local_time
from mobiterra import columns as C
from mobiterra import spark as engine
from mobiterra.config import StayParams
from mobiterra.geo.grid import distance_km
from mobiterra.h3cols import h3_parent, parent_masks

SEGMENT = "_segment"
SITE = "_site"  # an event's antenna mast (int64, cell_sites), when known
EVENTS = "_events"  # events in a segment


def main_coverage(coverage_df: DataFrame) -> DataFrame:
    """One H3 cell per antenna cell and validity interval: highest weight, lowest id on ties.

    The coverage table is small (one row per antenna cell and hexagon), so this window is
    cheap; it keeps the event path at one row per event.
    """
    rank = Window.partitionBy(C.CELL_ID, C.VALID_FROM, C.VALID_TO).orderBy(
        F.col(C.WEIGHT).desc(), F.col(C.H3_ID).asc()
    )
    return (
        coverage_df.withColumn("_rank", F.row_number().over(rank))
        .filter(F.col("_rank") == 1)
        .select(C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, F.lit(1.0).alias(C.WEIGHT))
    )


def main_cells(
    coverage: pd.DataFrame, sites: pd.DataFrame | None = None, same_mast_max_distance_m: float = 0
) -> pd.DataFrame:
    """The main hexagon of each antenna cell and validity interval, as a coverage table
    (weight 1): :func:`main_coverage`'s rule, on the driver (the table is small).

    With ``sites`` (:func:`cell_sites`) and a distance > 0, the sectors of one mast (same
    site and validity interval) whose own main hexagons are all within
    ``same_mast_max_distance_m`` of each other (hexagon centres) share one: the mast's,
    the hexagon of highest weight summed over those sectors (lowest id on ties). A phone
    that does not move is served by such sectors in turn, and their hexagons may lie in
    two same-place cells (StayParams.same_mast_max_distance_m).
    """
    keys = [C.CELL_ID, C.VALID_FROM, C.VALID_TO]
    ranked = coverage.sort_values([C.WEIGHT, C.H3_ID], ascending=[False, True], kind="stable")
    main = ranked.drop_duplicates(keys)[[*keys, C.H3_ID]].reset_index(drop=True)
    if sites is not None and same_mast_max_distance_m > 0 and len(main):
        main[C.H3_ID] = _mast_main_hexagons(coverage, main, sites, same_mast_max_distance_m)
    return main.assign(**{C.WEIGHT: 1.0})[[*keys, C.H3_ID, C.WEIGHT]]


def _mast_main_hexagons(
    coverage: pd.DataFrame, main: pd.DataFrame, sites: pd.DataFrame, max_distance_m: float
) -> np.ndarray:
    """``main``'s hexagons (int64), each replaced by its mast's main hexagon where the
    mast's sectors are compact (main_cells)."""
    mast = main[[C.CELL_ID, C.VALID_FROM, C.VALID_TO]].copy()
    mast[SITE] = mast[C.CELL_ID].map(sites.set_index(C.CELL_ID)[SITE])
    # one group per (site, validity interval); validity may be null (open)
    group = mast.groupby([SITE, C.VALID_FROM, C.VALID_TO], dropna=False, sort=False).ngroup()
    group = group.where(mast[SITE].notna(), -1).to_numpy()
    on_mast = group >= 0
    centres = np.array(
        [h3.cell_to_latlng(h3.int_to_str(int(c))) for c in main[C.H3_ID][on_mast]]
    ).reshape(-1, 2)
    spread = pd.DataFrame({"g": group[on_mast], "lat": centres[:, 0], "lon": centres[:, 1]})
    pairs = spread.merge(spread, on="g")  # a few sectors per mast: a few pairs each
    pairs["d"] = 1000 * distance_km(pairs["lat_x"], pairs["lon_x"], pairs["lat_y"], pairs["lon_y"])
    widest = pairs.groupby("g").agg(d=("d", "max"), n=("d", "size"))
    compact = widest.index[(widest["n"] > 1) & (widest["d"] <= max_distance_m)]
    in_mast = np.isin(group, compact.to_numpy())
    hexagons = main[C.H3_ID].to_numpy(np.int64).copy()
    if not in_mast.any():
        return hexagons
    pieces = pd.DataFrame({"g": group[in_mast]}).join(mast[in_mast].reset_index(drop=True))
    summed = coverage.merge(pieces, on=[C.CELL_ID, C.VALID_FROM, C.VALID_TO])
    summed = summed.groupby(["g", C.H3_ID], as_index=False)[C.WEIGHT].sum()
    top = summed.sort_values(["g", C.WEIGHT, C.H3_ID], ascending=[True, False, True])
    top = top.drop_duplicates("g").set_index("g")[C.H3_ID]
    hexagons[in_mast] = top.reindex(group[in_mast]).to_numpy(np.int64)
    return hexagons


def with_main_cell(
    events_df: DataFrame,
    coverage_df: DataFrame,
    timezone: str,
    sites_df: DataFrame | None = None,
    days: tuple[date, date] | None = None,
) -> DataFrame:
    """(user_key, timestamp, h3_id): each event placed at its antenna cell's main H3 cell.

    With ``sites_df`` (cell_id, site: one row per antenna cell, :func:`cell_sites`) the
    events also carry their antenna's ``site``. Events of antenna cells unknown to (or
    inactive in) the coverage table are dropped. ``days`` (first, last): the local dates
    the events are about, for a cheaper local time (residence.with_local_time).
    """
    main_df = main_coverage(coverage_df)
    cols = [C.USER_KEY, C.TIMESTAMP, C.H3_ID]
    if sites_df is not None:
        main_df = main_df.join(F.broadcast(sites_df.select(C.CELL_ID, SITE)), C.CELL_ID, "left")
        cols.append(SITE)
    return (
        events_df.transform(with_local_time, timezone, *(days or (None, None)))
        .transform(with_coverage, main_df)
        .select(*cols)
    )


def cell_sites(cells: pd.DataFrame) -> pd.DataFrame:
    """``cell_id``, ``_site`` (int64: its antenna mast's position to ~1 m) of each antenna
    cell of the cells table. Sectors of one mast share a site. A cell id listed at several
    positions keeps that of its latest ``valid_from`` (then highest lat, lon)."""
    rows = pd.DataFrame(
        {
            C.CELL_ID: cells[C.CELL_ID].astype("string").str.strip(),
            "_from": cells[C.VALID_FROM].astype("string") if C.VALID_FROM in cells else None,
            C.LAT: pd.to_numeric(cells[C.LAT], errors="coerce"),
            C.LON: pd.to_numeric(cells[C.LON], errors="coerce"),
        }
    )
    rows = rows[np.isfinite(rows[C.LAT]) & np.isfinite(rows[C.LON]) & rows[C.CELL_ID].notna()]
    rows = rows.sort_values([C.CELL_ID, "_from", C.LAT, C.LON], na_position="first", kind="stable")
    last = rows.drop_duplicates(C.CELL_ID, keep="last")
    return pd.DataFrame(
        {
            C.CELL_ID: last[C.CELL_ID].astype(str).to_numpy(),
            SITE: site_code(last[C.LAT].to_numpy(float), last[C.LON].to_numpy(float)),
        }
    )


def site_code(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """One int64 per position rounded to 1e-5 degree (bench/baseline_duckdb.py: same
    formula): floor((lat + 90) * 1e5 + 0.5) * 4e7 + floor((lon + 180) * 1e5 + 0.5)."""
    lat5 = np.floor((lat + 90.0) * 1e5 + 0.5).astype(np.int64)
    lon5 = np.floor((lon + 180.0) * 1e5 + 0.5).astype(np.int64)
    return lat5 * np.int64(40_000_000) + lon5


def _place(cell: str, same_place_resolution: int):
    return h3_parent(cell, same_place_resolution)


def with_segment_ids(
    located_df: DataFrame, max_time_missing_stay_s: int, same_place_resolution: int
) -> DataFrame:
    """``_segment``: per user, a running count of segment starts over time-ordered events.

    A new segment starts at a user's first event, when the place changes, or after a
    silence longer than ``max_time_missing_stay_s``. Ties in time are ordered by cell so the
    result is deterministic.
    """
    order = [F.col(C.TIMESTAMP).asc(), F.col(C.H3_ID).asc()]
    # lag() has its own fixed frame (the previous row); Spark rejects any other.
    previous = Window.partitionBy(C.USER_KEY).orderBy(*order)
    running = previous.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    place = _place(C.H3_ID, same_place_resolution)
    # the place of the previous hexagon, not lag(place): a window over a computed column
    # computes it below the exchange and shuffles it with every event (~9 % of the stays)
    prev_place = _place(F.lag(C.H3_ID).over(previous), same_place_resolution)
    silence_s = F.unix_seconds(F.col(C.TIMESTAMP)) - F.unix_seconds(
        F.lag(C.TIMESTAMP).over(previous)
    )
    starts_segment = (
        prev_place.isNull() | (place != prev_place) | (silence_s > max_time_missing_stay_s)
    )
    return located_df.withColumn("_starts", starts_segment.cast("int")).withColumn(
        SEGMENT, F.sum("_starts").over(running)
    )


def _duration_s() -> Column:
    return F.unix_seconds(F.col(C.STAY_END)) - F.unix_seconds(F.col(C.STAY_START))


def collapse_segments(segmented_df: DataFrame) -> DataFrame:
    """One row per segment (schema STAYS), however short.

    The segment's cell is its most frequent finest cell (lowest id on ties): ping-pong
    between neighbouring antennas inside one place keeps the dominant hexagon.
    """
    extra = []
    if SITE in segmented_df.columns:  # for the handover rule (filter_sandwiched_passes)
        extra = [
            F.count(F.lit(1)).alias(EVENTS),
            F.mode(SITE, deterministic=True).alias(SITE),
        ]
    return (
        segmented_df.groupBy(C.USER_KEY, SEGMENT)
        .agg(
            F.mode(C.H3_ID, deterministic=True).alias(C.STAY_H3),
            F.min(C.TIMESTAMP).alias(C.STAY_START),
            F.max(C.TIMESTAMP).alias(C.STAY_END),
            *extra,
        )
        .select(C.USER_KEY, C.STAY_H3, C.STAY_START, C.STAY_END, *[e for e in (EVENTS, SITE)
                                                                   if extra])
    )  # fmt: skip


def filter_sandwiched_passes(
    segments_df: DataFrame,
    min_time_stay_s: int,
    same_place_resolution: int,
    handover_max_events: int = 0,
) -> DataFrame:
    """Drop passes (segments shorter than ``min_time_stay_s``) between two segments of one
    other place, so that those two can merge even when one of them is short itself.

    A handover to another site's sector, or one event on a distant antenna, cuts a run of
    events at home in two; when one half is a single event (a phone is nearly silent at
    night: one location update before 22:00, one after 06:00) dropping every short
    segment first lost that half, and with it the user's whole night. Dropping only the
    sandwiched pass keeps the evening event with the morning's stay.

    Handovers (``handover_max_events`` > 0 and segments carrying ``_site`` and
    ``_events``, collapse_segments): a segment of at most that many events on another
    sector of the mast of the segments around it is dropped too, however long it lasts.
    A phone that does not move is handed to the neighbouring sector now and then; two such
    events three hours apart in a quiet night or a lockdown Sunday made a "stay" of their
    own and two false trips.
    """
    order = [F.col(C.STAY_START).asc(), F.col(C.STAY_H3).asc()]
    around = Window.partitionBy(C.USER_KEY).orderBy(*order)  # lag/lead: fixed frames
    place = _place(C.STAY_H3, same_place_resolution)
    before = _place(F.lag(C.STAY_H3).over(around), same_place_resolution)
    after = _place(F.lead(C.STAY_H3).over(around), same_place_resolution)
    passing = _duration_s() < min_time_stay_s
    if handover_max_events > 0 and {SITE, EVENTS} <= set(segments_df.columns):
        same_mast = (F.col(SITE) == F.lag(SITE).over(around)) & (
            F.col(SITE) == F.lead(SITE).over(around)
        )
        passing = passing | ((F.col(EVENTS) <= handover_max_events) & same_mast)
    sandwiched = passing & (before == after) & (place != before)
    # In an alternating run of short segments (B | a | b | A: a and b both sandwiched)
    # only the last goes, so that the other (a) joins the stay after it (A).
    next_sandwiched = F.lead("_sandwiched").over(around)
    return (
        segments_df.withColumn("_sandwiched", F.coalesce(sandwiched, F.lit(False)))
        .withColumn("_drop", F.col("_sandwiched") & ~F.coalesce(next_sandwiched, F.lit(False)))
        .filter(~F.col("_drop"))
        .drop("_sandwiched", "_drop", EVENTS, SITE)
    )


def filter_short_stays(stays_df: DataFrame, min_time_stay_s: int) -> DataFrame:
    """Stays lasting at least ``min_time_stay_s``; shorter ones are passes."""
    return stays_df.filter(_duration_s() >= min_time_stay_s)


def merge_stays(
    stays_df: DataFrame, max_time_missing_stay_s: int, same_place_resolution: int
) -> DataFrame:
    """Merge consecutive stays at the same place whose gap is within the missing-time limit.

    This happens when a pass (a stray event on a distant antenna, a quick errand) splits a
    stay: once the pass is dropped, the two halves are one stay again. The merged stay's
    cell is the cell of its longest part (lowest id on ties).
    """
    order = [F.col(C.STAY_START).asc(), F.col(C.STAY_H3).asc()]
    previous = Window.partitionBy(C.USER_KEY).orderBy(*order)  # lag(): fixed frame
    running = previous.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    place = _place(C.STAY_H3, same_place_resolution)
    prev_place = _place(F.lag(C.STAY_H3).over(previous), same_place_resolution)
    gap_s = F.unix_seconds(F.col(C.STAY_START)) - F.unix_seconds(F.lag(C.STAY_END).over(previous))
    starts_group = prev_place.isNull() | (place != prev_place) | (gap_s > max_time_missing_stay_s)
    return (
        stays_df.withColumn("_starts", starts_group.cast("int"))
        .withColumn(SEGMENT, F.sum("_starts").over(running))
        .groupBy(C.USER_KEY, SEGMENT)
        .agg(
            F.max_by(C.STAY_H3, F.struct(_duration_s(), -F.col(C.STAY_H3))).alias(C.STAY_H3),
            F.min(C.STAY_START).alias(C.STAY_START),
            F.max(C.STAY_END).alias(C.STAY_END),
        )
        .select(C.USER_KEY, C.STAY_H3, C.STAY_START, C.STAY_END)
    )


def stays_from_located(located_df: DataFrame, params: StayParams) -> DataFrame:
    """(user_key, timestamp, h3_id[, _site]) events -> stays (schema STAYS): by the Java
    segmentation when the session has jobs/java's jar (:func:`stays_by_java`), else by
    window functions (:func:`stays_by_windows`); the same stays."""
    if engine.has_java_jobs(located_df.sparkSession):
        return stays_by_java(located_df, params)
    return stays_by_windows(located_df, params)


def stays_by_java(located_df: DataFrame, params: StayParams) -> DataFrame:
    """stays_by_windows's stays by jobs/java/org/mobiterra/Stays.java: the events shuffled
    by user, then each partition's users segmented in one pass (their events sorted in
    primitive arrays), instead of Spark's sort of every event and five window and
    aggregate steps. A partition's events are held in memory (~40 bytes each): raise
    ``engine.shuffle_partitions`` with the input."""
    cols = [C.USER_KEY, F.unix_micros(C.TIMESTAMP).alias("_ts_us"), C.H3_ID]
    handover = 0
    if SITE in located_df.columns:
        cols.append(SITE)
        handover = params.handover_max_events
    keep, set_bits = parent_masks(params.same_place_resolution)
    events_df = located_df.select(*cols).repartition(C.USER_KEY)
    stays_df = engine.java_dataset(
        events_df,
        "Stays",
        params.max_time_missing_stay_s,
        params.min_time_stay_s,
        handover,
        keep,
        set_bits,
    )
    return stays_df.select(
        C.USER_KEY,
        C.STAY_H3,
        F.timestamp_micros("_start_us").alias(C.STAY_START),
        F.timestamp_micros("_end_us").alias(C.STAY_END),
    )


def stays_by_windows(located_df: DataFrame, params: StayParams) -> DataFrame:
    """(user_key, timestamp, h3_id[, _site]) events -> stays (schema STAYS), by window
    functions and aggregates only (Spark Connect, or no jobs/java jar)."""
    gap_s, place_res = params.max_time_missing_stay_s, params.same_place_resolution
    # merged twice: short parts join their place's stay first; once the remaining passes
    # are dropped, stays on either side of them join (as when passes went first)
    return (
        located_df.transform(with_segment_ids, gap_s, place_res)
        .transform(collapse_segments)
        .transform(
            filter_sandwiched_passes, params.min_time_stay_s, place_res, params.handover_max_events
        )
        .transform(merge_stays, gap_s, place_res)
        .transform(filter_short_stays, params.min_time_stay_s)
        .transform(merge_stays, gap_s, place_res)
    )


def stays_from_events(
    events_df: DataFrame,
    coverage_df: DataFrame,
    params: StayParams,
    timezone: str,
    sites_df: DataFrame | None = None,
    days: tuple[date, date] | None = None,
) -> DataFrame:
    """Accepted events (user_key, timestamp, cell_id) -> stays (schema STAYS).

    ``sites_df`` (:func:`cell_sites`): the antenna masts, for the handover rule; ``days``
    (first, last): the month's local dates, as with_main_cell."""
    return events_df.transform(with_main_cell, coverage_df, timezone, sites_df, days).transform(
        stays_from_located, params
    )


def trips_from_stays(stays_df: DataFrame, same_place_resolution: int) -> DataFrame:
    """A trip per pair of consecutive stays at different places (schema TRIPS).

    Departure is the end of the origin stay, arrival the start of the destination stay.
    Consecutive stays at the same place (separated by a long silence) make no trip.
    """
    following = Window.partitionBy(C.USER_KEY).orderBy(
        F.col(C.STAY_START).asc(), F.col(C.STAY_H3).asc()
    )  # lead(): fixed frame (the next row)
    next_h3 = F.lead(C.STAY_H3).over(following)
    next_start = F.lead(C.STAY_START).over(following)
    moved = _place(C.STAY_H3, same_place_resolution) != _place(
        F.col(C.DESTINATION_H3), same_place_resolution
    )
    return (
        stays_df.select(
            C.USER_KEY,
            F.col(C.STAY_H3).alias(C.ORIGIN_H3),
            next_h3.alias(C.DESTINATION_H3),
            F.col(C.STAY_END).alias(C.DEPARTURE),
            next_start.alias(C.ARRIVAL),
        )
        .filter(F.col(C.DESTINATION_H3).isNotNull())
        .filter(moved)
    )
