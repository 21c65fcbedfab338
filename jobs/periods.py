"""Publication periods of a UTC timestamp: hour, local day and local day-parts.

Day and day-part boundaries are local wall-clock times (DESIGN.md "Timezone"); each
period is stored by the UTC instant of its start, so a DST day is 23 or 25 hours long and
its ``day`` period still starts at local midnight.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mobiterra import columns as C
from mobiterra.config import DayPartParams

HOUR = "hour"
DAY = "day"
MONTH = "month"
DAY_PARTS = ("night", "daytime", "evening")  # names of DayPartParams fields
PERIODS = (HOUR, DAY, *DAY_PARTS)


def utc_offsets(timezone: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offsets over [start, end) (naive UTC): [(from, seconds)], the first
    from ``start``, each next one from the second its transition happens."""
    zone = ZoneInfo(timezone)

    def offset(t: datetime) -> int:
        return int(t.replace(tzinfo=UTC).astimezone(zone).utcoffset().total_seconds())

    out = [(start, offset(start))]
    step, t = timedelta(minutes=15), start
    while t < end:
        nxt = min(t + step, end)
        if offset(nxt) != out[-1][1]:  # a transition in (t, nxt]: to the second
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
                lo, hi = (mid, hi) if offset(mid) == out[-1][1] else (lo, mid)
            out.append((hi, offset(hi)))
        t = nxt
    return out


def local_time(ts: Column, timezone: str, first: date, last: date) -> Column:
    """``from_utc_timestamp(ts, timezone)`` (the wall clock of UTC instant ``ts``), as the
    zone's offsets in force around local dates ``first`` .. ``last`` added to the instant:
    arithmetic per row instead of the zone's rules (~3x less; events of a month, warm:
    residence 3.4 -> 2.9 s). Outside those days, ``from_utc_timestamp`` itself
    (tests/test_periods.py checks both against it)."""
    start = datetime.combine(first - timedelta(days=2), datetime.min.time())
    end = datetime.combine(last + timedelta(days=3), datetime.min.time())
    offsets = utc_offsets(timezone, start, end)
    bounds = [t for t, _ in offsets[1:]] + [end]

    def micros(t: datetime) -> Column:
        return F.lit(int((t - datetime(1970, 1, 1)).total_seconds()) * 1_000_000)

    us = F.unix_micros(ts)
    as_rules = F.unix_micros(F.from_utc_timestamp(ts, timezone))
    shifted = F.when(us < micros(start), as_rules)
    for (_, seconds), until in zip(offsets, bounds, strict=True):
        shifted = shifted.when(us < micros(until), us + F.lit(seconds * 1_000_000))
    return F.timestamp_micros(shifted.otherwise(as_rules))


_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US


def wall_date(local_ts: Column, hours_back: int = 0) -> Column:
    """``to_date(local_ts - hours_back hours)`` of a wall-clock timestamp (local_time), by
    exact integer arithmetic on its microseconds (the session is UTC): ~0.2 s less per
    15 M rows on two cores than the cast."""
    us = F.unix_micros(local_ts) - F.lit(hours_back * _HOUR_US)
    return F.date_from_unix_date(((us - F.pmod(us, F.lit(_DAY_US))) / _DAY_US).cast("int"))


def wall_hour(local_ts: Column) -> Column:
    """``hour(local_ts)`` of a wall-clock timestamp, as :func:`wall_date`."""
    us = F.unix_micros(local_ts)
    return ((F.pmod(us, F.lit(_DAY_US)) - F.pmod(us, F.lit(_HOUR_US))) / _HOUR_US).cast("int")


def is_weekday(day: Column) -> Column:
    """Monday to Friday (``dayofweek`` 2..6), from the days since 1970-01-01 (a Thursday)."""
    return F.pmod(F.unix_date(day) + F.lit(3), F.lit(7)) < 5


def local_start(day: Column, hour: int, timezone: str) -> Column:
    """UTC instant of local ``hour``:00 on local date ``day``.

    The wall-clock time as a session (UTC) timestamp, read in ``timezone``: the same
    instant as ``make_timestamp(..., timezone)`` in every zone, DST gaps and overlaps
    included (tests/test_periods.py), at ~2-3x less per row.
    """
    wall_clock = F.to_timestamp(day) + F.make_dt_interval(hours=F.lit(hour))
    return F.to_utc_timestamp(wall_clock, timezone)


def _day_part(local_ts: Column, name: str, hours: tuple[int, int], timezone: str) -> Column:
    """struct(period, period_start) when ``local_ts`` falls in the part, else null.

    A part crossing midnight (start > end) is labelled by the date of its evening.
    """
    start, end = hours
    hour = wall_hour(local_ts)
    if start < end:
        inside = (hour >= start) & (hour < end)
        day = wall_date(local_ts)
    else:
        inside = (hour >= start) | (hour < end)
        day = wall_date(local_ts, hours_back=end)
    label = F.struct(
        F.lit(name).alias(C.PERIOD), local_start(day, start, timezone).alias(C.PERIOD_START)
    )
    return F.when(inside, label)


def period_labels(ts: str, timezone: str, day_parts: DayPartParams, periods: list[str]) -> Column:
    """Array of struct(period, period_start) for the ``periods`` the UTC ``ts`` falls in.

    ``hour`` starts at the UTC hour; ``day`` at local midnight; a day-part at its local
    start hour. Relies on the session time zone being UTC (mobiterra.spark sets it).
    """
    unknown = sorted(set(periods) - set(PERIODS))
    if unknown or not periods:
        raise ValueError(f"periods must be a non-empty subset of {PERIODS}, got {periods}")
    local_ts = F.from_utc_timestamp(F.col(ts), timezone)
    labels = []
    if HOUR in periods:
        labels.append(
            F.struct(
                F.lit(HOUR).alias(C.PERIOD),
                F.date_trunc("hour", F.col(ts)).alias(C.PERIOD_START),
            )
        )
    if DAY in periods:
        labels.append(
            F.struct(
                F.lit(DAY).alias(C.PERIOD),
                local_start(wall_date(local_ts), 0, timezone).alias(C.PERIOD_START),
            )
        )
    for name in DAY_PARTS:
        if name in periods:
            labels.append(_day_part(local_ts, name, getattr(day_parts, name), timezone))
    return F.filter(F.array(*labels), lambda label: label.isNotNull())


def with_periods(
    df: DataFrame,
    ts: str,
    timezone: str,
    day_parts: DayPartParams,
    periods: list[str],
) -> DataFrame:
    """One row per input row and period it falls in: adds ``period`` and ``period_start``."""
    return df.withColumn(
        "_period", F.explode(period_labels(ts, timezone, day_parts, periods))
    ).select(*df.columns, "_period.*")


def utc_lit(value: datetime) -> Column:
    """A timestamp literal; a naive datetime is read as UTC (as config.month_bounds_utc
    returns), not as the driver machine's local time, which pyspark would otherwise use."""
    return F.lit(value if value.tzinfo else value.replace(tzinfo=UTC))


def filter_period_starts(df: DataFrame, start: datetime | None, end: datetime | None) -> DataFrame:
    """Keep periods starting in [start, end) (UTC; either bound may be None)."""
    if start is not None:
        df = df.filter(F.col(C.PERIOD_START) >= utc_lit(start))
    if end is not None:
        df = df.filter(F.col(C.PERIOD_START) < utc_lit(end))
    return df
