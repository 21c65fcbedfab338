"""Present population: distinct users present per H3 cell and period, interpolated from stays.

A user is present in every UTC hour slot their stay [start, end] touches, whether or not
an event fell in that hour; coarser periods (day, day-parts) are the union of their hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.periods import filter_period_starts, utc_lit, with_periods
from jobs.residence import with_resolutions
from mobiterra import columns as C
from mobiterra.config import DayPartParams

# Slots are kept this long after the last period start so the month's last night
# (22:00-06:00, labelled by its evening) keeps its after-midnight hours.
_TAIL = timedelta(days=1)


def with_hour_slots(
    stays_df: DataFrame, start: datetime | None = None, end: datetime | None = None
) -> DataFrame:
    """(user_key, stay_h3, hour_start): one row per UTC hour a stay touches.

    The interval is closed: the stay's last event proves presence in its hour, so a stay
    ending at 13:00:00 counts in the 13:00 slot. With ``start``/``end`` the slots are
    clipped to [start, end + 1 day), bounding the sequence for stays crossing the edges.
    """
    first = F.col(C.STAY_START)
    last = F.col(C.STAY_END)
    if start is not None:
        first = F.greatest(first, utc_lit(start))
    if end is not None:
        # strictly before end + tail: step back one microsecond from the bound
        last = F.least(last, utc_lit(end + _TAIL - timedelta(microseconds=1)))
    slots = F.sequence(
        F.date_trunc("hour", first),
        F.date_trunc("hour", last),
        F.make_dt_interval(hours=F.lit(1)),
    )
    return stays_df.filter(first <= last).select(
        C.USER_KEY, C.STAY_H3, F.explode(slots).alias(C.HOUR_START)
    )


def count_present_population(
    stays_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    periods: list[str],
    resolutions: list[int],
    start: datetime | None = None,
    end: datetime | None = None,
) -> DataFrame:
    """Distinct users per (resolution, h3_cell, period_start, period) from stays.

    ``periods`` is a subset of hour / day / night / daytime / evening; ``start``/``end``
    (UTC) keep the periods starting in [start, end), i.e. the month's. Output columns:
    resolution, h3_cell (int64), period_start, period, users.
    """
    return (
        stays_df.transform(with_hour_slots, start, end)
        .transform(with_periods, C.HOUR_START, timezone, day_parts, periods)
        .transform(filter_period_starts, start, end)
        .select(C.USER_KEY, C.STAY_H3, C.PERIOD_START, C.PERIOD)
        # No distinct() here: the slots of one stay are made in one task, so the distinct
        # count's map-side partial aggregate already folds a day's 24 hours into one row
        # before the shuffle; a distinct() would add a shuffle of its own.
        .transform(with_resolutions, {C.STAY_H3: C.H3_CELL}, resolutions)
        .groupBy(C.RESOLUTION, C.H3_CELL, C.PERIOD_START, C.PERIOD)
        .agg(F.count_distinct(C.USER_KEY).alias(C.USERS))
        .select(
            C.RESOLUTION,
            C.H3_CELL,
            C.PERIOD_START,
            C.PERIOD,
            F.col(C.USERS).cast("long").alias(C.USERS),
        )
    )
