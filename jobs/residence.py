"""Usual residence: per user, the H3 cell seen on the most distinct nights of the month."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from mobiterra import columns as C
from mobiterra.config import ResidenceParams
from mobiterra.h3cols import h3_parent

LOCAL_TS = "local_ts"


def with_local_time(events_df: DataFrame, timezone: str) -> DataFrame:
    """``local_ts``: the UTC timestamp as wall-clock time in ``timezone`` (DST-aware)."""
    return events_df.withColumn(LOCAL_TS, F.from_utc_timestamp(F.col(C.TIMESTAMP), timezone))


def with_coverage(events_df: DataFrame, coverage_df: DataFrame) -> DataFrame:
    """Attach the H3 cells (finest resolution) and weights of each event's antenna cell.

    The coverage table is small and broadcast; validity is checked on the local day.
    """
    day = F.to_date(F.col(LOCAL_TS))
    cov_df = coverage_df.select(
        F.col(C.CELL_ID).alias("_cid"), C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT
    )
    active = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col(C.VALID_FROM).isNull() | (day >= F.col(C.VALID_FROM)))
        & (F.col(C.VALID_TO).isNull() | (day <= F.col(C.VALID_TO)))
    )
    return events_df.join(F.broadcast(cov_df), on=active, how="inner").drop(
        "_cid", C.VALID_FROM, C.VALID_TO
    )


def filter_night(
    events_df: DataFrame, params: ResidenceParams, first: date, last: date
) -> DataFrame:
    """Keep night-time events (local) and label each with its night.

    A night is labelled by the date of its evening: with a 22:00-06:00 window, 23:00 on
    the 3rd and 02:00 on the 4th both belong to night 3. Only nights first..last are kept.
    """
    hour = F.hour(F.col(LOCAL_TS))
    if params.night_start_hour > params.night_end_hour:  # the window crosses midnight
        at_night = (hour >= params.night_start_hour) | (hour < params.night_end_hour)
    else:
        at_night = (hour >= params.night_start_hour) & (hour < params.night_end_hour)
    shift = params.night_end_hour if params.night_start_hour > params.night_end_hour else 0
    night = F.to_date(F.col(LOCAL_TS) - F.make_interval(hours=F.lit(shift)))
    return (
        events_df.filter(at_night)
        .withColumn(C.NIGHT, night)
        .filter(F.col(C.NIGHT).between(F.lit(first), F.lit(last)))
    )


def count_nights(night_events_df: DataFrame) -> DataFrame:
    """Distinct nights and summed coverage weight per (user, H3 cell)."""
    return night_events_df.groupBy(C.USER_KEY, C.H3_ID).agg(
        F.countDistinct(C.NIGHT).alias(C.NIGHTS),
        F.sum(C.WEIGHT).alias(C.NIGHT_EVENTS),
    )


def with_home_cell(night_counts_df: DataFrame, min_nights: int) -> DataFrame:
    """One home per user: most nights, then most (weighted) night events, then lowest id.

    Users whose best cell has fewer than ``min_nights`` nights have no usual residence.
    """
    rank = Window.partitionBy(C.USER_KEY).orderBy(
        F.col(C.NIGHTS).desc(), F.col(C.NIGHT_EVENTS).desc(), F.col(C.H3_ID).asc()
    )
    return (
        night_counts_df.withColumn("_rank", F.row_number().over(rank))
        .filter((F.col("_rank") == 1) & (F.col(C.NIGHTS) >= min_nights))
        .select(C.USER_KEY, F.col(C.H3_ID).alias(C.HOME_H3), F.col(C.NIGHTS).cast("long"))
    )


def usual_residence(
    events_df: DataFrame,
    coverage_df: DataFrame,
    params: ResidenceParams,
    timezone: str,
    first: date,
    last: date,
) -> DataFrame:
    """Accepted events -> one usual residence per user (schema HOMES)."""
    return (
        events_df.transform(with_local_time, timezone)
        .transform(filter_night, params, first, last)
        .transform(with_coverage, coverage_df)
        .transform(count_nights)
        .transform(with_home_cell, params.min_nights)
    )


def with_resolutions(
    df: DataFrame, cell_columns: dict[str, str], resolutions: list[int]
) -> DataFrame:
    """One row per input row and resolution, each cell column replaced by its parent.

    ``cell_columns`` maps an int64 finest-resolution column to its output name; rows are
    multiplied by len(resolutions) in one pass (no group-by per resolution).
    """
    levels = F.array(
        *[
            F.struct(
                F.lit(r).alias(C.RESOLUTION),
                *[h3_parent(src, r).alias(dst) for src, dst in cell_columns.items()],
            )
            for r in resolutions
        ]
    )
    return df.withColumn("_level", F.explode(levels)).select(
        *[c for c in df.columns if c not in cell_columns], "_level.*"
    )


def count_residents(homes_df: DataFrame, resolutions: list[int]) -> DataFrame:
    """Distinct users per home cell at every resolution: (resolution, h3_cell int64, residents)."""
    return (
        homes_df.select(C.USER_KEY, C.HOME_H3)
        .transform(with_resolutions, {C.HOME_H3: C.H3_CELL}, resolutions)
        .groupBy(C.RESOLUTION, C.H3_CELL)
        .agg(F.count(F.lit(1)).alias(C.RESIDENTS))
    )
