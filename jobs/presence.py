"""Present population: distinct users present per H3 cell and period, interpolated from stays.

A user is present in every UTC hour slot their stay [start, end] touches, whether or not
an event fell in that hour; coarser periods (day, day-parts) are the union of their hours.

Stays are long (a phone at home for days makes one stay), so exploding them into hour
slots costs users x hours x resolutions rows. Instead each stay stays one row per
resolution (its slot range, parents taken once from the finest cell):
- ``hour``: a user's ranges in one cell are merged into disjoint ranges, then a sweep
  (+1 at a range's first slot, -1 after its last, running sum per cell) gives the users of
  every hour; work grows with the stays and the published rows, not with user-hours;
- day and day-parts: each range is labelled with the periods whose window holds one of
  its slots (a few per day it spans), then distinct users per cell and period.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.periods import DAY, DAY_PARTS, HOUR, PERIODS, filter_period_starts, utc_lit
from jobs.residence import with_resolutions
from mobiterra import columns as C
from mobiterra.config import DayPartParams

# Slots are kept this long after the last period start so the month's last night
# (22:00-06:00, labelled by its evening) keeps its after-midnight hours.
_TAIL = timedelta(days=1)
FIRST_SLOT = "_first_slot"  # UTC start of the first hour slot a stay touches
LAST_SLOT = "_last_slot"  # UTC start of its last hour slot (inclusive)


def _one_hour() -> Column:
    return F.make_dt_interval(hours=F.lit(1))


def _ceil_hour(ts: Column) -> Column:
    return F.date_trunc(
        "hour", ts + F.make_dt_interval(hours=F.lit(1)) - F.expr("INTERVAL 1 MICROSECOND")
    )


def _ceil_hour_dt(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    floor = value.replace(minute=0, second=0, microsecond=0)
    return floor if floor == value else floor + timedelta(hours=1)


def with_slot_range(
    stays_df: DataFrame, start: datetime | None = None, until: datetime | None = None
) -> DataFrame:
    """(user_key, stay_h3, _first_slot, _last_slot): the UTC hour slots a stay touches.

    The interval is closed: the stay's last event proves presence in its hour, so a stay
    ending at 13:00:00 counts in the 13:00 slot. Slots are clipped to [start, until).
    """
    first = F.col(C.STAY_START)
    last = F.col(C.STAY_END)
    if start is not None:
        first = F.greatest(first, utc_lit(start))
    if until is not None:
        last = F.least(last, utc_lit(until - timedelta(microseconds=1)))
    return stays_df.filter(first <= last).select(
        C.USER_KEY,
        C.STAY_H3,
        F.date_trunc("hour", first).alias(FIRST_SLOT),
        F.date_trunc("hour", last).alias(LAST_SLOT),
    )


def merge_slot_ranges(ranges_df: DataFrame, keys: list[str]) -> DataFrame:
    """Merge each group's overlapping or adjacent slot ranges into disjoint ranges.

    Gaps and islands: a range starts an island when it begins after the latest slot of
    every earlier range of the group (plus one hour: adjacent ranges join).
    """
    order = Window.partitionBy(*keys).orderBy(F.col(FIRST_SLOT).asc(), F.col(LAST_SLOT).asc())
    before = order.rowsBetween(Window.unboundedPreceding, -1)
    upto = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    reach = F.max(LAST_SLOT).over(before) + _one_hour()
    starts = (reach.isNull() | (F.col(FIRST_SLOT) > reach)).cast("int")
    return (
        ranges_df.withColumn("_starts", starts)
        .withColumn("_island", F.sum("_starts").over(upto))
        .groupBy(*keys, "_island")
        .agg(F.min(FIRST_SLOT).alias(FIRST_SLOT), F.max(LAST_SLOT).alias(LAST_SLOT))
        .drop("_island")
    )


def count_hourly_presence(ranges_df: DataFrame) -> DataFrame:
    """Distinct users per (resolution, h3_cell, hour) from slot ranges, by a sweep.

    ``ranges_df``: user_key, resolution, h3_cell, _first_slot, _last_slot.
    """
    cell = [C.RESOLUTION, C.H3_CELL]
    disjoint_df = merge_slot_ranges(ranges_df, [C.USER_KEY, *cell])
    # One user's ranges in a cell are disjoint now: users covering a slot = ranges
    # covering it = running sum of +1 (first slot) and -1 (slot after the last).
    changes_df = (
        disjoint_df.select(*cell, F.col(FIRST_SLOT).alias("_at"), F.lit(1).alias("_delta"))
        .unionByName(
            disjoint_df.select(
                *cell, (F.col(LAST_SLOT) + _one_hour()).alias("_at"), F.lit(-1).alias("_delta")
            )
        )
        .groupBy(*cell, "_at")
        .agg(F.sum("_delta").alias("_delta"))
    )
    along = Window.partitionBy(*cell).orderBy("_at")
    running = along.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (
        changes_df.withColumn(C.USERS, F.sum("_delta").over(running))
        .withColumn("_next", F.lead("_at").over(along))
        .filter(F.col(C.USERS) > 0)  # a positive run always ends at a later change
        .select(
            *cell,
            F.explode(F.sequence("_at", F.col("_next") - _one_hour(), _one_hour())).alias(
                C.PERIOD_START
            ),
            F.lit(HOUR).alias(C.PERIOD),
            F.col(C.USERS).cast("long").alias(C.USERS),
        )
    )


def _local_start(day: Column, hour: int, timezone: str, days_later: int = 0) -> Column:
    """UTC instant of local ``hour``:00 on local date ``day`` (+ ``days_later``)."""
    day = F.date_add(day, days_later) if days_later else day
    return F.make_timestamp(
        F.year(day),
        F.month(day),
        F.dayofmonth(day),
        F.lit(hour),
        F.lit(0),
        F.lit(0),
        timezone=F.lit(timezone),
    )


def _windows(day: Column, timezone: str, day_parts: DayPartParams, periods: list[str]) -> Column:
    """Array of struct(period, period_start, _end) of the periods labelled by local ``day``.

    Same labels as jobs.periods.period_labels: ``day`` from local midnight; a day-part
    from its local start hour, one crossing midnight ending on the next day.
    """
    windows = []
    if DAY in periods:
        windows.append((DAY, _local_start(day, 0, timezone), _local_start(day, 0, timezone, 1)))
    for name in DAY_PARTS:
        if name in periods:
            start, end = getattr(day_parts, name)
            windows.append(
                (
                    name,
                    _local_start(day, start, timezone),
                    _local_start(day, end, timezone, 1 if start > end else 0),
                )
            )
    return F.array(
        *[
            F.struct(F.lit(n).alias(C.PERIOD), s.alias(C.PERIOD_START), e.alias("_end"))
            for n, s, e in windows
        ]
    )


def with_period_windows(
    ranges_df: DataFrame, timezone: str, day_parts: DayPartParams, periods: list[str]
) -> DataFrame:
    """One row per slot range and day / day-part period holding one of its slots.

    Adds ``period`` and ``period_start``. A period holds a slot when the slot's start lies
    in [period_start, end), as when labelling each slot (jobs.periods.period_labels).
    """
    local = lambda c: F.to_date(F.from_utc_timestamp(F.col(c), timezone))  # noqa: E731
    # the day before the first slot: a part crossing midnight is labelled by its evening
    days = F.sequence(F.date_sub(local(FIRST_SLOT), 1), local(LAST_SLOT))
    labelled_df = ranges_df.withColumn("_day", F.explode(days)).withColumn(
        "_w", F.explode(_windows(F.col("_day"), timezone, day_parts, periods))
    )
    first_inside = F.greatest(F.col(FIRST_SLOT), _ceil_hour(F.col("_w.period_start")))
    holds = (first_inside <= F.col(LAST_SLOT)) & (first_inside < F.col("_w._end"))
    return labelled_df.filter(holds).select(
        *ranges_df.columns,
        F.col("_w.period").alias(C.PERIOD),
        F.col("_w.period_start").alias(C.PERIOD_START),
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
    unknown = sorted(set(periods) - set(PERIODS))
    if unknown or not periods:
        raise ValueError(f"periods must be a non-empty subset of {PERIODS}, got {periods}")
    columns = [C.RESOLUTION, C.H3_CELL, C.PERIOD_START, C.PERIOD, C.USERS]
    parts = []
    if HOUR in periods:
        # hour slots starting in [start, end): with a half-hour zone the bounds fall
        # inside a UTC slot; the slot holding ``end`` still starts before it
        parts.append(
            stays_df.transform(with_slot_range, _ceil_hour_dt(start), _ceil_hour_dt(end))
            .transform(with_resolutions, {C.STAY_H3: C.H3_CELL}, resolutions)
            .transform(count_hourly_presence)
            .select(*columns)
        )
    longer = [p for p in periods if p != HOUR]
    if longer:
        parts.append(
            stays_df.transform(with_slot_range, start, end + _TAIL if end else None)
            .transform(with_period_windows, timezone, day_parts, longer)
            .transform(filter_period_starts, start, end)
            .transform(with_resolutions, {C.STAY_H3: C.H3_CELL}, resolutions)
            .groupBy(C.RESOLUTION, C.H3_CELL, C.PERIOD_START, C.PERIOD)
            .agg(F.count_distinct(C.USER_KEY).cast("long").alias(C.USERS))
            .select(*columns)
        )
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
