"""Stays and trips on hand-made event sequences."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta

import h3
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs import stays
from jobs.stays import stays_from_located, trips_from_stays, with_main_cell
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra import spark as engine
from mobiterra.config import StayParams

# A: a res-8 hexagon at the Eiffel Tower; A2: its sibling (same res-7 parent, i.e. the
# same place for same_place_resolution=7); B: Marseille, a different place.
A = h3.str_to_int(h3.latlng_to_cell(48.8584, 2.2945, 8))
A2 = h3.str_to_int(sorted(h3.cell_to_children(h3.cell_to_parent(h3.int_to_str(A), 7), 8))[-1])
B = h3.str_to_int(h3.latlng_to_cell(43.2965, 5.3698, 8))
PARAMS = StayParams(min_time_stay_s=900, max_time_missing_stay_s=3 * 3600, same_place_resolution=7)
LOCATED = "user_key string, timestamp timestamp, h3_id long"


@pytest.fixture(autouse=True, params=["java", "windows"])
def segmentation(request, spark, monkeypatch):
    """Every test of this module twice: with jobs/java's Stays (the default when `make
    setup` built the jar) and with the window functions (Spark Connect, no JDK)."""
    if request.param == "java":
        if shutil.which("javac") is None:
            pytest.skip("no JDK here: the stays use window functions")
        assert engine.has_java_jobs(spark), "make setup builds the jobs/java jar"
    else:
        monkeypatch.setattr(engine, "has_java_jobs", lambda session: False)
    return request.param


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def hm(col: str):
    return F.date_format(F.col(col), "yyyy-MM-dd HH:mm").alias(col)


def stays_of(spark, rows):
    located_df = spark.createDataFrame([(u, ts(t), c) for u, t, c in rows], LOCATED)
    return stays_from_located(located_df, PARAMS)


def collected(stays_df):
    return sorted(
        tuple(r)
        for r in stays_df.select(C.USER_KEY, C.STAY_H3, hm(C.STAY_START), hm(C.STAY_END)).collect()
    )


def test_ping_pong_between_neighbouring_cells_is_one_stay(spark):
    rows = [
        ("u1", "2024-01-16 08:00", A),
        ("u1", "2024-01-16 08:10", A2),
        ("u1", "2024-01-16 08:20", A),
        ("u1", "2024-01-16 08:40", A2),
        ("u1", "2024-01-16 09:00", A),
    ]
    stays_df = stays_of(spark, rows)
    # the stay sits in its most frequent hexagon (A: 3 events, A2: 2)
    assert collected(stays_df) == [("u1", A, "2024-01-16 08:00", "2024-01-16 09:00")]
    got = {(f.name, f.dataType) for f in stays_df.schema.fields}
    assert got == {(f.name, f.dataType) for f in schemas.STAYS.fields}


def test_gap_longer_than_max_splits_and_short_run_is_a_pass(spark):
    rows = [
        ("u1", "2024-01-16 08:00", A),
        ("u1", "2024-01-16 08:30", A),
        # silence of 3 h 30 > max_time_missing_stay (3 h): a new stay at the same place
        ("u1", "2024-01-16 12:00", A),
        ("u1", "2024-01-16 12:30", A),
        # 10 minutes in Marseille: shorter than min_time_stay (15 min), a pass
        ("u1", "2024-01-16 13:00", B),
        ("u1", "2024-01-16 13:10", B),
        # edge: a user with a single event has no stay at all
        ("u2", "2024-01-16 08:00", B),
    ]
    assert collected(stays_of(spark, rows)) == [
        ("u1", A, "2024-01-16 08:00", "2024-01-16 08:30"),
        ("u1", A, "2024-01-16 12:00", "2024-01-16 12:30"),
    ]


def test_stray_event_elsewhere_does_not_split_a_stay(spark):
    rows = [
        ("u1", "2024-01-16 08:00", A),
        ("u1", "2024-01-16 08:30", A),
        ("u1", "2024-01-16 08:40", B),  # one event on a distant antenna: a pass
        ("u1", "2024-01-16 09:00", A),
        ("u1", "2024-01-16 09:30", A2),
    ]
    assert collected(stays_of(spark, rows)) == [("u1", A, "2024-01-16 08:00", "2024-01-16 09:30")]


def test_a_lone_event_at_home_keeps_its_stay_across_a_handover(spark):
    rows = [
        ("u1", "2024-01-16 19:00", B),  # evening at work, then home (A)
        ("u1", "2024-01-16 19:40", B),
        ("u1", "2024-01-16 21:00", A),  # one event at home before the night ...
        ("u1", "2024-01-16 22:30", B),  # ... a handover elsewhere (a pass) ...
        ("u1", "2024-01-16 23:50", A),  # ... and home again (gaps within the 3 h limit)
        ("u1", "2024-01-17 01:00", A2),
        # edge: alternating lone events; only the last sandwiched one (A2) goes
        ("u2", "2024-01-16 08:00", A),
        ("u2", "2024-01-16 08:05", B),
        ("u2", "2024-01-16 08:10", A2),
        ("u2", "2024-01-16 09:00", B),
    ]
    assert collected(stays_of(spark, rows)) == [
        # the home stay starts at 21:00, not at 23:50: it covers the evening
        ("u1", A, "2024-01-16 21:00", "2024-01-17 01:00"),
        ("u1", B, "2024-01-16 19:00", "2024-01-16 19:40"),
        # u2: B at 08:05 and 09:00 join; the lone A at 08:00 is no stay
        ("u2", B, "2024-01-16 08:05", "2024-01-16 09:00"),
    ]


def test_trip_joins_consecutive_stays_at_different_places(spark):
    rows = [
        ("u1", "2024-01-16 08:00", A),
        ("u1", "2024-01-16 09:00", A),
        ("u1", "2024-01-16 11:00", B),
        ("u1", "2024-01-16 12:00", B),
        # back at B after a 4 h silence: a second stay at the same place, no trip
        ("u1", "2024-01-16 16:00", B),
        ("u1", "2024-01-16 16:30", B),
        ("u1", "2024-01-16 18:00", A2),
        ("u1", "2024-01-16 19:00", A2),
    ]
    trips_df = trips_from_stays(stays_of(spark, rows), PARAMS.same_place_resolution)
    got = sorted(
        tuple(r)
        for r in trips_df.select(
            C.USER_KEY, C.ORIGIN_H3, C.DESTINATION_H3, hm(C.DEPARTURE), hm(C.ARRIVAL)
        ).collect()
    )
    assert got == [
        ("u1", A, B, "2024-01-16 09:00", "2024-01-16 11:00"),
        ("u1", B, A2, "2024-01-16 16:30", "2024-01-16 18:00"),
    ]
    assert {(f.name, f.dataType) for f in trips_df.schema.fields} == {
        (f.name, f.dataType) for f in schemas.TRIPS.fields
    }


def test_events_take_the_main_hexagon_of_their_antenna_cell(spark):
    coverage_df = spark.createDataFrame(
        [
            ("c1", None, None, A, 0.3),
            ("c1", None, None, B, 0.7),
            ("c2", None, None, A2, 0.5),  # tie: the lowest id wins
            ("c2", None, None, A, 0.5),
        ],
        schemas.COVERAGE,
    )
    events_df = spark.createDataFrame(
        [
            ("u1", ts("2024-01-16 08:00"), "c1"),
            ("u1", ts("2024-01-16 09:00"), "c2"),
            ("u1", ts("2024-01-16 10:00"), "c9"),  # edge: not in coverage, dropped
        ],
        schemas.ACCEPTED_EVENTS,
    )
    got = sorted(
        tuple(r)
        for r in with_main_cell(events_df, coverage_df, "Europe/Paris")
        .select(hm(C.TIMESTAMP), C.H3_ID)
        .collect()
    )
    assert got == [("2024-01-16 08:00", B), ("2024-01-16 09:00", min(A, A2))]


# C: a hexagon of the res-7 cell next to A's: another place, a few hundred metres away
C_NEAR = h3.str_to_int(
    h3.cell_to_center_child(
        sorted(set(h3.grid_disk(h3.cell_to_parent(h3.int_to_str(A), 7), 1)) - {
            h3.cell_to_parent(h3.int_to_str(A), 7)})[0], 8)
)  # fmt: skip
LOCATED_SITES = "user_key string, timestamp timestamp, h3_id long, _site long"


def stays_with_sites(spark, rows, params):
    located_df = spark.createDataFrame([(u, ts(t), c, s) for u, t, c, s in rows], LOCATED_SITES)
    return stays_from_located(located_df, params)


def test_a_handover_to_the_next_sector_of_the_mast_is_not_a_stay(spark):
    """A phone at home on sector 1 of mast 1 (hexagon A), handed twice to sector 2 (its
    main hexagon C is another place) three hours apart: no stay, no trip. Three events
    there are a visit; two events on another mast are a stay too."""
    params = PARAMS.model_copy(update={"max_time_missing_stay_s": 12 * 3600})
    home = [("u1", "2024-01-16 00:00", A, 1), ("u1", "2024-01-16 03:00", A, 1)]
    home += [("u1", "2024-01-16 09:00", A, 1), ("u1", "2024-01-16 12:00", A, 1)]
    handed = [("u1", "2024-01-16 05:00", C_NEAR, 1), ("u1", "2024-01-16 08:00", C_NEAR, 1)]
    assert collected(stays_with_sites(spark, home + handed, params)) == [
        ("u1", A, "2024-01-16 00:00", "2024-01-16 12:00")
    ]
    # the rule off: the two handovers make a stay of three hours and two trips
    off = stays_with_sites(spark, home + handed, params.model_copy(
        update={"handover_max_events": 0}))  # fmt: skip
    assert sorted(r[1] for r in collected(off)) == sorted([A, A, C_NEAR])
    assert trips_from_stays(off, 7).count() == 2
    visit = handed + [("u1", "2024-01-16 06:30", C_NEAR, 1)]
    got = sorted(r[1] for r in collected(stays_with_sites(spark, home + visit, params)))
    assert got == sorted([A, A, C_NEAR])
    other_mast = [(u, t, c, 2) for u, t, c, _ in handed]
    assert len(collected(stays_with_sites(spark, home + other_mast, params))) == 3


def test_cell_sites_give_the_sectors_of_one_mast_one_site():
    cells = pd.DataFrame(
        {
            C.CELL_ID: ["S1-1", " S1-2 ", "S2-0", "S3-0", "S4-0", "S4-0"],
            C.LAT: [48.85841, 48.85841, 48.9, None, 45.0, 45.1],
            C.LON: [2.29451, 2.29451, 2.3, 2.3, 3.0, 3.1],
            C.VALID_FROM: [None, None, None, None, "2020-01-01", "2019-01-01"],
        }
    )
    sites = stays.cell_sites(cells).set_index(C.CELL_ID)[stays.SITE]
    assert sites["S1-1"] == sites["S1-2"] != sites["S2-0"]
    assert "S3-0" not in sites.index  # no position: no site (and no coverage)
    assert sites["S4-0"] == stays.site_code(np.array([45.0]), np.array([3.0]))[0]  # latest


def test_events_carry_their_mast_when_the_sites_are_given(spark):
    coverage_df = spark.createDataFrame([("c1", None, None, A, 1.0)], schemas.COVERAGE)
    events_df = spark.createDataFrame(
        [("u1", ts("2024-01-16 08:00"), "c1")], schemas.ACCEPTED_EVENTS
    )
    sites_df = spark.createDataFrame(pd.DataFrame({C.CELL_ID: ["c1"], stays.SITE: [7]}))
    got = with_main_cell(events_df, coverage_df, "Europe/Paris", sites_df).collect()
    assert [(r[C.H3_ID], r[stays.SITE]) for r in got] == [(A, 7)]


# A mast at A2 with sectors s1 (main hexagon A2) and s2 (main hexagon N, A2's neighbour in
# another res-7 cell: a switch between them read as a trip); a rural mast R whose two
# sectors' hexagons are ~3 km apart.
N = next(
    h3.str_to_int(c)
    for c in sorted(h3.grid_ring(h3.int_to_str(A2), 1))
    if h3.cell_to_parent(c, 7) != h3.cell_to_parent(h3.int_to_str(A2), 7)
)
R1 = h3.str_to_int(h3.latlng_to_cell(45.0, 3.0, 8))
R2 = h3.str_to_int(h3.latlng_to_cell(45.0, 3.04, 8))


def mast_coverage() -> pd.DataFrame:
    rows = [
        ("s1", A2, 0.5), ("s1", N, 0.25), ("s1", C_NEAR, 0.25),
        ("s2", N, 0.625), ("s2", A2, 0.375),
        ("r1", R1, 0.9), ("r1", R2, 0.1),
        ("r2", R2, 1.0),
        ("lone", B, 1.0),
    ]  # fmt: skip
    return pd.DataFrame(
        [(c, None, None, h, w) for c, h, w in rows],
        columns=[C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT],
    )


MAST_SITES = pd.DataFrame(
    {C.CELL_ID: ["s1", "s2", "r1", "r2", "lone"], stays.SITE: [1, 1, 2, 2, 3]}
)


def mains(coverage, sites=None, distance_m=0.0) -> dict:
    got = stays.main_cells(coverage, sites, distance_m)
    assert (got[C.WEIGHT] == 1.0).all() and got[C.H3_ID].dtype == np.int64
    return dict(zip(got[C.CELL_ID], got[C.H3_ID], strict=True))


def test_main_cells_give_the_sectors_of_a_compact_mast_the_masts_hexagon():
    coverage = mast_coverage()
    own = {"s1": A2, "s2": N, "r1": R1, "r2": R2, "lone": B}
    assert mains(coverage) == own  # highest weight per cell
    assert mains(coverage, MAST_SITES, 0.0) == own  # the rule off
    # s1 + s2: A2 0.875, N 0.875 (a tie: the lowest id); the rural sectors are 3 km apart
    assert mains(coverage, MAST_SITES, 1000.0) == own | {"s1": min(A2, N), "s2": min(A2, N)}
    assert mains(coverage, MAST_SITES, 5000.0)["r1"] == mains(coverage, MAST_SITES, 5000.0)["r2"]
    # a mast's summed weight decides, not one sector's
    heavier = coverage.copy()
    heavier.loc[(heavier[C.CELL_ID] == "s2") & (heavier[C.H3_ID] == N), C.WEIGHT] = 0.75
    heavier.loc[(heavier[C.CELL_ID] == "s2") & (heavier[C.H3_ID] == A2), C.WEIGHT] = 0.25
    assert mains(heavier, MAST_SITES, 1000.0)["s1"] == N  # A2 0.75, N 1.0
    # cells without a known mast keep their own hexagon
    assert mains(coverage, MAST_SITES[MAST_SITES[C.CELL_ID] != "s2"], 1000.0) == own


def test_main_cells_join_a_masts_sectors_only_within_one_validity_interval():
    coverage = mast_coverage()
    coverage.loc[coverage[C.CELL_ID] == "s2", C.VALID_FROM] = date(2024, 1, 1)
    assert mains(coverage, MAST_SITES, 1000.0)["s1"] == A2
    coverage.loc[coverage[C.CELL_ID] == "s1", C.VALID_FROM] = date(2024, 1, 1)
    assert mains(coverage, MAST_SITES, 1000.0)["s1"] == min(A2, N)
    assert len(stays.main_cells(coverage.iloc[:0], MAST_SITES, 1000.0)) == 0


def test_a_phone_served_by_two_sectors_of_a_compact_mast_makes_no_trip(spark):
    """A phone at home near mast 1 served by s1 and s2 in turn, runs of 3 events each (more
    than a handover): with its own hexagon per sector that is 3 stays and 2 trips; with
    the mast's hexagon, one stay."""
    events = [
        ("u1", f"2024-01-16 {h:02d}:00", cell)
        for h, cell in zip(
            range(6, 18), ["s1"] * 3 + ["s2"] * 3 + ["s1"] * 3 + ["s2"] * 3, strict=True
        )
    ]
    events_df = spark.createDataFrame(
        [(u, ts(t), c) for u, t, c in events], schemas.ACCEPTED_EVENTS
    )  # fmt: skip
    sites_df = spark.createDataFrame(MAST_SITES)

    def stays_and_trips(distance_m):
        main_df = spark.createDataFrame(
            stays.main_cells(mast_coverage(), MAST_SITES, distance_m), schemas.COVERAGE
        )
        got = stays.stays_from_events(events_df, main_df, PARAMS, "Europe/Paris", sites_df)
        return got.count(), trips_from_stays(got, 7).count()

    assert stays_and_trips(0.0) == (4, 3)
    assert stays_and_trips(1000.0) == (1, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_java_stays_equal_the_window_stays_on_random_events(spark, segmentation, seed):
    """Random phones over three days among hexagons of three places (siblings, a pair of
    mast sectors, a stray antenna), with ties in time, gaps of every length, masts known
    or not: Stays.java and the window functions give the same stays, with the handover
    rule on and off."""
    if segmentation == "windows":
        pytest.skip("compares both: run once")
    rng = np.random.default_rng(seed)
    hexagons = [A, A2, B, C_NEAR, A2 + 0]  # A2 twice: more same-place ties
    sites = [1, 1, 2, 1, None]
    rows = []
    for u in range(40):
        t = datetime(2024, 1, 15, tzinfo=UTC) + timedelta(minutes=int(rng.integers(0, 600)))
        for _ in range(int(rng.integers(1, 60))):
            i = int(rng.integers(0, len(hexagons)))
            site = sites[i] if rng.random() > 0.1 else None
            rows.append((f"u{u}", t, hexagons[i], site))
            # same instant again, a few minutes, an hour, or past the missing-time limit
            t += timedelta(seconds=int(rng.choice([0, 60, 300, 900, 3600, 4 * 3600, 13 * 3600])))
    located_df = spark.createDataFrame(rows, LOCATED_SITES)
    for params in (PARAMS, PARAMS.model_copy(update={"handover_max_events": 0})):
        for df in (located_df, located_df.drop(stays.SITE)):
            java = stays.stays_by_java(df, params)
            windows = stays.stays_by_windows(df, params)
            assert java.count() == windows.count() > 0
            assert java.exceptAll(windows).count() == 0 == windows.exceptAll(java).count()
