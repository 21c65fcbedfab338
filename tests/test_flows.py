"""Operations: the monthly schedule in a real Prefect server, retries, idempotent reruns,
run records, backfill, and the per-département Dask flow."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from small_sample import CELLS, ROOT, assert_same_month, write_small_events

from flows import monthly, records, serve
from jobs import stages
from mobiterra import backfill as bf
from mobiterra import output
from mobiterra.config import RunConfig
from mobiterra.errors import InputError

PARIS = ZoneInfo("Europe/Paris")
KEYED_ID = re.compile(r"\b[0-9a-f]{32}\b")  # jobs.pseudonym keys are 32 hex characters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the schedule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2020, 5, 1, 3, 0, tzinfo=PARIS), "2020-04"),
        (datetime(2020, 1, 1, 3, 0, tzinfo=PARIS), "2019-12"),
        # 1 March 00:30 in Paris is still 29 February in UTC: the month is read in Paris
        (datetime(2020, 3, 1, 0, 30, tzinfo=PARIS), "2020-02"),
        (datetime(2020, 2, 29, 23, 30), "2020-02"),  # naive = UTC = 1 March 00:30 Paris
        (datetime(2020, 4, 30, 23, 0, tzinfo=PARIS), "2020-03"),
    ],
)
def test_previous_month_is_read_in_paris_time(when, expected):
    assert serve.previous_month(when) == expected


def _read_deployment(api_url: str, name: str):
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(name)


def test_make_serve_registers_cron_and_timezone_in_a_real_server(tmp_path):
    """`python -m flows.serve --start-server` (what `make serve` runs) starts a real
    `prefect server` with its SQLite database in PREFECT_HOME, serves the deployment,
    and stops both on SIGTERM."""
    home = tmp_path / "prefect-home"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "flows.serve", "--start-server", "--port", str(port)]
    cmd += ["--events", "data_samples/events.parquet", "--cells", "data_samples/cells.csv"]
    cmd += ["--out", str(tmp_path / "out"), "--baseline", "fixed:2020-02"]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in the finalizer
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        name = f"{serve.FLOW}/{serve.DEPLOYMENT}"
        deadline = time.monotonic() + 180
        deployment = None
        while deployment is None:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "deployment not registered within 180 s"
            if serve.healthy(api_url):
                try:
                    deployment = _read_deployment(api_url, name)
                except Exception:  # noqa: BLE001 - not registered yet
                    time.sleep(1)
            else:
                time.sleep(1)
        assert (home / "prefect.db").exists()
        assert (home / "server.pid").exists()
        [schedule] = deployment.schedules
        assert schedule.schedule.cron == "0 3 1 * *"
        assert schedule.schedule.timezone == "Europe/Paris"
        assert schedule.active
        assert deployment.entrypoint == "flows.serve.previous_month_report"
        params = deployment.parameters
        assert params["events"] == str(ROOT / "data_samples" / "events.parquet")
        assert params["baseline"] == "fixed:2020-02"
        assert "month" not in params  # computed at run time

        while b"being served" not in (tmp_path / "serve.log").read_bytes():
            assert time.monotonic() < deadline, "the runner did not start"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # Prefect's runner shuts down gracefully
        assert proc.wait(timeout=90) == 0
        assert not serve.healthy(api_url), "the server outlived `flows.serve`"
        assert not (home / "server.pid").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        pid_file = home / "server.pid"
        if pid_file.exists():  # the server is in its own process group
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def test_a_sigterm_before_the_runner_handles_it_is_a_clean_stop():
    """Prefect prints "being served" before its runner installs its SIGTERM handler; a
    SIGTERM in between reaches ours, which must stop as cleanly (exit 0, finally blocks
    run) - CI once saw exit 143 there."""
    with pytest.raises(SystemExit) as stop:
        serve._stop_on_sigterm(signal.SIGTERM, None)
    assert stop.value.code == 0


def test_deployment_rejects_a_bad_baseline_at_deploy_time():
    with pytest.raises(InputError, match="baseline"):
        serve.deployment("e.parquet", "c.csv", "out", baseline="last-year")


# --- backfill plan ---------------------------------------------------------------------


def test_backfill_plan_orders_months_and_handles_gaps():
    months = bf.months_between("2019-11", "2020-04")
    assert months == ["2019-11", "2019-12", "2020-01", "2020-02", "2020-03", "2020-04"]
    counts = {"2019-12": 10, "2020-01": 5, "2020-02": 7, "2020-04": 3}

    plan = bf.plan_backfill(months, bf.parse_baseline("previous"), counts, "ev.parquet")
    got = {p.month: (p.skip, p.baseline) for p in plan}
    assert got == {
        "2019-11": (True, None),  # no events: skipped
        "2019-12": (False, None),  # its previous month has no events: no baseline
        "2020-01": (False, "2019-12"),
        "2020-02": (False, "2020-01"),
        "2020-03": (True, None),
        "2020-04": (False, None),  # previous (March) has no events
    }
    assert "no events" in plan[0].note and "ev.parquet" in plan[0].note
    assert "baseline 2020-03 has no events" in plan[-1].note

    fixed = bf.plan_backfill(months, bf.parse_baseline("fixed:2020-02"), counts, "ev.parquet")
    assert [p.baseline for p in fixed if not p.skip] == ["2020-02", "2020-02", None, "2020-02"]
    none = bf.plan_backfill(months, bf.parse_baseline("none"), counts, "ev.parquet")
    assert all(p.baseline is None for p in none)

    with pytest.raises(InputError, match="fixed baseline month 2020-03 has no events"):
        bf.plan_backfill(months, bf.parse_baseline("fixed:2020-03"), counts, "ev.parquet")
    with pytest.raises(InputError, match="after"):
        bf.months_between("2020-05", "2020-04")
    with pytest.raises(InputError, match="YYYY-MM"):
        bf.parse_baseline("fixed:2020-13")


def test_backfill_stops_at_a_failed_month_and_keeps_the_done_ones():
    plan = [bf.PlannedMonth("2020-01", None), bf.PlannedMonth("2020-02", "2020-01"),
            bf.PlannedMonth("2020-03", "2020-02")]  # fmt: skip
    ran = []

    def run_month(cfg: RunConfig) -> str:
        ran.append((cfg.month, cfg.baseline_month))
        if cfg.month == "2020-02":
            raise RuntimeError("boom")
        return f"out/{cfg.month}"

    done: list[dict] = []
    with pytest.raises(RuntimeError, match="boom"):
        bf.run_backfill(RunConfig(), plan, run_month, lambda _: None, done)
    assert ran == [("2020-01", None), ("2020-02", "2020-01")]
    assert [(r["month"], r["status"]) for r in done] == [("2020-01", "done"), ("2020-02", "failed")]


# --- runs of the monthly flow (Prefect test harness, shared Spark session) ----------


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="module")
def small_events(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    ids = write_small_events(path)
    return path, ids


def _cfg(tmp_path: Path, events: Path, month: str = "2020-04", **kw) -> RunConfig:
    return RunConfig.model_validate(
        {
            "events": str(events),
            "cells": str(CELLS),
            "month": month,
            "out": str(tmp_path / "out"),
            "work_dir": str(tmp_path / "work"),
            "engine": {"shuffle_partitions": 2},  # the shared test session's setting
            # the flow is the point: fewer levels for the gate, one period per mobility table
            "resolutions": [6, 7, 8],
            "presence": {"periods": ["day"]},
            "od": {"periods": ["day"]},
            "quiet": True,
            **kw,
        }
    )


def _artifacts(key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def _task_runs(flow_run_id) -> dict[str, list]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r)
    return out


def _assert_no_user_ids(text: str, raw_ids: list[str]) -> None:
    assert not any(i in text for i in raw_ids)
    assert not KEYED_ID.search(text)


@pytest.fixture(scope="module")
def retried_month(spark, harness, small_events, tmp_path_factory):
    """April through monthly_report, its residence stage failing once (a lost executor):
    (cfg, state, residence stage calls, commits, a copy of the committed month)."""
    events, _ = small_events
    tmp_path = tmp_path_factory.mktemp("retried")
    cfg = _cfg(tmp_path, events, baseline_month="2020-02")
    residence_calls, commits = [], []
    real_residence, real_commit = stages.stage_residence, output.commit_month

    def lose_an_executor_once(*args):
        residence_calls.append(args[4])  # (spark, cfg, events, coverage, month, work)
        if len(residence_calls) == 1:
            raise RuntimeError("injected: executor lost")
        return real_residence(*args)

    def counting_commit(*args):
        commits.append(args)
        return real_commit(*args)

    with pytest.MonkeyPatch.context() as mp:
        # the production back-off is 10 s then 60 s; the retry itself is what is tested
        mp.setattr(monthly, "spark_stage", monthly.spark_stage.with_options(retry_delay_seconds=0))
        mp.setattr(stages, "stage_residence", lose_an_executor_once)
        mp.setattr(output, "commit_month", counting_commit)
        state = monthly.monthly_report(cfg, return_state=True)
    assert state.is_completed(), state
    kept = tmp_path / "first-run"
    shutil.copytree(state.result(), kept)
    return cfg, state, residence_calls, commits, kept


@pytest.mark.slow
def test_forced_failure_is_retried_and_the_month_commits_once(small_events, retried_month):
    _, raw_ids = small_events
    cfg, state, residence_calls, commits, _ = retried_month
    assert residence_calls == ["2020-04", "2020-04", "2020-02"]
    tasks = _task_runs(state.state_details.flow_run_id)
    assert [t.run_count for t in tasks["residence"]] == [2]  # one task, retried once
    assert tasks["residence"][0].state.is_completed()
    assert [t.run_count for t in tasks["baseline-residence"]] == [1]
    assert len(commits) == 1  # the month was committed once
    assert sorted(p.name for p in Path(cfg.out).iterdir()) == ["2020-04"]  # no leftovers

    [record] = _artifacts(records.artifact_key("monthly-report", "2020-04"))
    assert record.type == "markdown"
    assert str(state.result()) in record.data
    assert "| read | 135,862 |" in record.data  # 135,859 sample rows + 3 bad ones
    assert "| quarantined | 3 |" in record.data
    assert "residence_shift" in record.data and "Invariant holds" in record.data
    _assert_no_user_ids(record.data, raw_ids)


def test_a_failure_names_the_stage_and_the_input(harness, small_events, tmp_path, monkeypatch):
    events, raw_ids = small_events
    cfg = _cfg(tmp_path, events, month="2020-06")
    monkeypatch.setattr(
        monthly, "spark_stage", monthly.spark_stage.with_options(retry_delay_seconds=0)
    )
    attempts = []

    def broken_ingest(*args):
        attempts.append(1)
        raise OSError(f"disk full while writing {args[3]}")

    monkeypatch.setattr(stages, "stage_ingest", broken_ingest)
    state = monthly.monthly_report(cfg, return_state=True)
    assert state.is_failed()
    assert len(attempts) == 3  # the first try and two retries
    [record] = _artifacts(records.artifact_key("monthly-report", "2020-06"))
    assert "FAILED in stage `ingest`" in record.data
    assert f"events: `{events}`" in record.data and f"cells: `{CELLS}`" in record.data
    assert "OSError: disk full while writing" in record.data
    assert not (Path(cfg.out) / "2020-06").exists()
    _assert_no_user_ids(record.data, raw_ids)

    # unusable input: stops in the input checks, before any stage
    bad = cfg.model_copy(update={"cells": tmp_path / "missing.csv", "month": "2020-07"})
    assert monthly.monthly_report(bad, return_state=True).is_failed()
    [record] = _artifacts(records.artifact_key("monthly-report", "2020-07"))
    assert "FAILED in stage `check_inputs`" in record.data
    assert "missing.csv: no such file or directory" in record.data


def test_failed_stage_from_the_trail():
    assert monthly.failed_stage([]) == "check_inputs"
    assert monthly.failed_stage(["ingest", "coverage", "failed:coverage"]) == "coverage"
    assert monthly.failed_stage(["ingest", "residence", "publish"]) == "commit"


@pytest.mark.slow
def test_backfill_flow_skips_the_gap_and_rerun_replaces_the_month_identically(
    small_events, retried_month, tmp_path
):
    """The backfill reruns April over a copy of the retried run's release (a stale file
    added): the month is replaced whole, with the same tables and manifest."""
    from flows.backfill import backfill

    _, raw_ids = small_events
    first_cfg, _, _, _, kept = retried_month
    out = tmp_path / "out"
    month = out / "2020-04"
    shutil.copytree(kept, month)  # the fixture's own release stays as the other test saw it
    (month / "stale-file").write_text("from an older run")
    cfg = first_cfg.model_copy(
        update={"month": None, "baseline_month": None, "out": str(out),
                "work_dir": str(tmp_path / "work")}
    )  # fmt: skip
    done = backfill(cfg, "2020-03", "2020-04", "fixed:2020-02")
    assert [(r["month"], r["status"], r["baseline"]) for r in done] == [
        ("2020-03", "skipped", None),
        ("2020-04", "done", "2020-02"),
    ]
    manifest = (month / "manifest.json").read_text()
    assert '"baseline_month": "2020-02"' in manifest
    assert sorted(p.name for p in Path(cfg.out).iterdir()) == ["2020-04"]
    assert not (month / "stale-file").exists()
    compared = assert_same_month(kept, month)
    assert {"residents", "residence_shift", "quarantine/events"} <= set(compared)
    assert len(pd.read_parquet(month / "residents")) > 0
    [record] = _artifacts(records.artifact_key("backfill", "2020-03-2020-04"))
    assert "| 2020-03 | skipped |" in record.data and "| 2020-04 | done | 2020-02 |" in record.data
    _assert_no_user_ids(record.data, raw_ids)


def test_backfill_command_stops_on_a_fixed_baseline_without_events(
    spark, small_events, tmp_path, capsys
):
    from mobiterra.cli import main

    events, _ = small_events
    code = main(
        ["backfill", "--events", str(events), "--cells", str(CELLS), "--out",
         str(tmp_path / "out"), "--from", "2020-02", "--to", "2020-04",
         "--baseline", "fixed:2020-03", "--quiet"]
    )  # fmt: skip
    assert code == 2
    assert "fixed baseline month 2020-03 has no events" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- per-département work on Dask ------------------------------------------------------


def test_territory_outputs_maps_departements_on_dask(harness, tmp_path, monkeypatch):
    """A hand-made published residents table around Lyon: each touched département gets
    the rows of its hexagons, unchanged, from a task run on one of 2 Dask workers."""
    import h3
    from distributed import get_worker
    from prefect_dask import DaskTaskRunner

    from flows import territories

    lyon = h3.latlng_to_cell(45.76, 4.84, 6)
    rows = [(6, lyon, 120)] + [
        (7, c, 25 + i) for i, c in enumerate(sorted(h3.cell_to_children(lyon, 7))[:4])
    ]
    rows.append((5, h3.latlng_to_cell(45.9, 5.35, 5), 40))  # straddles Ain and Isère
    month_dir = tmp_path / "2020-04"
    (month_dir / "residents").mkdir(parents=True)
    published = pd.DataFrame(rows, columns=["resolution", "h3_cell", "residents"]).assign(
        residents_est=None
    )
    published.to_parquet(month_dir / "residents" / "part-0.parquet")

    real = territories.departement_residents
    seen = tmp_path / "workers"
    seen.mkdir()

    def on_worker(residents, shares, code):
        # Dask pickles the task (and this closure) even in-process: record in files
        (seen / code).write_text(get_worker().address)
        return real(residents, shares, code)

    monkeypatch.setattr(territories, "departement_residents", on_worker)
    assert isinstance(territories.territory_outputs.task_runner, DaskTaskRunner)
    paths = territories.territory_outputs(str(month_dir))

    assert "69" in paths and len(paths) >= 2
    workers = {p.name: p.read_text() for p in seen.iterdir()}
    assert set(workers) == set(paths)
    assert all(w.startswith("inproc://") for w in workers.values())
    extracts = pd.concat([pd.read_csv(p, dtype={"departement_code": str}) for p in paths.values()])
    assert set(extracts["departement_code"]) == set(paths)
    for code, path in paths.items():
        assert Path(path) == month_dir / "exports" / "departements" / code / "residents.csv"
    # every published cell is somewhere, its count unchanged; shares of a cell sum to 1
    merged = extracts.merge(published, on=["resolution", "h3_cell"], suffixes=("", "_pub"))
    assert len(merged) == len(extracts)
    assert (merged["residents"] == merged["residents_pub"]).all()
    assert set(extracts["h3_cell"]) == set(published["h3_cell"])
    total = extracts.groupby("h3_cell")["departement_share"].sum()
    assert total.round(9).eq(1.0).all()
    assert not (month_dir / "exports" / "departements" / territories.SHARES_FILE).exists()
