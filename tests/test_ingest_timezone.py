"""Month bounds of ingest do not depend on the machine's or the session's time zone."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from pyspark.sql import functions as F

from jobs import ingest
from mobiterra import columns as C
from mobiterra.config import month_bounds_utc

# Around the start of April 2020 in Paris: 2020-03-31 22:00 UTC (CEST, UTC+2).
EDGE_ROWS = [
    ("before", "2020-03-31 21:59:59"),
    ("first", "2020-03-31 22:00:00"),
    ("last", "2020-04-30 21:59:59"),
    ("after", "2020-04-30 22:00:00"),
]


@pytest.fixture
def paris_everywhere(spark):
    """The driver process and the Spark session both in Europe/Paris, restored after."""
    old_tz = os.environ.get("TZ")
    old_session = spark.conf.get("spark.sql.session.timeZone")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")
    try:
        yield
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
        spark.conf.set("spark.sql.session.timeZone", old_session)


def _in_period(spark) -> dict[str, bool]:
    # Instants from epoch seconds: unambiguous whatever the process or session zone.
    epochs = [
        (name, int(datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp()))
        for name, utc in EDGE_ROWS
    ]
    df = spark.createDataFrame(epochs, "name string, epoch long").select(
        "name", F.timestamp_seconds("epoch").alias(C.TIMESTAMP)
    )
    start, end = month_bounds_utc("2020-04", "Europe/Paris", tail_hours=0)
    flagged = ingest.with_period_flag(df, start, end).collect()
    return {r["name"]: r[ingest.IN_PERIOD] for r in flagged}


EXPECTED = {"before": False, "first": True, "last": True, "after": False}


def test_month_bounds_in_utc_session(spark):
    assert _in_period(spark) == EXPECTED


def test_month_bounds_do_not_move_with_machine_and_session_time_zone(spark, paris_everywhere):
    # With F.lit(naive datetime) the bounds were read in the driver's local time, so
    # both edges moved two hours: "before" was in, "last" was out.
    assert _in_period(spark) == EXPECTED
