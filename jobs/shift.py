"""Residence shift: baseline-month home -> this month's home, distinct users per flow."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.residence import with_resolutions
from mobiterra import columns as C


def pair_homes(baseline_homes_df: DataFrame, homes_df: DataFrame) -> DataFrame:
    """Users with a usual residence in both months: (user_key, baseline_home_h3, home_h3).

    Users seen in only one month are not in the shift (they are in that month's residents).
    """
    return baseline_homes_df.select(C.USER_KEY, F.col(C.HOME_H3).alias(C.BASELINE_HOME_H3)).join(
        homes_df.select(C.USER_KEY, C.HOME_H3), on=C.USER_KEY, how="inner"
    )


def count_residence_shift(paired_df: DataFrame, resolutions: list[int]) -> DataFrame:
    """(resolution, origin_cell, destination_cell, users) with int64 cells."""
    return (
        paired_df.transform(
            with_resolutions,
            {C.BASELINE_HOME_H3: C.ORIGIN_CELL, C.HOME_H3: C.DESTINATION_CELL},
            resolutions,
        )
        .groupBy(C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL)
        .agg(F.count(F.lit(1)).alias(C.USERS))
    )
