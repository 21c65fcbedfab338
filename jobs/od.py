"""Origin-destination matrices: trips per (origin, destination, period), and the month's
home -> daytime-anchor (work) matrix."""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.periods import (
    MONTH,
    filter_period_starts,
    is_weekday,
    utc_lit,
    wall_date,
    wall_hour,
    with_periods,
)
from jobs.residence import LOCAL_TS, with_local_time, with_resolutions
from mobiterra import columns as C
from mobiterra.config import DayPartParams, ResidenceParams

OD_COLUMNS = (
    C.RESOLUTION,
    C.ORIGIN_CELL,
    C.DESTINATION_CELL,
    C.PERIOD_START,
    C.PERIOD,
    C.TRIPS,
    C.USERS,
)


def count_od(
    trips_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    periods: list[str],
    resolutions: list[int],
    start: datetime | None = None,
    end: datetime | None = None,
) -> DataFrame:
    """Trips and distinct users per (resolution, origin, destination, period).

    A trip belongs to the periods of its departure (local time). At coarse resolutions a
    trip inside one parent cell lands on the diagonal (origin == destination), as in any
    zonal OD matrix. ``start``/``end`` (UTC) keep the periods starting in [start, end).

    The trips are shuffled by user first (a few per user-day): the distinct users' first
    aggregation, by (row, user), then finds them clustered, and only its partial counts
    are shuffled by row, not every trip x period x resolution (30 M bench month, warm:
    3.3-3.7 -> 2.8-3.3 s, 7.0 -> 6.2-6.5 JVM CPU s).
    """
    return (
        trips_df.select(C.USER_KEY, C.ORIGIN_H3, C.DESTINATION_H3, C.DEPARTURE)
        .repartition(C.USER_KEY)
        .transform(with_periods, C.DEPARTURE, timezone, day_parts, periods)
        .transform(filter_period_starts, start, end)
        .transform(
            with_resolutions,
            {C.ORIGIN_H3: C.ORIGIN_CELL, C.DESTINATION_H3: C.DESTINATION_CELL},
            resolutions,
        )
        .groupBy(C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.PERIOD_START, C.PERIOD)
        .agg(
            F.count(F.lit(1)).alias(C.TRIPS),
            F.count_distinct(C.USER_KEY).alias(C.USERS),
        )
        .select(*OD_COLUMNS)
    )


def filter_daytime(
    events_df: DataFrame, params: ResidenceParams, first: date, last: date
) -> DataFrame:
    """Keep weekday events in the local daytime window, labelled with their local date.

    Needs ``local_ts`` (residence.with_local_time). Public holidays count as weekdays.
    """
    hour = wall_hour(F.col(LOCAL_TS))
    weekday = is_weekday(wall_date(F.col(LOCAL_TS)))
    in_window = (hour >= params.day_start_hour) & (hour < params.day_end_hour)
    return (
        events_df.filter(weekday & in_window)
        .withColumn(C.DAY, wall_date(F.col(LOCAL_TS)))
        .filter(F.col(C.DAY).between(F.lit(first), F.lit(last)))
    )


def count_days(day_events_df: DataFrame) -> DataFrame:
    """Distinct days and summed coverage weight per (user, H3 cell)."""
    return day_events_df.groupBy(C.USER_KEY, C.H3_ID).agg(
        F.count_distinct(C.DAY).alias(C.DAYS),
        F.sum(C.WEIGHT).alias(C.DAY_EVENTS),
    )


def count_covered_days(day_events_df: DataFrame, coverage_df: DataFrame, first: date) -> DataFrame:
    """count_days of daytime events spread over their antenna cells' coverage hexagons.

    As joining every event to its cell's hexagons then count_days, without a row per
    event and hexagon (a voronoi cell covers tens of hexagons): days and events are
    gathered per user and antenna cell piece first, the days as a bit mask (bit i = day
    ``first`` + i: the days lie in ``first`` .. ``first`` + 62, e.g. a month); a hexagon's
    days are the union of the masks of the pieces covering it, its events the weighted
    sum of theirs. One difference, on purpose: weight x events per piece makes
    equal-weight hexagons of a cell tie exactly (the lowest id wins), where a sum of
    weights per event let rounding noise of the summation order pick among them.
    Needs ``day`` (filter_daytime); drops events of cells absent from the coverage.
    """
    pieces_df = coverage_df.select(
        F.col(C.CELL_ID).alias("_cid"),
        F.col(C.VALID_FROM).alias("_vf"),
        F.col(C.VALID_TO).alias("_vt"),
    ).distinct()
    active = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col("_vf").isNull() | (F.col(C.DAY) >= F.col("_vf")))
        & (F.col("_vt").isNull() | (F.col(C.DAY) <= F.col("_vt")))
    )
    bit = F.datediff(F.col(C.DAY), F.lit(first))
    in_mask = F.when(bit.between(0, 62), bit).otherwise(
        F.raise_error(F.lit(f"count_covered_days: a day outside {first} + 0..62 days"))
    )
    per_piece_df = (
        day_events_df.join(F.broadcast(pieces_df), on=active, how="inner")
        .withColumn("_bit", in_mask)
        .groupBy(C.USER_KEY, "_cid", "_vf", "_vt")
        .agg(
            F.bit_or(F.expr("shiftleft(CAST(1 AS BIGINT), _bit)")).alias("_days"),
            F.count(F.lit(1)).alias("_n"),
        )
    )
    piece = (
        (F.col("_cid") == F.col(C.CELL_ID))
        & F.col("_vf").eqNullSafe(F.col(C.VALID_FROM))
        & F.col("_vt").eqNullSafe(F.col(C.VALID_TO))
    )
    cov_df = coverage_df.select(C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT)
    return (
        per_piece_df.join(F.broadcast(cov_df), on=piece, how="inner")
        .groupBy(C.USER_KEY, C.H3_ID)
        .agg(
            F.bit_count(F.bit_or("_days")).alias(C.DAYS),
            F.sum(F.col(C.WEIGHT) * F.col("_n")).alias(C.DAY_EVENTS),
        )
    )


def with_daytime_anchor(day_counts_df: DataFrame, min_days: int) -> DataFrame:
    """One anchor per user: most days, then most (weighted) events, then lowest id.

    Users whose best cell has fewer than ``min_days`` days have no daytime anchor.
    Mirrors residence.with_home_cell.
    """
    rank = Window.partitionBy(C.USER_KEY).orderBy(
        F.col(C.DAYS).desc(), F.col(C.DAY_EVENTS).desc(), F.col(C.H3_ID).asc()
    )
    return (
        day_counts_df.withColumn("_rank", F.row_number().over(rank))
        .filter((F.col("_rank") == 1) & (F.col(C.DAYS) >= min_days))
        .select(C.USER_KEY, F.col(C.H3_ID).alias(C.ANCHOR_H3), F.col(C.DAYS).cast("long"))
    )


def daytime_anchor(
    events_df: DataFrame,
    coverage_df: DataFrame,
    params: ResidenceParams,
    timezone: str,
    first: date,
    last: date,
) -> DataFrame:
    """Accepted events -> one daytime anchor per user (schema ANCHORS).

    The daytime events are shuffled by user once, before any aggregation: every later
    group-by and the anchor's window then find them clustered (without it, the per-piece
    and per-hexagon aggregations and the window each shuffled; at 10 M events the anchor
    took 3.9 s, 2.5 s with one shuffle).
    """
    return (
        events_df.transform(with_local_time, timezone, first, last)
        .transform(filter_daytime, params, first, last)
        .repartition(C.USER_KEY)
        .transform(count_covered_days, coverage_df, first)
        .transform(with_daytime_anchor, params.min_days)
    )


def count_home_work(
    homes_df: DataFrame, anchors_df: DataFrame, resolutions: list[int], month_start: datetime
) -> DataFrame:
    """Users per (home cell, daytime-anchor cell) for the month, in the od_trips columns.

    Period ``month`` starting at ``month_start`` (UTC); ``trips`` = ``users`` (one
    commute link per user). Users without both a home and an anchor are left out; a user
    whose anchor is the home cell is on the diagonal.
    """
    return (
        homes_df.select(C.USER_KEY, C.HOME_H3)
        .join(anchors_df.select(C.USER_KEY, C.ANCHOR_H3), on=C.USER_KEY, how="inner")
        .transform(
            with_resolutions,
            {C.HOME_H3: C.ORIGIN_CELL, C.ANCHOR_H3: C.DESTINATION_CELL},
            resolutions,
        )
        .groupBy(C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL)
        .agg(F.count(F.lit(1)).alias(C.USERS))
        .withColumn(C.TRIPS, F.col(C.USERS))
        .withColumn(C.PERIOD, F.lit(MONTH))
        .withColumn(C.PERIOD_START, utc_lit(month_start))
        .select(*OD_COLUMNS)
    )
