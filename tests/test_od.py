"""OD matrices, the daytime anchor and the home -> work matrix; mobility_counts end to end."""

from __future__ import annotations

from datetime import UTC, date, datetime

import h3
from pyspark.sql import functions as F

from jobs import gate
from jobs.mobility import mobility_counts
from jobs.od import (
    count_covered_days,
    count_home_work,
    count_od,
    filter_daytime,
    with_daytime_anchor,
)
from jobs.residence import with_local_time
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.config import DayPartParams, ResidenceParams, RunConfig

PARIS = "Europe/Paris"
A = h3.str_to_int(h3.latlng_to_cell(48.8584, 2.2945, 8))
A2 = h3.str_to_int(sorted(h3.cell_to_children(h3.cell_to_parent(h3.int_to_str(A), 7), 8))[-1])
A_7 = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(A), 7))
B = h3.str_to_int(h3.latlng_to_cell(43.2965, 5.3698, 8))
B_7 = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(B), 7))
TRIPS = (
    "user_key string, origin_h3 long, destination_h3 long, departure timestamp, arrival timestamp"
)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def od_rows(counts_df):
    start = F.date_format(F.col(C.PERIOD_START), "yyyy-MM-dd HH:mm")
    cols = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.PERIOD, start, C.TRIPS, C.USERS]
    return sorted(tuple(r) for r in counts_df.select(*cols).collect())


def test_od_counts_trips_and_distinct_users_by_departure_period(spark):
    # Tuesday 16 January 2024, CET = UTC+1
    trips_df = spark.createDataFrame(
        [
            ("u1", A, B, ts("2024-01-16 08:30"), ts("2024-01-16 12:00")),  # 09:30 local
            ("u1", A, B, ts("2024-01-16 14:00"), ts("2024-01-16 17:00")),  # same user again
            ("u2", A, B, ts("2024-01-16 10:00"), ts("2024-01-16 13:00")),
            ("u3", A2, B, ts("2024-01-16 18:00"), ts("2024-01-16 21:00")),  # 19:00: evening
            ("u4", A, B, ts("2024-01-16 06:30"), ts("2024-01-16 09:00")),  # 07:30: no part
        ],
        TRIPS,
    )
    counts_df = count_od(trips_df, PARIS, DayPartParams(), ["day", "daytime", "evening"], [7, 8])
    assert dict(counts_df.dtypes) == {
        C.RESOLUTION: "int",
        C.ORIGIN_CELL: "bigint",
        C.DESTINATION_CELL: "bigint",
        C.PERIOD_START: "timestamp",
        C.PERIOD: "string",
        C.TRIPS: "bigint",
        C.USERS: "bigint",
    }
    assert od_rows(counts_df) == [
        (7, A_7, B_7, "day", "2024-01-15 23:00", 5, 4),  # A and A2 share the res-7 parent
        (7, A_7, B_7, "daytime", "2024-01-16 08:00", 3, 2),
        (7, A_7, B_7, "evening", "2024-01-16 16:00", 1, 1),
        (8, A, B, "day", "2024-01-15 23:00", 4, 3),
        (8, A, B, "daytime", "2024-01-16 08:00", 3, 2),
        (8, A2, B, "day", "2024-01-15 23:00", 1, 1),
        (8, A2, B, "evening", "2024-01-16 16:00", 1, 1),
    ]


def test_daytime_keeps_weekday_working_hours_only(spark):
    events_df = spark.createDataFrame(
        [
            ("u1", ts("2024-01-16 08:00"), "c1"),  # Tue 09:00 local: in
            ("u1", ts("2024-01-16 15:59"), "c1"),  # Tue 16:59 local: in
            ("u1", ts("2024-01-16 16:00"), "c1"),  # Tue 17:00 local: out (end excluded)
            ("u1", ts("2024-01-16 07:59"), "c1"),  # Tue 08:59 local: out
            ("u1", ts("2024-01-20 10:00"), "c1"),  # Saturday: out
            ("u1", ts("2024-02-01 10:00"), "c1"),  # edge: next month, out
        ],
        schemas.ACCEPTED_EVENTS,
    )
    got = (
        events_df.transform(with_local_time, PARIS)
        .transform(filter_daytime, ResidenceParams(), date(2024, 1, 1), date(2024, 1, 31))
        .select(F.date_format(C.TIMESTAMP, "yyyy-MM-dd HH:mm"), C.DAY)
        .collect()
    )
    assert sorted(tuple(r) for r in got) == [
        ("2024-01-16 08:00", date(2024, 1, 16)),
        ("2024-01-16 15:59", date(2024, 1, 16)),
    ]


def test_anchor_most_days_then_most_events_then_lowest_id(spark):
    day_counts_df = spark.createDataFrame(
        [
            ("u1", A, 5, 10.0),
            ("u1", B, 5, 12.0),  # same days, more events: B
            ("u2", A2, 4, 3.0),
            ("u2", A, 4, 3.0),  # full tie: the lowest id
            ("u3", A, 6, 1.0),
            ("u3", B, 3, 50.0),  # days first, events second: A
            ("u4", A, 3, 9.0),  # edge: fewer than min_days, no anchor
        ],
        "user_key string, h3_id long, days long, day_events double",
    )
    got = with_daytime_anchor(day_counts_df, min_days=4).collect()
    assert sorted(tuple(r) for r in got) == [("u1", B, 5), ("u2", min(A, A2), 4), ("u3", A, 6)]


def test_covered_days_gather_pieces_before_spreading_over_hexagons(spark):
    # cell c1 covers A and A2 (half each), c2 covers A2 alone; c3 is a re-used id whose
    # second piece (from 20 Jan) covers B; events on A2 come from c1 and c2
    coverage_df = spark.createDataFrame(
        [
            ("c1", None, None, A, 0.5),
            ("c1", None, None, A2, 0.5),
            ("c2", None, None, A2, 1.0),
            ("c3", None, date(2024, 1, 19), A, 1.0),
            ("c3", date(2024, 1, 20), None, B, 1.0),
        ],
        schemas.COVERAGE,
    )
    day = "user_key string, cell_id string, day date"
    day_events_df = spark.createDataFrame(
        [("u1", "c1", date(2024, 1, d)) for d in (15, 15, 16)]
        + [("u1", "c2", date(2024, 1, d)) for d in (16, 17)]
        + [("u1", "c3", date(2024, 1, d)) for d in (18, 22)]
        + [("u1", "nowhere", date(2024, 1, 16))],  # edge: unknown cell, dropped
        day,
    )
    got = count_covered_days(day_events_df, coverage_df, date(2024, 1, 1)).collect()
    assert sorted((r[C.H3_ID], r[C.DAYS], r[C.DAY_EVENTS]) for r in got) == sorted(
        [(A, 3, 0.5 * 3 + 1.0), (A2, 3, 0.5 * 3 + 2.0), (B, 1, 1.0)]
    )


def test_home_work_matrix_counts_users_with_both(spark):
    homes_df = spark.createDataFrame([("u1", A, 10), ("u2", A2, 12), ("u3", B, 8)], schemas.HOMES)
    anchors_df = spark.createDataFrame(
        [("u1", B, 9), ("u2", B, 7), ("u4", A, 5)],  # u3 no anchor, u4 no home
        schemas.ANCHORS,
    )
    counts_df = count_home_work(homes_df, anchors_df, [7, 8], datetime(2024, 1, 1, tzinfo=UTC))
    assert od_rows(counts_df) == [
        (7, A_7, B_7, "month", "2024-01-01 00:00", 2, 2),
        (8, A, B, "month", "2024-01-01 00:00", 1, 1),
        (8, A2, B, "month", "2024-01-01 00:00", 1, 1),
    ]


def test_mobility_counts_pass_the_gate(spark):
    coverage_df = spark.createDataFrame(
        [("ca", None, None, A, 1.0), ("cb", None, None, B, 1.0)], schemas.COVERAGE
    )
    # two users commute A -> B on one Tuesday; the last row is in the next month (dropped)
    events = []
    for user in ("u1", "u2"):
        for t, cell in [("06:00", "ca"), ("06:30", "ca"), ("09:00", "cb"), ("10:00", "cb")]:
            events.append((user, ts(f"2024-01-16 {t}"), cell))
    events.append(("u1", ts("2024-01-31 23:30"), "ca"))
    events_df = spark.createDataFrame(events, schemas.ACCEPTED_EVENTS)
    homes_df = spark.createDataFrame([("u1", A, 5), ("u2", A, 5)], schemas.HOMES)
    cfg = RunConfig(month="2024-01", resolutions=[8])
    cfg.residence.min_days = 1
    counts = mobility_counts(events_df, coverage_df, homes_df, cfg)
    assert set(counts) == {"present_population", "od_trips", "od_home_work"}
    specs = {"present_population": gate.PRESENT_POPULATION, "od_trips": gate.OD_TRIPS}
    specs["od_home_work"] = gate.OD_TRIPS
    for name, counts_df in counts.items():
        published = gate.publish(counts_df, specs[name], k=2).collect()
        assert published, name
    od = od_rows(counts["od_trips"])
    assert (8, A, B, "day", "2024-01-15 23:00", 2, 2) in od
    assert od_rows(counts["od_home_work"]) == [(8, A, B, "month", "2023-12-31 23:00", 2, 2)]
