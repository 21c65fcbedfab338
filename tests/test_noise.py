"""Optional noise wired into the run: contribution bounds per user and local day, the
sensitivity of each table, fresh noise per release, and a hand-made month published
with Laplace noise through the stages."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from pyspark.sql import functions as F
from test_publish_tables import USERS, publish_tiny_month

from jobs import gate, noise
from mobiterra import columns as C
from mobiterra.config import PrivacyParams

K = 20
LAPLACE = PrivacyParams(noise="laplace", epsilon=0.44, max_contributions=2)


def _utc(*args: int) -> datetime:
    return datetime(*args)  # the session time zone is UTC (mobiterra.spark)


def test_bound_stays_keeps_c_stays_per_user_and_local_day(spark):
    rows = [("u1", 1, _utc(2020, 4, 6, h), _utc(2020, 4, 6, h, 30)) for h in range(6, 12)]
    # 22:30 UTC on the 6th is 00:30 on the 7th in Paris (UTC+2): another local day
    rows += [("u1", 2, _utc(2020, 4, 6, 22, 30), _utc(2020, 4, 6, 23, 0))]
    rows += [("u2", 3, _utc(2020, 4, 6, 8), _utc(2020, 4, 6, 9))]
    stays_df = spark.createDataFrame(
        rows, "user_key string, stay_h3 long, stay_start timestamp, stay_end timestamp"
    )
    bounded = noise.bound_stays(stays_df, LAPLACE, "Europe/Paris").toPandas()
    per_day = bounded.groupby(
        [
            bounded[C.USER_KEY],
            bounded[C.STAY_START].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris").dt.date,
        ]
    ).size()
    assert per_day.to_dict() == {
        ("u1", pd.Timestamp("2020-04-06").date()): 2,
        ("u1", pd.Timestamp("2020-04-07").date()): 1,
        ("u2", pd.Timestamp("2020-04-06").date()): 1,
    }
    again = noise.bound_stays(stays_df, LAPLACE, "Europe/Paris").toPandas()
    pd.testing.assert_frame_equal(
        bounded.sort_values(C.STAY_START, ignore_index=True),
        again.sort_values(C.STAY_START, ignore_index=True),
    )


def test_bound_trips_keeps_c_trips_per_user_and_day_of_departure(spark):
    rows = [("u1", 1, 2, _utc(2020, 4, 6, h), _utc(2020, 4, 6, h, 20)) for h in range(6, 11)]
    trips_df = spark.createDataFrame(
        rows,
        "user_key string, origin_h3 long, destination_h3 long, departure timestamp, "
        "arrival timestamp",
    )
    assert noise.bound_trips(trips_df, LAPLACE, "Europe/Paris").count() == 2


def test_sensitivity_per_table():
    assert noise.sensitivity("residents", 5) == 1
    assert noise.sensitivity("residence_shift", 5) == 1
    assert noise.sensitivity("od_home_work", 5) == 1
    assert noise.sensitivity("present_population", 2) == 5  # a night: two days + one
    assert noise.sensitivity("od_trips", 2) == 4
    with pytest.raises(ValueError, match="no contribution bound for table 'diagnostics'"):
        noise.sensitivity("diagnostics", 2)
    assert noise.noise_summary("residents", PrivacyParams()) is None
    summary = noise.noise_summary("present_population", LAPLACE)
    assert summary["sensitivity"] == 5 and summary["scale"] == pytest.approx(5 / 0.44, 1e-3)


def test_each_release_draws_fresh_noise(spark):
    counts_df = spark.createDataFrame(
        [(8, 600000000000000000 + i, 1000, None) for i in range(40)],
        "resolution int, h3_cell long, residents long, residents_est double",
    )
    off = noise.with_configured_noise(counts_df, gate.RESIDENTS, PrivacyParams(), "2020-04")
    assert off is counts_df
    april = noise.with_configured_noise(counts_df, gate.RESIDENTS, LAPLACE, "2020-04")
    again = noise.with_configured_noise(counts_df, gate.RESIDENTS, LAPLACE, "2020-04")
    february = noise.with_configured_noise(counts_df, gate.RESIDENTS, LAPLACE, "2020-02")

    def values(df):
        return [r[C.RESIDENTS] for r in df.orderBy(C.H3_CELL).collect()]

    assert values(april) == values(again)  # deterministic: reruns publish the same
    # the same cell in two months: differences of releases are not the exact change
    changed = [a - f for a, f in zip(values(april), values(february), strict=True)]
    assert sum(1 for c in changed if c != 0) >= 20
    assert values(april) != [1000] * 40


@pytest.fixture(scope="module")
def noisy_month(spark, tmp_path_factory):
    """The hand-made month of tests/test_publish_tables.py, published with Laplace noise."""
    return publish_tiny_month(
        spark,
        tmp_path_factory.mktemp("noisy-month"),
        expansion={"enabled": False},
        privacy=LAPLACE.model_dump(),
    )


def test_noisy_month_is_noised_bounded_and_still_gated(spark, noisy_month):
    staging, work, tables = noisy_month
    for name, stats in tables.items():
        assert stats["noise"]["mechanism"] == "laplace", name
        assert stats["noise"]["sensitivity"] == noise.sensitivity(name, 2), name
        df = spark.read.parquet(str(staging / name))
        for count in (C.RESIDENTS, C.USERS, C.TRIPS):
            if count in df.columns:
                assert df.filter((F.col(count) >= 1) & (F.col(count) < K)).count() == 0
    # the gate saw noisy counts: the 25 residents are published with noise at some level
    exact = pd.read_parquet(work / "counts-residents")
    noisy = pd.read_parquet(work / "noisy-residents")
    assert (exact[C.RESIDENTS] == USERS).all()
    assert (noisy[C.RESIDENTS] != USERS).any()
    published = pd.read_parquet(staging / "residents")
    assert len(published) > 0
    assert (published[C.RESIDENTS] - USERS).abs().max() < 40  # b = 1 / 0.44
