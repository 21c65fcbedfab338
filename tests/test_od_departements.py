"""Daily trips between départements (jobs.od_departements): counts, the differencing rule
against od_trips, and an attack on the result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import h3
import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs import od_departements as odd
from jobs.od import count_od
from mobiterra import columns as C
from mobiterra.config import DayPartParams

PARIS = "Europe/Paris"
PERIODS = ["day", "daytime", "evening"]
RESOLUTIONS = [7, 8]
A = h3.str_to_int(h3.latlng_to_cell(48.8584, 2.2945, 8))  # Paris
A_7 = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(A), 7))
# a sibling of A under the same res-7 cell, declared in another département below: the
# res-7 pair (A_7, B_7) then straddles two rows
A2 = h3.str_to_int(sorted(h3.cell_to_children(h3.int_to_str(A_7), 8))[-1])
B = h3.str_to_int(h3.latlng_to_cell(43.2965, 5.3698, 8))  # Marseille
B_7 = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(B), 7))
DEPS = "h3_id long, departement_code string"
TRIPS = "user_key string, origin_h3 long, destination_h3 long, departure timestamp"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def day(text: str) -> datetime:  # local midnight of a January day (CET = UTC+1), in UTC
    return datetime.fromisoformat(text).replace(tzinfo=UTC) - timedelta(hours=1)


@pytest.fixture()
def deps_df(spark):
    return spark.createDataFrame([(A, "75"), (A2, "92"), (B, "13")], DEPS)


def keyed(spark, deps_df, rows):
    trips_df = spark.createDataFrame(rows, TRIPS)
    return odd.keyed_trips(trips_df, deps_df, PARIS, DayPartParams())


def rows_of(df, *cols):
    def aware(v):  # Spark returns naive UTC datetimes (session time zone UTC)
        return v.replace(tzinfo=UTC) if isinstance(v, datetime) else v

    return sorted(tuple(aware(v) for v in r) for r in df.select(*cols).collect())


def test_trips_and_users_per_departement_pair_and_local_day(spark, deps_df):
    keyed_df = keyed(
        spark,
        deps_df,
        [
            ("u1", A, B, ts("2024-01-16 08:30")),
            ("u1", B, A, ts("2024-01-16 17:00")),
            ("u1", A, B, ts("2024-01-16 22:30")),  # 23:30 local: same day
            ("u2", A2, B, ts("2024-01-16 23:30")),  # 00:30 local: the 17th, from the 92
            ("u3", A, 12345, ts("2024-01-16 10:00")),  # destination in no commune: left out
        ],
    )
    got = rows_of(
        odd.count_departement_od(keyed_df),
        C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START, C.TRIPS, C.USERS,
    )  # fmt: skip
    assert got == [
        ("13", "75", day("2024-01-16"), 1, 1),
        ("75", "13", day("2024-01-16"), 2, 1),
        ("92", "13", day("2024-01-17"), 1, 1),
    ]


def published_pairs(spark, rows):
    cols = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.PERIOD_START, C.PERIOD]
    return spark.createDataFrame(
        rows, "resolution int, origin_cell long, destination_cell long, "
        "period_start timestamp, period string",
    ).select(*cols)  # fmt: skip


def _two_days(spark, deps_df):
    """Trips of two days and the od_trips pairs published over them."""
    keyed_df = keyed(
        spark,
        deps_df,
        [
            # the 16th: three users A -> B (75 -> 13) in a published res-8 pair
            ("u1", A, B, ts("2024-01-16 08:30")),
            ("u2", A, B, ts("2024-01-16 08:40")),
            ("u3", A, B, ts("2024-01-16 09:00")),
            # one A2 -> B (92 -> 13): its res-8 pair is not published and the res-7 pair,
            # published, also holds the 75 -> 13 trips: it is not inside the 92 row
            ("u4", A2, B, ts("2024-01-16 09:10")),
            # the 17th: u5 in the evening pair (published), u6 at 10:00 local (daytime,
            # its pairs suppressed); the day pair is suppressed
            ("u5", A, B, ts("2024-01-17 18:00")),
            ("u6", A, B, ts("2024-01-17 09:00")),
        ],
    )
    pub = published_pairs(
        spark,
        [
            (8, A, B, day("2024-01-16"), "day"),
            (7, A_7, B_7, day("2024-01-16"), "day"),
            (8, A, B, day("2024-01-17") + timedelta(hours=17), "evening"),
        ],
    )
    return keyed_df, pub


def test_uncovered_users_are_the_trips_in_no_published_pair_inside_the_row(spark, deps_df):
    keyed_df, pub = _two_days(spark, deps_df)
    rest_df = odd.uncovered_users(keyed_df, pub, PARIS, DayPartParams(), PERIODS, RESOLUTIONS)
    got = rows_of(rest_df, C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START, odd.UNCOVERED_USERS)
    assert got == [("75", "13", day("2024-01-17"), 1), ("92", "13", day("2024-01-16"), 1)]


def test_families_in_one_pass_equal_one_call_per_family(spark, deps_df):
    """The stage's single pass (all periods, then the day pairs alone) gives each family
    what its own call gives; rows fully covered read 0 instead of being absent."""
    keyed_df, pub = _two_days(spark, deps_df)
    families = {"all": PERIODS, "day": ["day"]}
    both = odd.uncovered_by_family(keyed_df, pub, PARIS, DayPartParams(), families, RESOLUTIONS)
    for name, periods in families.items():
        alone = odd.uncovered_users(keyed_df, pub, PARIS, DayPartParams(), periods, RESOLUTIONS)
        want = rows_of(alone, C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START,
                       odd.UNCOVERED_USERS)  # fmt: skip
        got = rows_of(both.filter(F.col(name) > 0), C.ORIGIN_CODE, C.DESTINATION_CODE,
                      C.PERIOD_START, name)  # fmt: skip
        assert got == want, name
    # the day pairs alone leave the evening trip of the 17th uncovered too
    day_only = rows_of(both, C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START, "day")
    assert (("75", "13", day("2024-01-17"), 2)) in day_only
    assert len(day_only) == 3  # every row with a trip, 0 where all are covered


def test_decide_suppresses_small_rows_and_rows_with_a_small_remainder():
    counts = pd.DataFrame(
        {
            C.TRIPS: [40, 40, 40, 40, 19],
            C.USERS: [30, 19, 30, 30, 20],
            odd.UNCOVERED_USERS: [None, None, 1, 20, 0],
        }
    )
    assert odd.decide(counts, 20).tolist() == [None, "primary", "secondary", None, "primary"]
    with pytest.raises(ValueError, match="k must be at least 2"):
        odd.decide(counts, 1)


def _attacker_leaks(trips: pd.DataFrame, od: pd.DataFrame, table: pd.DataFrame, k: int) -> int:
    """Published rows minus the published od_trips pairs lying inside them (geography: a
    cell's département); a leak is a remainder whose trips ``trips`` (the truth) shows were
    made by 1 .. k-1 users."""
    dep = trips.attrs["departement"]
    leaks = 0
    for row in table.itertuples(index=False):
        here = (od[C.ORIGIN_CELL].map(dep) == row.origin_code) & (
            od[C.DESTINATION_CELL].map(dep) == row.destination_code
        )
        pairs = zip(od.loc[here, C.ORIGIN_CELL], od.loc[here, C.DESTINATION_CELL], strict=True)
        inside = set(pairs)
        left = row.trips - int(od.loc[here, C.TRIPS].sum())
        mine = trips[
            (trips["origin_h3"].map(dep) == row.origin_code)
            & (trips["destination_h3"].map(dep) == row.destination_code)
        ]
        pairs = zip(mine["origin_h3"], mine["destination_h3"], strict=True)
        rest = mine[[p not in inside for p in pairs]]
        assert left == len(rest)  # the attacker's subtraction recovers those trips exactly
        leaks += int(1 <= rest["user_key"].nunique() < k)
    return leaks


def test_attack_a_row_minus_its_published_pairs_rests_on_0_or_k_users(spark, deps_df):
    """Without rule 2 the 75 -> 13 row (9 users) minus its one published pair (8 users)
    exposes a lone traveller's trip; with it the row is suppressed, and the 13 -> 75 row,
    whose remainder is 6 travellers in two suppressed pairs, is published."""
    k = 5
    a3 = h3.str_to_int(h3.latlng_to_cell(48.8867, 2.3431, 8))  # Montmartre: Paris too
    b3 = h3.str_to_int(h3.latlng_to_cell(43.2800, 5.3900, 8))  # Marseille too
    deps_df = deps_df.union(spark.createDataFrame([(a3, "75"), (b3, "13")], DEPS))
    at = ts("2024-01-16 08:00")
    rows = [(f"p{i}", A, B, at) for i in range(8)]  # 75 -> 13, pair (A, B): published
    rows += [("lone", a3, B, at)]  # 75 -> 13, alone in pair (a3, B)
    rows += [(f"q{i}", A, A2, at) for i in range(6)]  # 75 -> 92: two published pairs
    rows += [(f"r{i}", a3, A2, at) for i in range(5)]
    rows += [(f"s{i}", B, A, at) for i in range(6)]  # 13 -> 75: one published pair
    rows += [(f"t{i}", B, a3, at) for i in range(3)]  # ... and two suppressed ones
    rows += [(f"u{i}", b3, A, at) for i in range(3)]
    trips = pd.DataFrame(rows, columns=["user_key", "origin_h3", "destination_h3", "departure"])
    trips.attrs["departement"] = {A: "75", A2: "92", a3: "75", B: "13", b3: "13"}
    trips_df = spark.createDataFrame(rows, TRIPS)
    od = count_od(trips_df, PARIS, DayPartParams(), ["day"], [8]).toPandas()
    od = od[od[C.USERS] >= k]  # what od_trips' gate publishes here (rule 1 suffices)
    starts = [t.to_pydatetime().replace(tzinfo=UTC) for t in od[C.PERIOD_START]]
    keyed_df = odd.keyed_trips(trips_df, deps_df, PARIS, DayPartParams())
    pub = published_pairs(
        spark,
        [(int(r), int(o), int(d), t, p) for r, o, d, t, p in zip(
            od[C.RESOLUTION], od[C.ORIGIN_CELL], od[C.DESTINATION_CELL], starts, od[C.PERIOD],
            strict=True)],
    )  # fmt: skip
    counts = (
        odd.count_departement_od(keyed_df)
        .join(
            odd.uncovered_users(keyed_df, pub, PARIS, DayPartParams(), ["day"], [8]),
            on=[C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START],
            how="left",
        )
        .toPandas()
    )
    status = odd.decide(counts, k)
    keys = zip(counts[C.ORIGIN_CODE], counts[C.DESTINATION_CODE], strict=True)
    by_row = dict(zip(keys, status, strict=True))
    assert by_row == {("75", "13"): "secondary", ("75", "92"): None, ("13", "75"): None}
    assert _attacker_leaks(trips, od, counts[status.isna()], k) == 0
    # the attack finds the leak when rule 2 is off (every row of >= k users published)
    assert _attacker_leaks(trips, od, counts[counts[C.USERS] >= k], k) == 1


def test_decide_checks_every_remainder():
    counts = pd.DataFrame(
        {C.TRIPS: [40, 40], C.USERS: [30, 30], odd.UNCOVERED_USERS: [0, 25],
         f"{odd.UNCOVERED_USERS}_day": [3, 25]}
    )  # fmt: skip
    assert odd.decide(counts, 20).tolist() == ["secondary", None]
