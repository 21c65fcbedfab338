"""The monthly recipe: ingest -> coverage -> residence -> publish -> commit.

``run_month`` sequences the stages once; ``mobiterra run`` calls them directly and
``flows.monthly`` calls each as a Prefect task.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pyspark.sql import SparkSession

import mobiterra
from jobs import diagnostics, od_departements, stages, stages_mobility
from jobs.population import population_by_h3, read_population
from jobs.pseudonym import pseudonym_key
from jobs.readers import check_events, read_cells_pandas
from mobiterra import output, report
from mobiterra.config import RunConfig
from mobiterra.errors import InputError
from mobiterra.progress import Progress

log = logging.getLogger(__name__)

STATE_DIR = Path(".state")
INVARIANT = "rows_read == rows_accepted + rows_out_of_period + rows_duplicate + sum(rows_rejected)"


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except OSError:
        sha = ""
    return f"{mobiterra.__version__}+{sha}" if sha else mobiterra.__version__


def check_inputs(cfg: RunConfig) -> None:
    for name in ("events", "cells", "month"):
        if getattr(cfg, name) is None:
            raise InputError(f"--{name} is required")
    optional = [p for p in (cfg.truth, cfg.population) if p]
    for path in (cfg.events, cfg.cells, *optional):
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or directory")
    check_events(cfg.events)
    read_cells_pandas(cfg.cells)
    if cfg.population:  # fail before Spark starts, not in the coverage stage
        population_by_h3(read_population(cfg.population), cfg.finest_resolution, cfg.population)
    pseudonym_key(cfg.events)


def build_manifest(
    cfg: RunConfig,
    ingested: stages.IngestResult,
    homes: int,
    baseline: dict | None,
    tables: dict,
    durations: dict,
    expansion: dict | None = None,
) -> dict:
    counts = ingested.counts
    return {
        "month": cfg.month,
        "baseline_month": cfg.baseline_month,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "inputs": {
            "events": str(cfg.events),
            "cells": str(cfg.cells),
            "population": str(cfg.population) if cfg.population else "INSEE communes",
        },
        **counts,
        "invariant": INVARIANT,
        "invariant_holds": counts["rows_read"]
        == counts["rows_accepted"]
        + counts["rows_out_of_period"]
        + counts["rows_duplicate"]
        + sum(counts["rows_rejected"].values()),
        "users": ingested.users,
        "users_with_home": homes,
        "baseline": baseline,
        **ingested.cells,
        "k": cfg.k,
        "noise": noise_settings(cfg),
        "resolutions": cfg.resolutions,
        "coverage_strategy": cfg.coverage.strategy,
        "tables": tables,
        "expansion": expansion,
        "config_hash": cfg.config_hash(),
        "code_version": code_version(),
        "durations_s": durations,
    }


def noise_settings(cfg: RunConfig) -> dict | None:
    """The optional noise as the manifest and validation.json report it (None when off)."""
    if cfg.privacy.noise == "none":
        return None
    return {
        "mechanism": cfg.privacy.noise,
        "epsilon_per_count_and_period": cfg.privacy.epsilon,
        "delta": cfg.privacy.delta if cfg.privacy.noise == "gaussian" else None,
        "max_contributions_per_day": cfg.privacy.max_contributions,
    }


class Call(Protocol):
    """Runs one stage: ``call(name, fn, *args, spark=True)`` -> ``fn([spark,] *args)``.

    The plain CLI calls the function directly; the Prefect flow wraps it in a task."""

    def __call__(
        self, name: str, fn: Callable[..., Any], *args: Any, spark: bool = True
    ) -> Any: ...


def direct_call(session: SparkSession) -> Call:
    def call(name: str, fn: Callable[..., Any], *args: Any, spark: bool = True) -> Any:
        return fn(session, *args) if spark else fn(*args)

    return call


def run_month(cfg: RunConfig, call: Call, progress: Progress) -> tuple[Path, dict]:
    """The monthly recipe, shared by ``mobiterra run`` and the Prefect flow.

    Stages read and write paths and return small values; this function only sequences
    them, writes the manifest and commits the month atomically. Returns (OUT/MONTH, manifest).
    """
    check_inputs(cfg)
    output.clean_leftovers(cfg.out, cfg.month)
    work = Path(cfg.work_dir) / f"{cfg.month}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    staging = output.staging_dir(cfg.out, cfg.month)
    try:
        with progress.stage("ingest") as st:
            ingested = call("ingest", stages.stage_ingest, cfg, cfg.month, work, staging)
            st.rows = ingested.counts["rows_read"]
            st.note = f"{ingested.counts['rows_accepted']:,} accepted"
        with progress.stage("coverage"):
            coverage = call(
                "coverage", stages.stage_coverage, cfg, STATE_DIR / "cache", spark=False
            )
        with progress.stage("residence") as st:
            homes_path, homes = call(
                "residence", stages.stage_residence, cfg, ingested.events, coverage, cfg.month, work
            )
            st.rows = homes
        baseline = None
        baseline_homes_path = None
        if cfg.baseline_month:
            with progress.stage("baseline") as st:
                b = call(
                    "baseline-ingest",
                    stages.stage_ingest,
                    cfg,
                    cfg.baseline_month,
                    work,
                    None,
                    True,  # nights only: the baseline month serves its usual residences
                )
                baseline_homes_path, b_homes = call(
                    "baseline-residence",
                    stages.stage_residence,
                    cfg,
                    b.events,
                    coverage,
                    cfg.baseline_month,
                    work,
                )
                st.rows = b_homes
                baseline = {
                    "month": cfg.baseline_month,
                    # only its night-time events are ingested: residence reads no other
                    "rows_in_period": b.counts["rows_in_period"],
                    "night_rows_accepted": b.counts["night_rows_accepted"],
                    "users_with_home": b_homes,
                }
        with progress.stage("stays") as st:
            stays_path, st.rows = call(
                "stays", stages_mobility.stage_stays, cfg, ingested.events, coverage,
                cfg.month, work,
            )  # fmt: skip
        expansion = None
        if cfg.expansion.enabled:
            # the census describes ordinary times: calibrate on the baseline month if any
            on_baseline = cfg.expansion.calibrate_on == "baseline" and baseline_homes_path
            with progress.stage("expansion"):
                expansion = call(
                    "expansion", stages_mobility.stage_expansion, cfg,
                    baseline_homes_path if on_baseline else homes_path, coverage,
                    cfg.baseline_month if on_baseline else cfg.month, staging,
                )  # fmt: skip
        expansion_path = str(staging / expansion["table"]) if expansion else None
        with progress.stage("publish") as st:
            tables = call(
                "publish", stages.stage_publish, cfg, homes_path, baseline_homes_path, staging,
                work, expansion_path,
            )  # fmt: skip
            st.rows = sum(t["rows_published"] for t in tables.values())
        with progress.stage("mobility") as st:
            mobility_tables = call(
                "publish-mobility", stages_mobility.stage_publish_mobility, cfg, ingested.events,
                coverage, homes_path, stays_path, staging, work, expansion_path,
            )  # fmt: skip
            tables.update(mobility_tables)
            st.rows = sum(t["rows_published"] for t in mobility_tables.values())
        with progress.stage("od-departements") as st:
            tables[od_departements.TABLE] = call(
                "od-departements", od_departements.stage_od_departements, cfg, stays_path,
                staging, work,
            )  # fmt: skip
            st.rows = tables[od_departements.TABLE]["rows_published"]
        with progress.stage("diagnostics") as st:
            tables["diagnostics"] = call(
                "diagnostics", diagnostics.stage_diagnostics, cfg, homes_path,
                baseline_homes_path, staging, work, expansion_path,
            )  # fmt: skip
            st.rows = tables["diagnostics"]["rows_published"]
        if cfg.truth is not None:
            with progress.stage("validate"):
                call("validate", validate_stage, cfg, staging, spark=False)
        manifest = build_manifest(
            cfg, ingested, homes, baseline, tables, progress.durations(), expansion
        )
        output.write_json(staging / "manifest.json", manifest)
        with progress.stage("report"):  # maps, exports, report/index.html from the above
            call("report", report.build_report, cfg, staging, spark=False)
        final = output.commit_month(staging, cfg.out, cfg.month)
    except BaseException:
        output.discard(staging)
        raise
    finally:
        if cfg.keep_work:  # the user asked for it: pseudonymous keys stay on disk
            log.warning("work folder kept (pseudonymous user keys; delete when done): %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return final, manifest


def validate_stage(cfg: RunConfig, staging: Path) -> str:
    """Score the staged month against the simulator's truth (writes validation.json)."""
    from mobiterra.validate import validate

    # the manifest is written after this stage: say here what the scores measure
    privacy = {"k": cfg.k, "noise": noise_settings(cfg)}
    validate(cfg.truth, staging, cfg.month, cfg.baseline_month, cfg.events, privacy)
    return str(Path(staging) / "validation.json")


def run(spark: SparkSession, cfg: RunConfig, progress: Progress | None = None) -> Path:
    """Run one month end to end without Prefect; returns OUT/MONTH."""
    progress = progress or Progress(quiet=cfg.quiet)
    final, manifest = run_month(cfg, direct_call(spark), progress)
    summarize(progress, final, manifest)
    return final


def summarize(progress: Progress, final: Path, manifest: dict) -> None:
    rejected = sum(manifest["rows_rejected"].values())
    suppressed = sum(
        t["rows_suppressed_primary"] + t["rows_suppressed_secondary"]
        for t in manifest["tables"].values()
    )
    progress.say(
        f"\n[bold]mobiterra[/] {manifest['month']}: outputs in [bold]{final}[/]\n"
        f"  rows read {manifest['rows_read']:,} · accepted {manifest['rows_accepted']:,} · "
        f"quarantined {rejected:,} · duplicates {manifest['rows_duplicate']:,} · "
        f"out of period {manifest['rows_out_of_period']:,}\n"
        f"  users {manifest['users']:,} · with a usual residence {manifest['users_with_home']:,} · "
        f"k = {manifest['k']} · rows suppressed {suppressed:,}"
    )


def read_manifest(month_dir: Path) -> dict:
    return json.loads((Path(month_dir) / "manifest.json").read_text())
