"""Present population: distinct users present per H3 cell and period, interpolated from stays.

A user is present in every UTC hour slot their stay [start, end] touches, whether or not
an event fell in that hour; coarser periods (day, day-parts) are the union of their hours.

Stays are long (a phone at home for days makes one stay), so exploding them into hour
slots costs users x hours x resolutions rows. Instead each stay stays one row per
resolution (parents taken once from the finest cell) holding a range of units: its hour
slots, or for each day / day-part type the consecutive label dates it touches. A user's
ranges in a cell are merged into disjoint ones, then a sweep (+1 at a range's first
unit, -1 after its last, running sum per cell) gives the users of every unit. The work
grows with the stays and the published rows, not with user-hours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.periods import DAY, HOUR, PERIODS, filter_period_starts, local_start, utc_lit
from jobs.residence import with_resolutions
from mobiterra import columns as C
from mobiterra.config import DayPartParams

# Slots are kept this long after the last period start so the month's last night
# (22:00-06:00, labelled by its evening) keeps its after-midnight hours.
_TAIL = timedelta(days=1)
# A range of units a user is present in, both ends included: UTC hour slots (their
# starts), then local label dates of days and day-parts.
FIRST = "_first"
LAST = "_last"
_EPOCH = date(1970, 1, 1)  # label dates go into Spark as days since it
Step = Callable[[Column, int], Column]


def _ceil_hour_dt(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    floor = value.replace(minute=0, second=0, microsecond=0)
    return floor if floor == value else floor + timedelta(hours=1)


def with_slot_range(
    stays_df: DataFrame, start: datetime | None = None, until: datetime | None = None
) -> DataFrame:
    """(user_key, stay_h3, _first, _last): the UTC hour slots a stay touches.

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
        F.date_trunc("hour", first).alias(FIRST),
        F.date_trunc("hour", last).alias(LAST),
    )


def _hours(col: Column, n: int) -> Column:
    return col + F.make_dt_interval(hours=F.lit(n))


def _days(col: Column, n: int) -> Column:
    return F.date_add(col, n)


def merge_ranges(ranges_df: DataFrame, keys: list[str], step: Step) -> DataFrame:
    """Merge each group's overlapping or adjacent ranges [_first, _last] into disjoint ones.

    Gaps and islands: a range starts an island when it begins after the last unit of
    every earlier range of the group plus one ``step`` (adjacent ranges join).
    """
    order = Window.partitionBy(*keys).orderBy(F.col(FIRST).asc(), F.col(LAST).asc())
    before = order.rowsBetween(Window.unboundedPreceding, -1)
    upto = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    reach = step(F.max(LAST).over(before), 1)
    starts = (reach.isNull() | (F.col(FIRST) > reach)).cast("int")
    return (
        ranges_df.withColumn("_starts", starts)
        .withColumn("_island", F.sum("_starts").over(upto))
        .groupBy(*keys, "_island")
        .agg(F.min(FIRST).alias(FIRST), F.max(LAST).alias(LAST))
        .drop("_island")
    )


def count_by_sweep(
    ranges_df: DataFrame, keys: list[str], step: Step, by_user: bool = False
) -> DataFrame:
    """Distinct users per (keys, unit) from users' ranges [_first, _last], by a sweep.

    ``ranges_df``: user_key, the ``keys`` and the range; ``step`` moves by units (hours
    of timestamps or days of dates). Output: keys, ``_at`` (the unit), users.

    ``by_user``: ``ranges_df`` is clustered by user already (made from stays shuffled by
    user before they were exploded into ranges); the merge of each user's ranges then
    needs no exchange, and only the changes, summed per task first, are shuffled by the
    keys. Otherwise one shuffle of the ranges by the keys serves every step. Either way
    only the plan differs: Spark shuffles whatever a step needs, the counts are the same.
    """
    if not by_user:
        # One shuffle by the keys serves every step below (each groups or windows by the
        # keys plus more columns), where each would otherwise shuffle on its own columns.
        ranges_df = ranges_df.repartition(*keys)
    disjoint_df = merge_ranges(ranges_df, [C.USER_KEY, *keys], step)
    # One user's ranges in a group are disjoint now: users covering a unit = ranges
    # covering it = running sum of +1 (first unit) and -1 (the unit after the last).
    # Both changes of a range from one row (explode), not a union of two selects: Spark
    # prunes each side of a union to its own aggregate (min or max), so the two plans
    # differ, no exchange is reused and the merge above ran twice.
    change = F.explode(
        F.array(
            F.struct(F.col(FIRST).alias("_at"), F.lit(1).alias("_delta")),
            F.struct(step(F.col(LAST), 1).alias("_at"), F.lit(-1).alias("_delta")),
        )
    )
    changes_df = (
        disjoint_df.select(*keys, change.alias("_change"))
        .select(*keys, "_change._at", "_change._delta")
        .groupBy(*keys, "_at")
        .agg(F.sum("_delta").alias("_delta"))
    )
    along = Window.partitionBy(*keys).orderBy("_at")
    running = along.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    if step is _days:
        units = F.sequence(F.col("_at"), _days(F.col("_next"), -1))
    else:
        one_hour = F.make_dt_interval(hours=F.lit(1))
        units = F.sequence(F.col("_at"), _hours(F.col("_next"), -1), one_hour)
    return (
        changes_df.withColumn(C.USERS, F.sum("_delta").over(running))
        .withColumn("_next", F.lead("_at").over(along))
        .filter(F.col(C.USERS) > 0)  # a positive run always ends at a later change
        .select(*keys, F.explode(units).alias("_at"), F.col(C.USERS).cast("long").alias(C.USERS))
    )


def _window_hours(name: str, day_parts: DayPartParams) -> tuple[int, int, int]:
    """(start hour, end hour, days from the label's date to the end) of a period type."""
    if name == DAY:
        return 0, 0, 1
    start, end = getattr(day_parts, name)
    return start, end, 1 if start > end else 0


def _to_utc(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """UTC instant of local ``hour``:00 on ``day`` (hour 24 = the next midnight): a
    wall-clock time in a DST gap moves forward, one in an overlap takes the earlier
    offset, as Spark's to_utc_timestamp does."""
    wall = datetime.combine(day, time()) + timedelta(hours=hour)
    return wall.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def slot_labels(
    base: datetime, n_slots: int, name: str, timezone: str, day_parts: DayPartParams
) -> list[date | None]:
    """The label date of the ``name`` period holding each UTC hour slot base + i hours
    (None outside every such period); ``base`` is naive UTC, on the hour.

    A period holds a slot when the slot's start lies in [period start, period end), as
    when labelling each slot (jobs.periods.period_labels).
    """
    zone = ZoneInfo(timezone)
    start_h, end_h, end_days = _window_hours(name, day_parts)
    labels: list[date | None] = [None] * n_slots
    first_day = (base.replace(tzinfo=UTC).astimezone(zone)).date() - timedelta(days=1)
    last_day = (base + timedelta(hours=n_slots)).replace(tzinfo=UTC).astimezone(zone).date()
    day = first_day
    while day <= last_day:
        begin = _ceil_hour_dt(_to_utc(day, start_h, zone))
        stop = _to_utc(day + timedelta(days=end_days), end_h, zone)
        lo = max(0, int((begin - base).total_seconds() // 3600))
        i = lo
        while i < n_slots and base + timedelta(hours=i) < stop:
            labels[i] = day
            i += 1
        day += timedelta(days=1)
    return labels


def _int_array(values: list[int]) -> str:
    return "array(" + ",".join(str(v) for v in values) + ")"


def _label_span(
    name: str, base: datetime, n_slots: int, timezone: str, day_parts: DayPartParams
) -> Column:
    """struct(period, _from, _to): the label dates of the ``name`` periods a slot range
    [_first, _last] holds a slot of (nulls when none).

    Periods of one type are disjoint and ordered, so those a continuous range touches are
    consecutive: the first is the label of the first holding slot at or after _first (if
    it is not after _last), the last that of the last holding slot at or before _last.
    Both are looked up in arrays over the run's slots made on the driver (slot_labels),
    not computed per row: the time zone arithmetic per stay had cost ~35 us a row.
    """
    labels = slot_labels(base, n_slots, name, timezone, day_parts)
    days = [None if d is None else (d - _EPOCH).days for d in labels]
    next_day, next_slot, prev_day = [-1] * n_slots, [n_slots] * n_slots, [-1] * n_slots
    ahead: tuple[int, int] = (-1, n_slots)
    for i in range(n_slots - 1, -1, -1):
        if days[i] is not None:
            ahead = (days[i], i)
        next_day[i], next_slot[i] = ahead
    behind = -1
    for i in range(n_slots):
        if days[i] is not None:
            behind = days[i]
        prev_day[i] = behind
    base_s = int(base.replace(tzinfo=UTC).timestamp())

    def slot(ts: str) -> str:  # 0-based index of the slot starting at ts (an hour start)
        return f"CAST((unix_seconds({ts}) - {base_s}) DIV 3600 AS INT)"

    def at(values: list[int], ts: str) -> Column:
        return F.expr(f"element_at({_int_array(values)}, {slot(ts)} + 1)")

    slot_of_last = F.expr(slot(LAST))
    found = at(next_slot, FIRST) <= slot_of_last
    return F.struct(
        F.lit(name).alias(C.PERIOD),
        F.when(found, F.date_from_unix_date(at(next_day, FIRST))).alias("_from"),
        F.when(found, F.date_from_unix_date(at(prev_day, LAST))).alias("_to"),
    )


def with_label_ranges(
    ranges_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    periods: list[str],
    start: datetime,
    until: datetime,
) -> DataFrame:
    """Slot ranges -> ranges of label dates, one row per period type they touch.

    Replaces _first/_last (timestamps) by _first/_last (dates) and adds ``period``. Every
    range's slots must lie in [start, until) (naive UTC), as with_slot_range clips them.
    """
    base = start.replace(minute=0, second=0, microsecond=0)
    n_slots = int((until - base).total_seconds() // 3600) + 1
    spans = F.array(*[_label_span(name, base, n_slots, timezone, day_parts) for name in periods])
    others = [c for c in ranges_df.columns if c not in (FIRST, LAST)]
    return (
        ranges_df.withColumn("_span", F.explode(spans))
        .filter(F.col("_span._from").isNotNull())
        .select(
            *others,
            F.col("_span.period").alias(C.PERIOD),
            F.col("_span._from").alias(FIRST),
            F.col("_span._to").alias(LAST),
        )
    )


def _period_start(day: Column, timezone: str, day_parts: DayPartParams, periods: list[str]):
    """UTC start of the ``period`` labelled by local date ``day``."""
    out = None
    for name in periods:
        value = local_start(day, _window_hours(name, day_parts)[0], timezone)
        out = (F.when if out is None else out.when)(F.col(C.PERIOD) == name, value)
    return out


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _bounds(
    stays_df: DataFrame, start: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    """(start, until) as naive UTC; a missing bound is read from the stays (one small job:
    only callers without a month, such as tests, leave them out)."""
    if start is None or until is None:
        lo, hi = stays_df.agg(
            F.min(F.unix_seconds(C.STAY_START)), F.max(F.unix_seconds(C.STAY_END))
        ).first()
        epoch = datetime(1970, 1, 1)
        start = start or epoch + timedelta(seconds=lo or 0)
        until = until or epoch + timedelta(seconds=(hi or 0) + 3600)
    return _naive_utc(start), _naive_utc(until)


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
    cell = {C.STAY_H3: C.H3_CELL}
    parts = []
    if HOUR in periods:
        # hour slots starting in [start, end): with a half-hour zone the bounds fall
        # inside a UTC slot; the slot holding ``end`` still starts before it
        parts.append(
            stays_df.transform(with_slot_range, _ceil_hour_dt(start), _ceil_hour_dt(end))
            .transform(with_resolutions, cell, resolutions)
            .transform(count_by_sweep, [C.RESOLUTION, C.H3_CELL], _hours)
            .select(
                C.RESOLUTION,
                C.H3_CELL,
                F.col("_at").alias(C.PERIOD_START),
                F.lit(HOUR).alias(C.PERIOD),
                C.USERS,
            )
        )
    longer = [p for p in PERIODS if p in periods and p != HOUR]
    if longer:
        until = end + _TAIL if end else None
        # A stay makes a row per resolution and period type here (20 by default), and a
        # user's rows of a cell merge into few: the stays are shuffled by user before
        # they are exploded, not the rows after (30 M bench month, warm, alone: 4.5-4.8 ->
        # 3.6-4.1 s; all presence 14.6 -> 13.5 JVM CPU s). The hour slots make 5 rows a
        # stay and merge less; for them it was slower.
        parts.append(
            stays_df.repartition(C.USER_KEY)
            .transform(with_slot_range, start, until)
            .transform(
                with_label_ranges, timezone, day_parts, longer, *_bounds(stays_df, start, until)
            )
            .transform(with_resolutions, cell, resolutions)
            .transform(count_by_sweep, [C.RESOLUTION, C.H3_CELL, C.PERIOD], _days, by_user=True)
            .withColumn(C.PERIOD_START, _period_start(F.col("_at"), timezone, day_parts, longer))
            .transform(filter_period_starts, start, end)
            .select(*columns)
        )
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
