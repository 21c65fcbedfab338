"""Ingest: every rejection reason, duplicates, the month filter and the manifest invariant."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from jobs import cells as cells_rules
from jobs import ingest
from jobs.stages import CELLS_STATUS_SCHEMA
from mobiterra import columns as C
from mobiterra.config import month_bounds_utc

TZ = "Europe/Paris"
START, END = month_bounds_utc("2020-03", TZ, 6)
RAW = "user_id string, timestamp string, cell_id string, source_file string"


@pytest.fixture(scope="module")
def cells_df(spark):
    rows = [
        ("good", None, None, cells_rules.OK),
        # re-used id: a site until 10 March, another from 20 March; nothing in between
        ("moved", None, date(2020, 3, 10), cells_rules.OK),
        ("moved", date(2020, 3, 20), None, cells_rules.OK),
        ("badcoord", None, None, cells_rules.INVALID_COORDINATES),
        ("twice", None, None, cells_rules.AMBIGUOUS),
    ]
    return spark.createDataFrame(rows, CELLS_STATUS_SCHEMA)


def _classify(spark, cells_df, rows):
    raw_df = spark.createDataFrame([(*r, "f.csv") for r in rows], RAW)
    return ingest.classify_events(raw_df, cells_df, START, END, TZ)


CASES = [
    (("u1", "2020-03-05T10:00:00Z", "good"), None),
    ((None, "2020-03-05T10:00:00Z", "good"), ingest.NULL_USER_ID),
    (("  ", "2020-03-05T10:00:00Z", "good"), ingest.NULL_USER_ID),
    (("u1", None, "good"), ingest.NULL_TIMESTAMP),
    (("u1", "", "good"), ingest.NULL_TIMESTAMP),
    (("u1", "yesterday at noon", "good"), ingest.UNPARSEABLE_TIMESTAMP),
    (("u1", "2020-03-05T10:00:00Z", None), ingest.NULL_CELL_ID),
    (("u1", "2020-03-05T10:00:00Z", "nowhere"), ingest.UNKNOWN_CELL),
    (("u1", "2020-03-15T10:00:00Z", "moved"), ingest.CELL_NOT_ACTIVE),
    (("u1", "2020-03-05T10:00:00Z", "moved"), None),
    (("u1", "2020-03-25T10:00:00Z", "moved"), None),
    (("u1", "2020-03-05T10:00:00Z", "badcoord"), cells_rules.INVALID_COORDINATES),
    (("u1", "2020-03-05T10:00:00Z", "twice"), cells_rules.AMBIGUOUS),
]


@pytest.mark.parametrize("row,reason", CASES, ids=[str(r) for _, r in CASES])
def test_each_bad_row_gets_its_reason(spark, cells_df, row, reason):
    got = _classify(spark, cells_df, [row]).collect()
    assert [r[C.REASON] for r in got] == [reason]


def test_first_broken_rule_is_the_reason(spark, cells_df):
    got = _classify(spark, cells_df, [(None, "garbage", None)]).collect()
    assert got[0][C.REASON] == ingest.NULL_USER_ID


def test_quarantine_rows_carry_no_user_id(spark, cells_df):
    df = ingest.filter_rejected(
        _classify(spark, cells_df, [(None, "x", "good"), ("u9", "x", "good")])
    )
    assert C.USER_ID not in df.columns and C.USER_KEY not in df.columns
    got = sorted(r[C.REASON] for r in df.collect())
    assert got == sorted([ingest.NULL_USER_ID, ingest.UNPARSEABLE_TIMESTAMP])


def test_month_filter_uses_local_month_and_keeps_the_last_night(spark, cells_df):
    rows = [
        ("u1", "2020-02-29T22:59:59Z", "good"),  # 23:59 local on 29 Feb: February
        ("u1", "2020-02-29T23:00:00Z", "good"),  # 00:00 local on 1 March: March
        ("u1", "2020-03-31T21:59:59Z", "good"),  # 23:59 local on 31 March (CEST)
        ("u1", "2020-04-01T03:59:59Z", "good"),  # 05:59 local on 1 April: night of 31 March
        ("u1", "2020-04-01T04:00:00Z", "good"),  # 06:00 local: April
    ]
    got = [r[ingest.IN_PERIOD] for r in _classify(spark, cells_df, rows).collect()]
    assert got == [False, True, True, True, False]


def test_exact_duplicates_are_dropped_and_counted(spark, cells_df):
    rows = [("u1", "2020-03-05T10:00:00Z", "good")] * 3 + [("u1", "2020-03-05T10:00:01Z", "good")]
    classified = _classify(spark, cells_df, rows)
    accepted = ingest.accepted_events(classified, b"k").count()
    counts = ingest.IngestCounts.from_buckets(ingest.count_buckets(classified).collect(), accepted)
    assert (counts.rows_read, counts.rows_accepted, counts.rows_duplicate) == (4, 2, 2)
    assert counts.reconciles()


def test_each_accepted_event_carries_its_users_hmac(spark, cells_df):
    """Every accepted event carries HMAC(key, its own user id), UTF-8 encoded and
    truncated; a user with only rejected rows has no event."""
    import hashlib
    import hmac

    rows = [
        ("u1", "2020-03-05T10:00:00Z", "good"),
        ("u1", "2020-03-06T10:00:00Z", "good"),
        ("u2", "2020-03-05T11:00:00Z", "good"),
        ("élise", "2020-03-05T12:00:00Z", "good"),  # non-ASCII: the UTF-8 bytes are keyed
        ("u3", "2020-03-05T12:00:00Z", "nowhere"),  # rejected only
        (None, "2020-03-05T12:00:00Z", "good"),
    ]
    got = ingest.accepted_events(_classify(spark, cells_df, rows), b"secret").collect()
    want = {
        u: hmac.new(b"secret", u.encode(), hashlib.sha256).hexdigest()[:32]
        for u in ("u1", "u2", "élise")
    }
    assert sorted(r[C.USER_KEY] for r in got) == sorted(
        [want["u1"]] * 2 + [want["u2"], want["élise"]]
    )
    assert C.USER_ID not in got[0].asDict()


def test_a_cells_validity_runs_from_local_midnight_to_local_midnight(spark, cells_df):
    """ "moved" is valid until 10 March and from 20 March, local days (UTC+1 then)."""
    rows = [
        ("u1", "2020-03-10T22:59:59Z", "moved"),  # 23:59:59 on 10 March: still valid
        ("u1", "2020-03-10T23:00:00Z", "moved"),  # 00:00 on 11 March: the gap
        ("u1", "2020-03-19T22:59:59Z", "moved"),  # 23:59:59 on 19 March: the gap
        ("u1", "2020-03-19T23:00:00Z", "moved"),  # 00:00 on 20 March: valid again
    ]
    got = [r[C.REASON] for r in _classify(spark, cells_df, rows).collect()]
    assert got == [None, ingest.CELL_NOT_ACTIVE, ingest.CELL_NOT_ACTIVE, None]


def _reference_cell_status(events_df, cells_df, tz):
    """The rule as first written: the events' local day against each row's dates."""
    day = F.to_date(F.from_utc_timestamp(F.col(C.TIMESTAMP), tz))
    active = cells_df.select(
        F.col(C.CELL_ID).alias("_cid"), C.VALID_FROM, C.VALID_TO, F.col("status").alias("_s")
    )
    on = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col(C.VALID_FROM).isNull() | (day >= F.col(C.VALID_FROM)))
        & (F.col(C.VALID_TO).isNull() | (day <= F.col(C.VALID_TO)))
    )
    known = [r[0] for r in cells_df.select(C.CELL_ID).distinct().collect()]
    status = (
        F.when(~F.col(C.CELL_ID).isin(known), F.lit(ingest.UNKNOWN_CELL))
        .when(F.col("_s").isNull(), F.lit(ingest.CELL_NOT_ACTIVE))
        .when(F.col("_s") != cells_rules.OK, F.col("_s"))
    )
    return events_df.join(active, on=on, how="left").select("_i", status.alias("_want"))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    periods=st.lists(st.tuples(st.integers(0, 100), st.integers(0, 15)), min_size=1, max_size=4),
    tz=st.sampled_from(["Europe/Paris", "America/Cayenne", "Indian/Reunion", "Pacific/Chatham"]),
)
def test_property_cell_status_equals_the_local_day_rule(spark, periods, tz):
    """Disjoint validity periods of one id (gaps, open ends), an event every half hour
    over four months (two DST changes in Paris and Chatham) and one per day at a minute
    before and at each UTC and local midnight: the one-join timeline gives each event
    the status the local-day rule gives."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    t0, day0 = datetime(2020, 1, 1), date(2020, 1, 1)
    rows, at = [], 0
    for i, (gap, length) in enumerate(sorted(periods)):
        at += gap
        first = day0 + timedelta(days=at)
        last = first + timedelta(days=length)
        at += length + 1
        open_first = i == 0 and gap % 3 == 0
        open_last = i == len(periods) - 1 and length % 2 == 1
        status = cells_rules.INVALID_COORDINATES if gap % 5 == 1 else cells_rules.OK
        rows.append(("c", None if open_first else first, None if open_last else last, status))
    cells = spark.createDataFrame(rows, CELLS_STATUS_SCHEMA)
    zone = ZoneInfo(tz)
    minutes = list(range(0, 120 * 24 * 60, 30))
    for d in range(120):
        local = datetime.combine(day0 + timedelta(days=d), datetime.min.time(), zone)
        utc_midnight = (local.astimezone(UTC).replace(tzinfo=None) - t0).total_seconds() // 60
        minutes += [d * 1440 - 1, d * 1440, int(utc_midnight) - 1, int(utc_midnight)]
    minutes = [m for m in minutes if m >= 0]
    events = spark.createDataFrame(
        [(i, t0 + timedelta(minutes=m), "c" if i % 97 else "other")
         for i, m in enumerate(sorted(set(minutes)))],
        f"_i long, {C.TIMESTAMP} timestamp, {C.CELL_ID} string",
    )  # fmt: skip
    got = (
        ingest.with_cell_status(events, cells, tz)
        .select(
            "_i",
            F.when(~F.col("cell_known"), F.lit(ingest.UNKNOWN_CELL))
            .when(F.col("cell_status") != cells_rules.OK, F.col("cell_status"))
            .alias("_got"),
        )
        .join(_reference_cell_status(events, cells, tz), on="_i")
        .collect()
    )
    assert len(got) == len(set(minutes))
    assert all(r["_got"] == r["_want"] for r in got), [r for r in got if r["_got"] != r["_want"]]


USERS = st.sampled_from([None, "", "u1", "u2", "u3"])
TIMES = st.sampled_from(
    [
        None,
        "",
        "bad",
        "2020-03-02T01:00:00Z",
        "2020-03-15T12:00:00",
        "2020-03-31T23:30:00Z",
        "2020-02-10T08:00:00Z",
        "2020-04-12T08:00:00Z",
        "2020-03-15 12:00:00",
    ]
)
CELLS = st.sampled_from([None, "good", "moved", "nowhere", "badcoord", "twice"])


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(USERS, TIMES, CELLS), min_size=1, max_size=40))
def test_property_every_row_lands_in_exactly_one_bucket(spark, cells_df, rows):
    classified = _classify(spark, cells_df, rows).cache()
    accepted_df = ingest.accepted_events(classified, b"k")
    accepted = accepted_df.count()
    counts = ingest.IngestCounts.from_buckets(ingest.count_buckets(classified).collect(), accepted)
    assert counts.rows_read == len(rows)
    assert counts.reconciles()
    assert counts.rows_duplicate >= 0
    # accepted rows are exactly the distinct good in-period rows, re-keyed
    good = classified.filter(classified[C.REASON].isNull() & classified[ingest.IN_PERIOD])
    assert accepted == good.select(C.USER_ID, C.TIMESTAMP, C.CELL_ID).distinct().count()
    assert set(accepted_df.columns) == {C.USER_KEY, C.TIMESTAMP, C.CELL_ID}
    classified.unpersist()


def test_cells_validation_quarantines_bad_coordinates_and_overlaps():
    raw = pd.DataFrame(
        {
            C.CELL_ID: ["a", "b", "c", "d", "d", None, "e", "e"],
            C.LAT: ["48.85", "91", "x", "45.0", "45.1", "44", "43.0", "43.1"],
            C.LON: ["2.35", "2.0", "2.0", "4.0", "4.1", "1", "1.0", "1.1"],
            C.AZIMUTH_DEG: [None] * 8,
            C.RANGE_M: [None] * 8,
            C.VALID_FROM: [None, None, None, "2020-01-01", "2020-02-01", None, None, "2020-03-01"],
            C.VALID_TO: [None, None, None, "2020-03-01", None, None, "2020-02-28", None],
        }
    )
    cells, quarantine = cells_rules.validate_cells(raw)
    status = dict(zip(cells[C.CELL_ID], cells[cells_rules.STATUS], strict=False))
    assert status["a"] == cells_rules.OK
    assert status["b"] == cells_rules.INVALID_COORDINATES
    assert status["c"] == cells_rules.INVALID_COORDINATES
    assert status["d"] == cells_rules.AMBIGUOUS  # overlapping validity periods
    assert set(cells.loc[cells[C.CELL_ID] == "e", cells_rules.STATUS]) == {cells_rules.OK}
    assert cells_rules.NULL_CELL_ID in set(quarantine[C.REASON])


def test_buckets_observed_while_writing_equal_the_counted_buckets(spark, cells_df):
    """stage_ingest counts the buckets with DataFrame.observe during the accepted write."""
    from pyspark.sql import Observation

    rows = [r for r, _ in CASES] + [("u1", "2020-02-10T08:00:00Z", "good")] * 2
    classified = _classify(spark, cells_df, rows)
    observation = Observation("buckets")
    accepted = ingest.accepted_events(classified, b"k", observation).count()
    observed = ingest.IngestCounts.from_buckets(
        ingest.buckets_from_metrics(observation.get), accepted
    )
    counted = ingest.IngestCounts.from_buckets(ingest.count_buckets(classified).collect(), accepted)
    assert observed == counted
    assert (observed.rows_read, observed.rows_out_of_period) == (len(rows), 2)


def test_day_partitioned_events_are_read_only_for_the_month(spark, tmp_path):
    """events/day=YYYY-MM-DD/: the month's folders (a day's margin each side) are read,
    others are pruned; a folder not named by a date is read and classified, not dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs import stages
    from jobs.readers import read_events
    from mobiterra.config import RunConfig

    events = tmp_path / "events"
    days = {  # folder -> its rows' timestamps (UTC)
        "2020-02-27": ["2020-02-27T10:00:00"],  # far before March: pruned
        "2020-02-29": ["2020-02-29T23:30:00"],  # the margin day: read (00:30 local, March)
        "2020-03-10": ["2020-03-10T10:00:00", "2020-03-10T11:00:00"],
        "2020-04-01": ["2020-04-01T03:00:00"],  # the month's last night: read
        "2020-04-05": ["2020-04-05T10:00:00"],  # after March: pruned
        "not-a-date": ["2020-03-12T10:00:00"],
    }
    for day, stamps in days.items():
        folder = events / f"day={day}"
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "user_id": [f"u{i}" for i in range(len(stamps))],
                "timestamp": pa.array(pd.to_datetime(stamps), pa.timestamp("us", tz="UTC")),
                "cell_id": ["good"] * len(stamps),
            }
        )
        pq.write_table(table, folder / "part-0.parquet")
    pd.DataFrame([{"cell_id": "good", "lat": 48.85, "lon": 2.35}]).to_csv(
        tmp_path / "cells.csv", index=False
    )
    assert "day" in read_events(spark, events).columns
    cfg = RunConfig(
        events=events, cells=tmp_path / "cells.csv", month="2020-03", out=tmp_path / "out"
    )
    # with a staging folder (the month's own ingest) every row read is counted
    result = stages.stage_ingest(spark, cfg, "2020-03", tmp_path / "work", tmp_path / "staging")
    # read: 29 Feb, 10 Mar (2), 1 Apr and the undated folder; all in March's window
    assert result.counts["rows_read"] == 5
    assert result.counts["rows_accepted"] == 5
    assert result.counts["rows_out_of_period"] == 0
    # a single file or a folder without day= folders is read whole, as before
    assert "day" not in read_events(spark, events / "day=2020-03-10").columns


def test_nights_only_ingest_keeps_the_night_and_the_same_homes(spark, tmp_path):
    """A baseline month is ingested for its usual residences only: night-time rows alone
    (local 22:00-06:00), deduplicated, and the homes equal those of a full ingest."""
    from pyspark.sql import functions as F

    from jobs import stages
    from mobiterra.config import RunConfig
    from tests.small_sample import CELLS, write_small_events

    events = tmp_path / "events.parquet"
    write_small_events(events, users=150)
    cfg = RunConfig(
        events=events,
        cells=CELLS,
        month="2020-04",
        baseline_month="2020-02",
        out=tmp_path / "out",
        coverage={"strategy": "point"},
    )
    coverage = stages.stage_coverage(cfg, tmp_path / "cache")
    full = stages.stage_ingest(spark, cfg, "2020-02", tmp_path / "full", None)
    nights = stages.stage_ingest(spark, cfg, "2020-02", tmp_path / "nights", None, True)

    full_df = spark.read.parquet(full.events)
    local_hour = F.hour(F.from_utc_timestamp(F.col(C.TIMESTAMP), cfg.timezone))
    at_night = (local_hour >= 22) | (local_hour < 6)
    assert nights.counts == {
        "rows_in_period": full.counts["rows_accepted"] + full.counts["rows_duplicate"],
        "night_rows_accepted": full_df.filter(at_night).count(),
    }
    assert 0 < nights.counts["night_rows_accepted"] < full.counts["rows_accepted"]
    night_rows = spark.read.parquet(nights.events)
    assert night_rows.filter(~at_night).count() == 0
    assert night_rows.exceptAll(full_df.filter(at_night)).count() == 0

    def homes(ingested, folder):
        path, n = stages.stage_residence(
            spark, cfg, ingested.events, coverage, "2020-02", tmp_path / folder
        )
        return n, sorted(tuple(r) for r in spark.read.parquet(path).collect())

    n_full, homes_full = homes(full, "full")
    assert n_full > 100
    assert homes(nights, "nights") == (n_full, homes_full)


def test_the_java_accepted_events_equal_sparks_on_random_rows(spark, cells_df, monkeypatch):
    """AcceptedEvents.java (the default when `make setup` built the jar) and Spark's
    dropDuplicates + user_key: the same rows on 3,000 rows of 60 users (non-ASCII ids,
    exact duplicates, instants a microsecond apart, rejected rows), and the same
    observed buckets."""
    import random
    import shutil

    from pyspark.sql import Observation

    from mobiterra import spark as engine

    if shutil.which("javac") is None:
        pytest.skip("no JDK here: ingest uses Spark's dropDuplicates")
    assert engine.has_java_jobs(spark), "make setup builds the jobs/java jar"
    rng = random.Random(7)
    times = [f"2020-03-05T10:00:00.00000{i}Z" for i in range(3)] + [
        f"2020-03-{d:02d}T{h:02d}:30:00Z" for d in (1, 5, 31) for h in (0, 12, 23)
    ]
    users = [f"u{i}" for i in range(55)] + ["élise", "zoë", "u 1", "U1", "ü"]
    cells = ["good", "good", "moved", "nowhere", None]
    rows = [(rng.choice(users), rng.choice(times), rng.choice(cells)) for _ in range(3000)]
    classified = _classify(spark, cells_df, rows).cache()
    got = {}
    for mode in ("java", "spark"):
        if mode == "spark":
            monkeypatch.setattr(engine, "has_java_jobs", lambda session: False)
        observation = Observation(f"random-{mode}")
        df = ingest.accepted_events(classified, "clé".encode(), observation).cache()
        got[mode] = (df, df.count(), observation.get)
    (java, n_java, obs_java), (plain, n_plain, obs_plain) = got["java"], got["spark"]
    assert n_java == n_plain > 100
    assert java.exceptAll(plain).count() == 0 == plain.exceptAll(java).count()
    assert obs_java == obs_plain
    assert java.schema == plain.schema
    classified.unpersist()
