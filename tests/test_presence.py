"""Present population interpolated from stays, with local periods and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import h3
import pytest
from pyspark.sql import functions as F

from jobs.presence import count_present_population
from jobs.stays import stays_from_located
from mobiterra import columns as C
from mobiterra.config import DayPartParams, StayParams, month_bounds_utc

PARIS = "Europe/Paris"
A = h3.str_to_int(h3.latlng_to_cell(48.8584, 2.2945, 8))
A2 = h3.str_to_int(sorted(h3.cell_to_children(h3.cell_to_parent(h3.int_to_str(A), 7), 8))[-1])
A_7 = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(A), 7))
PARTS = DayPartParams()
STAYS = "user_key string, stay_h3 long, stay_start timestamp, stay_end timestamp"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stays(spark, rows):
    return spark.createDataFrame([(u, c, ts(s), ts(e)) for u, c, s, e in rows], STAYS)


def counted(counts_df):
    """Sorted (resolution, h3_cell, period, period_start 'yyyy-MM-dd HH:mm' UTC, users)."""
    start = F.date_format(F.col(C.PERIOD_START), "yyyy-MM-dd HH:mm")
    rows = counts_df.select(C.RESOLUTION, C.H3_CELL, C.PERIOD, start, C.USERS).collect()
    return sorted(tuple(r) for r in rows)


def counts_columns_ok(counts_df) -> bool:
    types = dict(counts_df.dtypes)
    return types == {
        C.RESOLUTION: "int",
        C.H3_CELL: "bigint",
        C.PERIOD_START: "timestamp",
        C.PERIOD: "string",
        C.USERS: "bigint",
    }


def test_a_three_hour_stay_counts_in_three_hours_without_events_between(spark):
    stays_df = stays(spark, [("u1", A, "2024-01-16 10:15", "2024-01-16 12:45")])
    counts_df = count_present_population(stays_df, PARIS, PARTS, ["hour"], [8])
    assert counts_columns_ok(counts_df)
    assert counted(counts_df) == [
        (8, A, "hour", "2024-01-16 10:00", 1),
        (8, A, "hour", "2024-01-16 11:00", 1),
        (8, A, "hour", "2024-01-16 12:00", 1),
    ]


def test_a_user_counts_once_per_cell_hour_however_many_events(spark):
    located_df = spark.createDataFrame(
        [
            ("u1", ts("2024-01-16 10:00"), A),
            ("u1", ts("2024-01-16 10:05"), A),
            ("u1", ts("2024-01-16 10:10"), A2),
            ("u1", ts("2024-01-16 10:20"), A),
            ("u1", ts("2024-01-16 10:40"), A),
            ("u2", ts("2024-01-16 10:30"), A2),
            ("u2", ts("2024-01-16 10:50"), A2),
            ("u3", ts("2024-01-16 10:30"), A),  # edge: a single event is a pass, not present
        ],
        "user_key string, timestamp timestamp, h3_id long",
    )
    stays_df = stays_from_located(located_df, StayParams())
    got = counted(count_present_population(stays_df, PARIS, PARTS, ["hour", "day"], [7, 8]))
    assert got == [
        (7, A_7, "day", "2024-01-15 23:00", 2),  # local midnight, CET = UTC+1
        (7, A_7, "hour", "2024-01-16 10:00", 2),  # the res-7 parent holds both users
        (8, A, "day", "2024-01-15 23:00", 1),
        (8, A, "hour", "2024-01-16 10:00", 1),
        (8, A2, "day", "2024-01-15 23:00", 1),
        (8, A2, "hour", "2024-01-16 10:00", 1),
    ]


def test_dst_day_has_23_hours_and_local_period_starts(spark):
    # Sunday 31 March 2024: clocks go 02:00 CET -> 03:00 CEST. The stay runs from 00:30
    # local (CET) to 23:30 local (CEST), i.e. 23:30 UTC the day before to 21:30 UTC.
    stays_df = stays(spark, [("u1", A, "2024-03-30 23:30", "2024-03-31 21:30")])
    counts_df = count_present_population(
        stays_df, PARIS, PARTS, ["hour", "day", "night", "daytime", "evening"], [8]
    )
    got = counted(counts_df)
    hours = [r for r in got if r[2] == "hour"]
    assert len(hours) == 23
    assert hours[0][3] == "2024-03-30 23:00" and hours[-1][3] == "2024-03-31 21:00"
    assert [r for r in got if r[2] != "hour"] == [
        (8, A, "day", "2024-03-30 23:00", 1),  # local midnight still in CET
        (8, A, "daytime", "2024-03-31 07:00", 1),  # 09:00 CEST
        (8, A, "evening", "2024-03-31 15:00", 1),  # 17:00 CEST
        (8, A, "night", "2024-03-30 21:00", 1),  # night of the 30th, 22:00 CET
        (8, A, "night", "2024-03-31 20:00", 1),  # night of the 31st, 22:00 CEST
    ]


def test_month_bounds_keep_the_last_night_whole_and_drop_next_month(spark):
    # 31 March 22:30 CEST -> 1 April 05:00 CEST, at the end of the March run.
    stays_df = stays(spark, [("u1", A, "2024-03-31 20:30", "2024-04-01 03:00")])
    start, end = month_bounds_utc("2024-03", PARIS, 0)
    counts_df = count_present_population(
        stays_df, PARIS, PARTS, ["hour", "day", "night"], [8], start, end
    )
    assert counted(counts_df) == [
        (8, A, "day", "2024-03-30 23:00", 1),  # 31 March (1 April is the next month's)
        (8, A, "hour", "2024-03-31 20:00", 1),
        (8, A, "hour", "2024-03-31 21:00", 1),  # the month's last hour
        (8, A, "night", "2024-03-31 20:00", 1),  # the whole night, tail included
    ]


def _by_hour_slots(stays_df, timezone, day_parts, periods, resolutions, start, end):
    """The definition, slow: explode every stay into its UTC hour slots, label each slot
    (jobs.periods.with_periods), count distinct users. The fast path must agree."""
    from datetime import timedelta

    from jobs.periods import filter_period_starts, utc_lit, with_periods
    from jobs.residence import with_resolutions

    first = F.greatest(F.col(C.STAY_START), utc_lit(start))
    last = F.least(F.col(C.STAY_END), utc_lit(end + timedelta(days=1, microseconds=-1)))
    slots = F.sequence(
        F.date_trunc("hour", first), F.date_trunc("hour", last), F.make_dt_interval(hours=F.lit(1))
    )
    return (
        stays_df.filter(first <= last)
        .select(C.USER_KEY, C.STAY_H3, F.explode(slots).alias(C.HOUR_START))
        .transform(with_periods, C.HOUR_START, timezone, day_parts, periods)
        .transform(filter_period_starts, start, end)
        .transform(with_resolutions, {C.STAY_H3: C.H3_CELL}, resolutions)
        .groupBy(C.RESOLUTION, C.H3_CELL, C.PERIOD_START, C.PERIOD)
        .agg(F.count_distinct(C.USER_KEY).cast("long").alias(C.USERS))
    )


@pytest.mark.parametrize("timezone", [PARIS, "Asia/Kolkata"])  # Kolkata: UTC+05:30
def test_fast_path_equals_hour_slot_definition_on_random_stays(spark, timezone):
    # Random stays around the end of March 2024 (Paris DST on the 31st, month edge on the
    # 1st): overlapping stays of one user in one cell, neighbours sharing parents, a stay
    # crossing the month's start, one past its end, and a cell left and re-entered with
    # an empty hour between (which must stay empty).
    import random

    rng = random.Random(7)
    cells = [A, A2, h3.str_to_int(h3.latlng_to_cell(48.86, 2.35, 8))]
    base = datetime(2024, 3, 30, 18, 0, tzinfo=UTC)
    rows = [
        ("edge", A, datetime(2024, 2, 29, 20, 0, tzinfo=UTC), ts("2024-03-01 02:10")),
        ("gap", A, ts("2024-03-30 10:00"), ts("2024-03-30 10:30")),
        ("gap", A2, ts("2024-03-30 11:00"), ts("2024-03-30 11:50")),
        ("gap", A, ts("2024-03-30 12:10"), ts("2024-03-30 13:00")),
    ]
    for i in range(60):
        begin = base + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        length = timedelta(minutes=rng.choice([20, 50, 90, 400, 1500, 3000]))
        rows.append((f"u{i % 6}", rng.choice(cells), begin, begin + length))
    stays_df = spark.createDataFrame(rows, STAYS)
    start, end = month_bounds_utc("2024-03", timezone, 0)
    periods = ["hour", "day", "night", "daytime", "evening"]
    args = (stays_df, timezone, PARTS, periods, [6, 7, 8], start, end)
    fast = counted(count_present_population(*args))
    assert counted(_by_hour_slots(*args)) == fast
    assert {r[2] for r in fast} == set(periods)


def test_slot_labels_follow_local_day_parts_across_dst():
    # Night 22:00-06:00 of Saturday 30 March 2024: 21:00 UTC (CET) to 04:00 UTC (CEST),
    # seven hour slots; the day of the 31st (23 hours) from 22:00 UTC on the 30th.
    from datetime import date

    from jobs.presence import slot_labels

    base = datetime(2024, 3, 30, 12, 0)  # naive UTC
    night = slot_labels(base, 48, "night", PARIS, PARTS)
    held = [base + timedelta(hours=i) for i, d in enumerate(night) if d == date(2024, 3, 30)]
    assert held[0] == datetime(2024, 3, 30, 21, 0) and len(held) == 7
    assert night[8] is None  # 20:00 UTC = 21:00 CET, an evening hour
    day = slot_labels(base, 48, "day", PARIS, PARTS)
    assert day.count(date(2024, 3, 31)) == 23
    assert day[0] == date(2024, 3, 30) and None not in day


@pytest.mark.parametrize("by_user", [False, True])
def test_sweep_counts_distinct_users_whatever_the_shuffle(spark, by_user):
    # Overlapping and adjacent ranges of one user in one cell count once per day;
    # by_user (ranges clustered by user, no shuffle by cell) changes the plan only.
    from datetime import date

    from jobs.presence import FIRST, LAST, _days, count_by_sweep

    rows = [
        ("u1", 1, date(2020, 4, 1), date(2020, 4, 3)),
        ("u1", 1, date(2020, 4, 2), date(2020, 4, 2)),  # inside the first
        ("u1", 1, date(2020, 4, 4), date(2020, 4, 4)),  # adjacent: joins it
        ("u2", 1, date(2020, 4, 3), date(2020, 4, 5)),
        ("u2", 2, date(2020, 4, 1), date(2020, 4, 1)),
        ("u3", 2, date(2020, 4, 1), date(2020, 4, 2)),
    ]
    ranges_df = spark.createDataFrame(
        rows, f"user_key string, cell long, {FIRST} date, {LAST} date"
    )
    if by_user:
        ranges_df = ranges_df.repartition(C.USER_KEY)
    got = sorted(
        (r["cell"], r["_at"].isoformat(), r[C.USERS])
        for r in count_by_sweep(ranges_df, ["cell"], _days, by_user=by_user).collect()
    )
    assert got == [
        (1, "2020-04-01", 1),
        (1, "2020-04-02", 1),
        (1, "2020-04-03", 2),
        (1, "2020-04-04", 2),
        (1, "2020-04-05", 1),
        (2, "2020-04-01", 2),
        (2, "2020-04-02", 1),
    ]
