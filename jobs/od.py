"""Origin-destination matrices: trips per (origin, destination, period), and the month's
home -> daytime-anchor (work) matrix."""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.periods import MONTH, filter_period_starts, utc_lit, with_periods
from jobs.residence import LOCAL_TS, with_coverage, with_local_time, with_resolutions
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
    """
    return (
        trips_df.select(C.USER_KEY, C.ORIGIN_H3, C.DESTINATION_H3, C.DEPARTURE)
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
    hour = F.hour(F.col(LOCAL_TS))
    weekday = F.dayofweek(F.col(LOCAL_TS)).between(2, 6)  # 1 = Sunday, 7 = Saturday
    in_window = (hour >= params.day_start_hour) & (hour < params.day_end_hour)
    return (
        events_df.filter(weekday & in_window)
        .withColumn(C.DAY, F.to_date(F.col(LOCAL_TS)))
        .filter(F.col(C.DAY).between(F.lit(first), F.lit(last)))
    )


def count_days(day_events_df: DataFrame) -> DataFrame:
    """Distinct days and summed coverage weight per (user, H3 cell)."""
    return day_events_df.groupBy(C.USER_KEY, C.H3_ID).agg(
        F.count_distinct(C.DAY).alias(C.DAYS),
        F.sum(C.WEIGHT).alias(C.DAY_EVENTS),
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
    """Accepted events -> one daytime anchor per user (schema ANCHORS)."""
    return (
        events_df.transform(with_local_time, timezone)
        .transform(filter_daytime, params, first, last)
        .transform(with_coverage, coverage_df)
        .transform(count_days)
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
