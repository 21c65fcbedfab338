"""End to end: `mobiterra run` on the bundled sample and on planted bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h3
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from small_sample import assert_same_month, write_small_events

from jobs.pipeline import INVARIANT, read_manifest
from jobs.pseudonym import SAMPLE_KEY
from mobiterra import attacks, audit, cli
from mobiterra.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_samples"
K = 20
CLI = [sys.executable, "-m", "mobiterra.cli"]


def _run(*args: str) -> int:
    return cli.main(["run", *args, "--quiet"])


@pytest.fixture(scope="module")
def sample_out(sample_run):
    """February alone, then April against February: both months of the sample (run once
    per session by conftest.sample_run, shared with tests/test_report.py)."""
    return sample_run


def test_run_writes_the_month_and_nothing_else(sample_out):
    assert sorted(p.name for p in sample_out.iterdir() if not p.name.startswith(".")) == [
        "2020-02",
        "2020-04",
    ]
    april = sample_out / "2020-04"
    for name in ("residents", "residence_shift", "quarantine", "manifest.json", "validation.json"):
        assert (april / name).exists(), name
    assert not (sample_out / "2020-02" / "residence_shift").exists()


def test_manifest_reconciles_and_describes_the_run(sample_out):
    m = read_manifest(sample_out / "2020-04")
    assert m["invariant"] == INVARIANT and m["invariant_holds"]
    assert m["rows_read"] == pq.read_metadata(SAMPLE / "events.parquet").num_rows
    assert m["rows_read"] == (
        m["rows_accepted"]
        + m["rows_out_of_period"]
        + m["rows_duplicate"]
        + sum(m["rows_rejected"].values())
    )
    assert m["rows_accepted"] > 1_000_000 and m["rows_out_of_period"] > 1_000_000
    assert m["k"] == K and m["resolutions"] == [4, 5, 6, 7, 8]
    assert m["baseline"]["month"] == "2020-02"
    assert 7_000 < m["users_with_home"] <= m["users"] <= 8_012
    for table in ("residents", "residence_shift"):
        assert m["tables"][table]["rows_published"] > 0
    # every user with a home is counted once per resolution, published or suppressed
    r = m["tables"]["residents"]
    assert r["user_count_published"] + r["user_count_suppressed"] == 5 * m["users_with_home"]
    assert set(m["durations_s"]) >= {"ingest", "coverage", "residence", "publish"}
    assert len(m["config_hash"]) == 16 and m["code_version"]


def test_published_tables_follow_the_contract(sample_out):
    residents = pd.read_parquet(sample_out / "2020-04" / "residents")
    assert list(residents.columns) == ["resolution", "h3_cell", "residents", "residents_est"]
    assert residents["h3_cell"].str.len().eq(15).all()
    assert all(h3.is_valid_cell(c) for c in residents["h3_cell"])
    assert (residents["h3_cell"].map(h3.get_resolution) == residents["resolution"]).all()
    assert set(residents["resolution"]) == {4, 5, 6, 7, 8}
    assert (residents["residents"] >= K).all()
    shift = pd.read_parquet(sample_out / "2020-04" / "residence_shift")
    assert {"resolution", "origin_cell", "destination_cell", "users"} <= set(shift.columns)
    assert (shift["users"] >= K).all()
    # Resolutions are a hierarchy: coarse totals are sums of fine ones before suppression,
    # so a published parent is never below the sum of its published children.
    fine = residents[residents["resolution"] == 8].copy()
    fine["parent"] = fine["h3_cell"].map(lambda c: h3.cell_to_parent(c, 7))
    sums = fine.groupby("parent")["residents"].sum()
    parents = residents[residents["resolution"] == 7].set_index("h3_cell")["residents"]
    common = sums.index.intersection(parents.index)
    assert len(common) > 0 and (parents[common] >= sums[common]).all()


def test_the_gate_holds_against_the_attacks_on_both_months(sample_out):
    found = attacks.attack_month(sample_out / "2020-04", K, baseline_dir=sample_out / "2020-02")
    assert found and all(v == 0 for v in found.values()), found
    found = attacks.attack_month(sample_out / "2020-02", K)
    assert all(v == 0 for v in found.values()), found


def test_no_user_id_in_any_output(sample_out):
    ids = pq.read_table(SAMPLE / "events.parquet", columns=["user_id"]).column(0)
    some = pc.unique(ids).to_pylist()[:200]
    # raw ids and the pseudonyms ingest gave them (the sample's public key)
    keyed = audit.keyed(some, SAMPLE_KEY.encode())
    assert attacks.id_leaks(sample_out, some + keyed) == []


def test_audit_command_attacks_a_release(sample_out, capsys):
    args = ["audit", "--out", str(sample_out), "--month", "2020-04"]
    assert cli.main([*args, "--baseline-month", "2020-02"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["baseline-residents-vs-shift"] == 0 and found["residents-vs-home-work"] == 0
    assert cli.main(["audit", "--out", str(sample_out), "--month", "2020-03"]) == 2


def test_residents_are_scored_against_the_truth(sample_out):
    # the run scored itself (--truth); validate() on the published month agrees
    kept = json.loads((sample_out / "2020-04" / "validation.json").read_text())
    assert kept["privacy"] == {"k": K, "noise": None}  # what the scores measure
    result = validate(SAMPLE / "truth", sample_out / "2020-04", "2020-04", "2020-02")
    assert kept["residents_by_departement"] == result["residents_by_departement"]
    assert result["checks"]["residents_within_5pct"], result["residents_by_departement"]
    errors = {r["departement_code"]: r["rel_error"] for r in result["residents_by_departement"]}
    assert max(abs(e) for e in errors.values()) <= 0.05, errors


def test_mobility_and_expansion_are_published_and_scored(sample_out):
    april = sample_out / "2020-04"
    m = read_manifest(april)
    for name in ("present_population", "od_trips", "od_home_work", "od_departements"):
        assert m["tables"][name]["rows_published"] > 0, name
        assert (april / name).exists(), name
    deps = pd.read_parquet(april / "od_departements")
    assert (deps[["trips", "users"]] >= m["k"]).all().all()  # no value in [1, k)
    assert set(deps["period"]) == {"day"} and deps["origin_name"].notna().all()
    assert m["expansion"]["calibration_month"] == "2020-02"  # the baseline month
    assert m["expansion"]["departements_calibrated"] == ["15", "32", "46", "58", "69", "75", "89"]
    v = json.loads((april / "validation.json").read_text())
    # Measured on the sample (issue 4 targets: night 5 %, expansion 5 %): night presence
    # -2.5 to -6.6 % (users without a stay over the night), factors within 6.1 % of the
    # simulator's (uneven sampling between neighbouring départements), Paris's expanded
    # residents -0.1 %. These bounds catch regressions; the report gives the figures.
    night = {r["departement_code"]: r["rel_error"] for r in v["night_presence"]["by_departement"]}
    assert max(abs(e) for e in night.values()) <= 0.08, night
    exp = {r["departement_code"]: r for r in v["expansion"]["by_departement"]}
    assert max(abs(r["factor_rel_error"]) for r in exp.values()) <= 0.07, exp
    assert abs(exp["75"]["rel_error_truth"]) <= 0.02, exp["75"]
    # the published département estimates (diagnostics' residents_est): within 1 % of the
    # reference moved by the true change; on the sample the smallest départements' residents
    # are held back by the territorial gate, so they have none
    published = {d: r["rel_error_published_reference_moved"] for d, r in exp.items()}
    assert sum(e is not None for e in published.values()) >= 5, published
    assert max(abs(e) for e in published.values() if e is not None) <= 0.01, published
    assert "skipped" in v["daily_od"]  # data_samples/truth has no trips (--no-truth-stays)


SMALL_RERUN = pytest.mark.xdist_group("small_rerun")  # one fixture run, one worker


@pytest.fixture(scope="module")
def small_rerun(spark, tmp_path_factory):
    """A small slice (400 users, both months) run twice: the second over a copy of the
    first release holding a stale file, with --keep-work. (The rerun's property does not
    need the whole sample; two sample-sized runs of February took 150 s.)"""
    tmp_path = tmp_path_factory.mktemp("rerun")
    events = tmp_path / "events.parquet"
    write_small_events(events)
    args = ["--events", str(events), "--cells", str(SAMPLE / "cells.csv"), "--month", "2020-04"]
    # one period per mobility table: the properties here do not need the hours and
    # day-parts (the sample's run has them), which are most of a small run's mobility time
    light = tmp_path / "light.toml"
    light.write_text('[presence]\nperiods = ["day"]\n[od]\nperiods = ["day"]\n')
    args += ["--baseline-month", "2020-02", "--resolutions", "6,7,8", "--config", str(light)]
    first, out = tmp_path / "first", tmp_path / "again"
    assert _run(*args, "--out", str(first), "--work-dir", str(tmp_path / "w1")) == 0
    shutil.copytree(first / "2020-04", out / "2020-04")
    (out / "2020-04" / "stale-file").write_text("from an older run")
    # the rerun keeps its intermediate tables (--keep-work): the release must not change
    assert _run(*args, "--out", str(out), "--work-dir", str(tmp_path / "w2"), "--keep-work") == 0
    return tmp_path, events, first, out


@SMALL_RERUN
def test_rerun_replaces_the_month_with_identical_tables(small_rerun):
    tmp_path, _, first, out = small_rerun
    assert not (out / "2020-04" / "stale-file").exists()
    assert list((tmp_path / "w1").iterdir()) == []  # deleted by default
    (kept,) = (tmp_path / "w2").iterdir()
    assert kept.name.startswith("2020-04-") and (kept / "stays-2020-04").is_dir()
    assert len(pd.read_parquet(kept / "stays-2020-04")) > 0
    compared = assert_same_month(first / "2020-04", out / "2020-04")
    assert {"residents", "residence_shift", "present_population", "od_trips"} <= set(compared)
    assert len(pd.read_parquet(out / "2020-04" / "residents")) > 0
    assert [p.name for p in out.iterdir()] == ["2020-04"]


@SMALL_RERUN
def test_pre_gate_counts_equal_the_duckdb_baseline(small_rerun):
    """The bench's equality check in make test: its single-machine DuckDB baseline
    (bench/baseline_duckdb.py) computes the same residents, residence shift and daily
    present population and OD from the same files as the run's pre-gate counts (kept by
    --keep-work), so a change to one that the other does not follow fails here, not only
    in `make bench`."""
    from bench.baseline_duckdb import Baseline
    from bench.one_size import SHARED, compare
    from jobs import stages
    from jobs.pipeline import STATE_DIR
    from jobs.pseudonym import pseudonym_key
    from mobiterra.config import RunConfig

    tmp_path, events, _, _ = small_rerun
    (kept,) = (tmp_path / "w2").iterdir()
    cfg = RunConfig(
        events=events, cells=SAMPLE / "cells.csv", month="2020-04", baseline_month="2020-02",
        resolutions=[6, 7, 8], out=tmp_path / "again",
        presence={"periods": ["day"]}, od={"periods": ["day"]},
    )  # fmt: skip
    coverage = stages.stage_coverage(cfg, STATE_DIR / "cache")  # cached by the runs
    base = Baseline(cfg, events, Path(coverage), pseudonym_key(events), threads=2)
    try:
        tables = base.run(set(SHARED))
    finally:
        base.close()
    for table in SHARED:
        pipe = pq.read_table(kept / f"counts-{table}").to_pandas()
        if "period" in pipe.columns:
            pipe = pipe[pipe["period"] == "day"]
        result = compare(pipe, tables[table], table)
        assert result["rows_pipeline"] > 0 and result["equal"], (table, result)


# --- bad input ---------------------------------------------------------------------------

PLANTED = {
    "null_user_id": ("", "2020-02-10T20:00:00Z", "{cell}"),
    "null_timestamp": ("{user}", "", "{cell}"),
    "unparseable_timestamp": ("{user}", "10/02/2020 8pm", "{cell}"),
    "null_cell_id": ("{user}", "2020-02-10T20:00:00Z", ""),
    "unknown_cell": ("{user}", "2020-02-10T20:00:00Z", "NO-SUCH-CELL"),
    "invalid_cell_coordinates": ("{user}", "2020-02-10T20:00:00Z", "BAD-COORD"),
}


@pytest.fixture(scope="module")
def planted_csv(tmp_path_factory):
    """60 users' February events from the sample as CSV, plus 7 bad rows of each kind."""
    folder = tmp_path_factory.mktemp("planted")
    table = pq.read_table(SAMPLE / "events.parquet")
    users = pc.unique(table.column("user_id")).to_pylist()[:60]
    events = table.filter(pc.is_in(table.column("user_id"), value_set=pa.array(users))).to_pandas()
    events = events[events["timestamp"].dt.month == 2]
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    cell = events["cell_id"].iloc[0]
    bad = [
        {"user_id": u.format(user="p1"), "timestamp": t, "cell_id": c.format(cell=cell)}
        for spec in PLANTED.values()
        for u, t, c in [spec] * 7
    ]
    dupes = events.drop_duplicates().head(5)
    events = events.drop_duplicates()  # the sample's own rare exact duplicates
    rows = pd.concat([events, pd.DataFrame(bad), dupes], ignore_index=True)
    rows.to_csv(folder / "events.csv", index=False)
    cells = pd.read_csv(SAMPLE / "cells.csv", dtype=str)
    extra = pd.DataFrame([{"cell_id": "BAD-COORD", "lat": "123.0", "lon": "2.0"}])
    pd.concat([cells, extra], ignore_index=True).to_csv(folder / "cells.csv", index=False)
    return folder, len(rows), len(events)


def test_planted_bad_rows_reconcile_in_manifest_and_quarantine(spark, planted_csv, tmp_path):
    folder, n_rows, n_good = planted_csv
    out = tmp_path / "out"
    args = ["--events", str(folder / "events.csv"), "--cells", str(folder / "cells.csv")]
    assert _run(*args, "--month", "2020-02", "--out", str(out), "--work-dir", str(tmp_path)) == 0
    m = read_manifest(out / "2020-02")
    assert m["rows_read"] == n_rows and m["invariant_holds"]
    assert m["rows_rejected"] == {reason: 7 for reason in PLANTED}
    assert m["rows_duplicate"] == 5 and m["rows_accepted"] == n_good
    q = pd.read_parquet(out / "2020-02" / "quarantine" / "events")
    assert q["reason"].value_counts().to_dict() == {reason: 7 for reason in PLANTED}
    assert "user_id" not in q.columns
    qc = pd.read_parquet(out / "2020-02" / "quarantine" / "cells")
    assert qc.to_dict("records") == [{"reason": "invalid_cell_coordinates", "cell_id": "BAD-COORD"}]


def test_a_month_without_events_stops_with_one_line(spark, planted_csv, tmp_path, capsys):
    folder, _, _ = planted_csv
    args = ["--events", str(folder / "events.csv"), "--cells", str(folder / "cells.csv")]
    rc = _run(
        *args, "--month", "2021-06", "--out", str(tmp_path / "o"), "--work-dir", str(tmp_path)
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "events.csv" in err[0] and "no usable rows in month 2021-06" in err[0]
    assert not (tmp_path / "o" / "2021-06").exists()


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOBITERRA_PSEUDONYM_KEY": "k"}
    return subprocess.run(
        [*CLI, "run", *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.parametrize(
    "content,expected",
    [
        ("user_id,timestamp\nu1,2020-02-01T00:00:00Z\n", "lacks column(s) cell_id"),
        ("", "unreadable csv events file"),
    ],
    ids=["missing-column", "empty-file"],
)
def test_unusable_events_exit_nonzero_with_one_line(tmp_path, content, expected):
    (tmp_path / "ev.csv").write_text(content)
    p = _cli(
        "--events",
        "ev.csv",
        "--cells",
        str(SAMPLE / "cells.csv"),
        "--month",
        "2020-02",
        tmp_path=tmp_path,
    )
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "ev.csv" in lines[0] and expected in lines[0]
    assert "Traceback" not in p.stderr


def test_unreadable_parquet_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "ev.parquet").write_bytes(b"not parquet at all")
    p = _cli(
        "--events",
        "ev.parquet",
        "--cells",
        str(SAMPLE / "cells.csv"),
        "--month",
        "2020-02",
        tmp_path=tmp_path,
    )
    assert p.returncode == 2 and "ev.parquet: unreadable parquet" in p.stderr, p.stderr
    p = _cli(
        "--events",
        "nowhere.parquet",
        "--cells",
        str(SAMPLE / "cells.csv"),
        "--month",
        "2020-02",
        tmp_path=tmp_path,
    )
    assert p.returncode == 2 and p.stderr.strip().endswith(
        "nowhere.parquet: no such file or directory"
    )
    p = _cli(
        "--events",
        str(SAMPLE / "events.parquet"),
        "--cells",
        str(SAMPLE / "cells.csv"),
        "--month",
        "2020-13",
        tmp_path=tmp_path,
    )
    assert p.returncode == 2 and "2020-13" in p.stderr and len(p.stderr.strip().splitlines()) == 1


# --- a hand-checkable month ---------------------------------------------------------------


@pytest.fixture(scope="module")
def hand_input(tmp_path_factory):
    """25 users sleeping at cell A, 22 at B (5 of them moved there from A in February's
    run below), 6 at C; 3 users with only 2 nights. Every count is known by hand."""
    folder = tmp_path_factory.mktemp("hand")
    sites = {"A": (48.8566, 2.3522), "B": (47.3220, 5.0415), "C": (44.4475, 1.4410)}
    pd.DataFrame(
        [{"cell_id": c, "lat": lat, "lon": lon} for c, (lat, lon) in sites.items()]
    ).to_csv(folder / "cells.csv", index=False)

    def nights(user, cell, month, n):
        # 23:30 UTC = 00:30/01:30 Paris: one event per night, nights 1..n
        return [(user, f"2020-{month:02d}-{d:02d}T23:30:00Z", cell) for d in range(1, n + 1)]

    rows = []
    for i in range(25):
        rows += nights(f"a{i}", "A", 2, 10) + nights(f"a{i}", "A" if i >= 5 else "B", 4, 10)
    for i in range(17):
        rows += nights(f"b{i}", "B", 2, 10) + nights(f"b{i}", "B", 4, 10)
    for i in range(6):
        rows += nights(f"c{i}", "C", 2, 10) + nights(f"c{i}", "C", 4, 10)
    for i in range(3):
        rows += nights(f"d{i}", "C", 4, 2)
    pd.DataFrame(rows, columns=["user_id", "timestamp", "cell_id"]).to_csv(
        folder / "events.csv", index=False
    )
    return folder, {c: h3.latlng_to_cell(lat, lon, 8) for c, (lat, lon) in sites.items()}


def test_hand_checkable_counts_are_exact(spark, hand_input, tmp_path):
    folder, hexes = hand_input
    out = tmp_path / "o"
    args = ["--events", str(folder / "events.csv"), "--cells", str(folder / "cells.csv")]
    args += ["--out", str(out), "--work-dir", str(tmp_path), "--coverage", "point", "--k", "20"]
    assert _run(*args, "--month", "2020-02") == 0
    assert _run(*args, "--month", "2020-04", "--baseline-month", "2020-02") == 0
    res = pd.read_parquet(out / "2020-04" / "residents")
    at8 = res[res.resolution == 8].set_index("h3_cell")["residents"].to_dict()
    # A: 20 stayed; B: 17 + 5 movers = 22; C: 6 (< k, suppressed); the 2-night users: none
    assert at8 == {hexes["A"]: 20, hexes["B"]: 22}
    # A and B are far apart: every coarser parent holds exactly one of them
    for r in (4, 5, 6, 7):
        got = res[res.resolution == r].set_index("h3_cell")["residents"].to_dict()
        assert got == {h3.cell_to_parent(hexes["A"], r): 20, h3.cell_to_parent(hexes["B"], r): 22}
    m = read_manifest(out / "2020-04")
    assert m["users"] == 51 and m["users_with_home"] == 48
    feb = pd.read_parquet(out / "2020-02" / "residents")
    assert feb[feb.resolution == 8].set_index("h3_cell")["residents"].to_dict() == {
        hexes["A"]: 25
    }  # B has 17 in February: below k
    shift = pd.read_parquet(out / "2020-04" / "residence_shift")
    # the 5 movers A -> B are below k; stayers A -> A (20) would reveal 25 - 20 = 5 users
    # left A, which is below k: the gate must not publish the pair that leaks it.
    stay_a = shift[(shift.origin_cell == hexes["A"]) & (shift.destination_cell == hexes["A"])]
    assert stay_a.empty or int(stay_a["users"].iloc[0]) == 20
    assert not ((shift.origin_cell == hexes["A"]) & (shift.destination_cell == hexes["B"])).any()
    assert all(v == 0 for v in attacks.attack_month(out / "2020-04", K, out / "2020-02").values())


def test_a_crash_leaves_the_previous_month_intact(spark, hand_input, tmp_path, monkeypatch):
    from jobs import stages

    folder, _ = hand_input
    out = tmp_path / "o"
    args = ["--events", str(folder / "events.csv"), "--cells", str(folder / "cells.csv")]
    args += ["--out", str(out), "--work-dir", str(tmp_path), "--month", "2020-02"]
    assert _run(*args) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stages, "stage_publish", boom)
    assert _run(*args) == 1
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.iterdir()] == ["2020-02"]  # no staging folder left behind
