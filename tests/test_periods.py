"""jobs.periods: local period starts as UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import functions as F

from jobs.periods import local_start

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
