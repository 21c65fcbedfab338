"""Every published table of a month, from hand-made events through the stages: declared
columns and types, H3 strings, k, and estimates only on published rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs import stages, stages_mobility
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.config import RunConfig
from mobiterra.geo import departements

PARIS = ZoneInfo("Europe/Paris")
K = 20
USERS = 25  # all live at antenna A (Aurillac, Cantal) and work at B, 2.4 km away
# (local time, cell): one weekday; nights and evenings at A, office hours at B
WEEKDAY = [(6, 30, "A"), (10, 0, "B"), (12, 0, "B"), (15, 0, "B"), (18, 0, "A"), (23, 0, "A")]


def _events(first: date, days: int) -> list[tuple[str, datetime, str]]:
    rows = []
    for u in range(USERS):
        for d in range(days):
            day = first + timedelta(days=d)
            for hour, minute, cell in WEEKDAY:
                if cell == "B" and day.weekday() >= 5:
                    cell = "A"  # weekends at home
                local = datetime(day.year, day.month, day.day, hour, minute + u % 10, tzinfo=PARIS)
                rows.append((f"user-{u}", local.astimezone(ZoneInfo("UTC")), cell))
    return rows


def publish_tiny_month(spark, root: Path, **overrides) -> tuple[Path, Path, dict]:
    """Stages of April 2020 against February on the hand-made events, as run_month
    sequences them (expansion when enabled); ``overrides`` are RunConfig sections.
    Returns (staging, work, tables)."""
    events = pd.DataFrame(
        _events(date(2020, 2, 3), 6) + _events(date(2020, 4, 6), 6),
        columns=[C.USER_ID, C.TIMESTAMP, C.CELL_ID],
    )
    events.to_parquet(root / "events.parquet", index=False, coerce_timestamps="us")
    pd.DataFrame({C.CELL_ID: ["A", "B"], C.LAT: [44.9265, 44.93], C.LON: [2.4397, 2.47]}).to_csv(
        root / "cells.csv", index=False
    )
    cfg = RunConfig.model_validate(
        {
            "events": root / "events.parquet",
            "cells": root / "cells.csv",
            "month": "2020-04",
            "baseline_month": "2020-02",
            "coverage": {"strategy": "point"},
            # two antennas cover a sliver of the Cantal: no network-coverage floor here
            "expansion": {"min_residents": K, "min_network_coverage": 0.0},
            "presence": {"periods": ["day", "night"]},  # hours: tests/test_presence.py
            "od": {"periods": ["day"]},
            **overrides,
        }
    )
    work, staging = root / "work", root / "staging"
    work.mkdir()
    ingested = stages.stage_ingest(spark, cfg, cfg.month, work, staging)
    coverage = stages.stage_coverage(cfg, root / "cache")
    homes, _ = stages.stage_residence(spark, cfg, ingested.events, coverage, cfg.month, work)
    b = stages.stage_ingest(spark, cfg, cfg.baseline_month, work, None)
    b_homes, _ = stages.stage_residence(spark, cfg, b.events, coverage, cfg.baseline_month, work)
    stays, _ = stages_mobility.stage_stays(spark, cfg, ingested.events, coverage, cfg.month, work)
    expansion_path = None
    if cfg.expansion.enabled:
        exp = stages_mobility.stage_expansion(
            spark, cfg, b_homes, coverage, cfg.baseline_month, staging
        )
        expansion_path = str(staging / exp["table"])
    tables = stages.stage_publish(spark, cfg, homes, b_homes, staging, work, expansion_path)
    tables |= stages_mobility.stage_publish_mobility(
        spark, cfg, ingested.events, coverage, homes, stays, staging, work, expansion_path
    )
    return staging, work, tables


@pytest.fixture(scope="module")
def month(spark, tmp_path_factory) -> tuple[Path, dict]:
    """The hand-made month, published with expansion."""
    staging, work, tables = publish_tiny_month(spark, tmp_path_factory.mktemp("tiny-month"))
    return staging, tables, work


def test_every_table_has_its_declared_columns_and_types(spark, month):
    staging, tables, _ = month
    assert set(tables) == set(schemas.PUBLISHED)
    for name, schema in schemas.PUBLISHED.items():
        df = spark.read.parquet(str(staging / name))
        got = [(f.name, f.dataType) for f in df.schema.fields]
        assert got == [(f.name, f.dataType) for f in schema.fields], name
        assert tables[name]["rows_published"] == df.count() > 0, name
        for cell in (C.H3_CELL, C.ORIGIN_CELL, C.DESTINATION_CELL):
            if cell in df.columns:
                assert df.filter(F.length(cell) != 15).count() == 0, (name, cell)
        counts = [c for c in (C.RESIDENTS, C.USERS, C.TRIPS) if c in df.columns]
        for count in counts:
            assert df.filter(F.col(count) < K).count() == 0, (name, count)


def test_estimates_expand_to_the_departement_population(spark, month):
    staging, _, _ = month
    cantal = int(departements().set_index(C.DEPARTEMENT_CODE).loc["15", "population"])
    factors = pd.read_parquet(staging / "expansion").set_index(C.DEPARTEMENT_CODE)
    assert factors.loc["15", C.FACTOR] == pytest.approx(cantal / USERS, abs=1e-3)
    residents = spark.read.parquet(str(staging / "residents")).toPandas()
    # all 25 residents published at every resolution, estimated to all of Cantal with a
    # whole number of people per subscriber (5,805.72 -> 5,806)
    whole = round(cantal / USERS)
    assert residents.groupby(C.RESOLUTION)[C.RESIDENTS].sum().eq(USERS).all()
    assert (residents[C.RESIDENTS_EST] == USERS * whole).all()
    assert abs(USERS * whole - cantal) <= USERS / 2
    present = spark.read.parquet(str(staging / "present_population")).toPandas()
    assert present[C.USERS_EST].notna().all()
    assert (present[C.USERS_EST] == present[C.USERS] * whole).all()
    assert set(present[C.PERIOD]) == {"day", "night"}


def test_home_work_and_trips_are_the_commute(spark, month):
    staging, _, _ = month
    home_work = spark.read.parquet(str(staging / "od_home_work")).toPandas()
    assert set(home_work[C.PERIOD]) == {"month"}
    finest = home_work[home_work[C.RESOLUTION] == 8]
    assert finest[[C.USERS, C.TRIPS]].values.tolist() == [[USERS, USERS]]
    assert (finest[C.ORIGIN_CELL] != finest[C.DESTINATION_CELL]).all()
    trips = spark.read.parquet(str(staging / "od_trips")).toPandas()
    daily = trips[(trips[C.RESOLUTION] == 8) & (trips[C.PERIOD] == "day")]
    # weekdays: home -> work and back, every user
    assert set(daily[C.USERS]) == {USERS} and set(daily[C.TRIPS]) == {USERS}


def test_trips_are_written_once_beside_the_stays(spark, month):
    """stage_stays writes the stays' trips; od_trips and od_departements read that file."""
    from jobs import stays

    _, _, work = month
    (stays_path,) = [str(p) for p in work.glob("stays-*")]
    written = spark.read.parquet(stages_mobility.trips_path(stays_path))
    made = stays.trips_from_stays(spark.read.parquet(stays_path), 7)
    assert written.count() == made.count() > 0
    assert written.exceptAll(made).count() == 0
    assert stages_mobility.read_trips(spark, RunConfig(), stays_path).count() == written.count()


def test_without_home_work_the_month_has_no_od_home_work_and_the_same_other_tables(
    spark, month, tmp_path
):
    """``od.home_work = false``: no od_home_work table (nor its stats), the other tables
    as in the default month."""
    staging, tables, _ = month
    lean, _, lean_tables = publish_tiny_month(
        spark, tmp_path, od={"periods": ["day"], "home_work": False}
    )
    assert set(lean_tables) == set(tables) - {"od_home_work"}
    assert not (lean / "od_home_work").exists()
    for name in lean_tables:
        got = spark.read.parquet(str(lean / name))
        want = spark.read.parquet(str(staging / name))
        assert got.count() == want.count() > 0, name
        assert got.exceptAll(want).count() == 0 == want.exceptAll(got).count(), name
