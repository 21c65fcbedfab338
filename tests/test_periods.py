"""jobs.periods: local period starts as UTC instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import functions as F

from jobs.periods import is_weekday, local_start, local_time, utc_offsets, wall_date, wall_hour

# DST zones of both hemispheres, a half-hour DST shift (Lord Howe), a half-hour offset
# without DST (Kolkata) and a zone that skipped a whole day (Apia, 30 Dec 2011).
ZONES = ["Europe/Paris", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia"]


@pytest.mark.parametrize("zone", ZONES)
def test_local_start_is_make_timestamp_in_the_zone_every_hour_of_three_years(spark, zone):
    # The earlier definition, make_timestamp(y, m, d, h, 0, 0, zone), row for row:
    # every local hour of 2010-2012, DST gaps and overlaps included.
    days = spark.range(3 * 366).select(
        F.date_add(F.lit("2010-01-01").cast("date"), F.col("id").cast("int")).alias("d")
    )
    for hour in range(24):
        expected = F.make_timestamp(
            F.year("d"), F.month("d"), F.dayofmonth("d"), F.lit(hour), F.lit(0), F.lit(0),
            timezone=F.lit(zone),
        )  # fmt: skip
        differ = days.filter(~local_start(F.col("d"), hour, zone).eqNullSafe(expected))
        assert differ.count() == 0, (zone, hour, differ.limit(3).collect())


def test_local_start_of_ordinary_and_dst_days_in_paris(spark):
    # against Python's zoneinfo: both DST changes of 2020 and two ordinary starts
    zone = ZoneInfo("Europe/Paris")
    cases = [("2020-03-29", 0), ("2020-03-29", 22), ("2020-10-25", 9), ("2020-04-01", 17)]
    got = (
        spark.range(1)
        .select(*[local_start(F.to_date(F.lit(d)), h, "Europe/Paris") for d, h in cases])
        .first()
    )
    for value, (d, h) in zip(got, cases, strict=True):
        wall = datetime.fromisoformat(d) + timedelta(hours=h)
        assert value == wall.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None), (d, h)


@pytest.mark.parametrize("zone", ZONES)
def test_local_time_is_from_utc_timestamp_every_quarter_hour(spark, zone):
    # Instants every 7 min 30 s of 2011 and the months around it (Apia's skipped day,
    # both hemispheres' DST changes), for local time asked around one month at a time:
    # inside the month's days, the offsets; outside, from_utc_timestamp itself.
    instants = spark.range(430 * 24 * 8).select(
        F.timestamp_seconds(F.lit(1291161600) + F.col("id") * 450).alias("ts")  # 2010-12-01
    )
    for first, last in [
        (date(2011, 3, 1), date(2011, 4, 30)),
        (date(2011, 9, 1), date(2011, 10, 31)),
        (date(2011, 12, 1), date(2011, 12, 31)),
    ]:
        got = local_time(F.col("ts"), zone, first, last)
        differ = instants.filter(~got.eqNullSafe(F.from_utc_timestamp("ts", zone)))
        assert differ.count() == 0, (zone, first, differ.limit(3).collect())


def test_local_time_of_a_null_instant_is_null(spark):
    row = spark.range(1).select(
        local_time(F.lit(None).cast("timestamp"), "Europe/Paris", date(2020, 4, 1),
                   date(2020, 4, 30)).alias("t")
    ).first()  # fmt: skip
    assert row.t is None


def test_utc_offsets_find_each_transition_to_the_second():
    # Paris 2020: +1 h until 29 March 01:00 UTC, +2 h until 25 October 01:00 UTC
    got = utc_offsets("Europe/Paris", datetime(2020, 3, 1), datetime(2020, 11, 1))
    assert got == [
        (datetime(2020, 3, 1), 3600),
        (datetime(2020, 3, 29, 1), 7200),
        (datetime(2020, 10, 25, 1), 3600),
    ]
    # Kolkata: one offset, +5:30; Lord Howe's half-hour change at 2:00 local (15:00 UTC)
    assert utc_offsets("Asia/Kolkata", datetime(2020, 1, 1), datetime(2020, 2, 1)) == [
        (datetime(2020, 1, 1), 19800)
    ]
    lord_howe = utc_offsets("Australia/Lord_Howe", datetime(2020, 3, 1), datetime(2020, 5, 1))
    assert lord_howe == [(datetime(2020, 3, 1), 39600), (datetime(2020, 4, 4, 15), 37800)]


def test_wall_date_hour_and_weekday_are_the_casts_of_the_session(spark):
    # every 7 min 30 s and the microsecond before and after each hour, 1969-12-25 .. 1970-01-05
    # (negative instants) and 2020-03-27 .. 2020-04-06 (the session is UTC)
    def instants(first_second: int):
        steps = spark.range(11 * 24 * 8).select(
            (F.lit(first_second * 1_000_000) + F.col("id") * 450_000_000).alias("us")
        )
        edges = steps.select((F.col("us") + F.lit(-1)).alias("us")).union(
            steps.select((F.col("us") + F.lit(1)).alias("us"))
        )
        return steps.union(edges).select(F.timestamp_micros("us").alias("t"))

    df = instants(-7 * 86400).union(instants(1585267200))
    checks = {
        "date": (wall_date(F.col("t")), F.to_date("t")),
        "date 6 h back": (
            wall_date(F.col("t"), hours_back=6),
            F.to_date(F.col("t") - F.make_interval(hours=F.lit(6))),
        ),
        "hour": (wall_hour(F.col("t")), F.hour("t")),
        "weekday": (is_weekday(F.to_date("t")), F.dayofweek(F.to_date("t")).between(2, 6)),
    }
    for name, (got, expected) in checks.items():
        differ = df.filter(~got.eqNullSafe(expected))
        assert differ.count() == 0, (name, differ.limit(3).collect())
    assert df.select(wall_hour(F.lit(None).cast("timestamp"))).first()[0] is None
