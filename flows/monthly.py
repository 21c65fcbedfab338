"""Prefect flow ``monthly_report``: the monthly run as a recipe of small tasks.

Tasks pass paths and small values (never DataFrames or sessions); each Spark task gets
the process's shared SparkSession from the factory. ``mobiterra run`` runs the same
stages without Prefect (jobs.pipeline.run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from jobs import pipeline, stages
from mobiterra import output
from mobiterra.config import RunConfig
from mobiterra.progress import Progress
from mobiterra.spark import spark_session

# Spark stages read and write files: Prefect's input cache cannot see those, so the
# tasks never cache; idempotence comes from the atomic month swap.
SPARK_TASK = {"cache_policy": NO_CACHE, "retries": 2, "retry_delay_seconds": [10, 60]}


def _spark(cfg: RunConfig):
    e = cfg.engine
    return spark_session(e.master, e.remote, e.shuffle_partitions, e.driver_memory)


@task(**SPARK_TASK)
def ingest(cfg: RunConfig, month: str, work: str, staging: str | None) -> dict:
    result = stages.stage_ingest(
        _spark(cfg), cfg, month, Path(work), Path(staging) if staging else None
    )
    return asdict(result)


@task(cache_policy=NO_CACHE)
def coverage(cfg: RunConfig) -> str:
    return stages.stage_coverage(cfg, pipeline.STATE_DIR / "cache")


@task(**SPARK_TASK)
def usual_residence(cfg: RunConfig, events: str, coverage_path: str, month: str, work: str) -> dict:
    path, homes = stages.stage_residence(_spark(cfg), cfg, events, coverage_path, month, Path(work))
    return {"path": path, "homes": homes}


@task(**SPARK_TASK)
def publish(cfg: RunConfig, homes: str, baseline_homes: str | None, staging: str, work: str) -> dict:
    return stages.stage_publish(_spark(cfg), cfg, homes, baseline_homes, Path(staging), Path(work))


@task(cache_policy=NO_CACHE)
def commit(cfg: RunConfig, staging: str, manifest: dict) -> str:
    output.write_json(Path(staging) / "manifest.json", manifest)
    return str(output.commit_month(Path(staging), cfg.out, cfg.month))


@flow(name="monthly_report", log_prints=True)
def monthly_report(cfg: RunConfig) -> str:
    """One month: ingest -> coverage -> usual residence (+ baseline) -> publish -> commit."""
    logger = get_run_logger()
    pipeline.check_inputs(cfg)
    output.clean_leftovers(cfg.out, cfg.month)
    progress = Progress(quiet=True)
    work = Path(cfg.work_dir) / f"{cfg.month}-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    staging = output.staging_dir(cfg.out, cfg.month)
    try:
        with progress.stage("ingest"):
            ingested = ingest(cfg, cfg.month, str(work), str(staging))
        with progress.stage("coverage"):
            cov = coverage(cfg)
        with progress.stage("residence"):
            homes = usual_residence(cfg, ingested["events"], cov, cfg.month, str(work))
        baseline = None
        baseline_homes = None
        if cfg.baseline_month:
            with progress.stage("baseline"):
                b = ingest(cfg, cfg.baseline_month, str(work), None)
                bh = usual_residence(cfg, b["events"], cov, cfg.baseline_month, str(work))
            baseline_homes = bh["path"]
            baseline = {
                "month": cfg.baseline_month,
                "rows_accepted": b["counts"]["rows_accepted"],
                "users": b["users"],
                "users_with_home": bh["homes"],
            }
        with progress.stage("publish"):
            tables = publish(cfg, homes["path"], baseline_homes, str(staging), str(work))
        manifest = pipeline.build_manifest(
            cfg,
            stages.IngestResult(**ingested),
            homes["homes"],
            baseline,
            tables,
            progress.durations(),
        )
        final = commit(cfg, str(staging), manifest)
    except BaseException:
        output.discard(staging)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "month %s written to %s: %s rows read, %s quarantined",
        cfg.month,
        final,
        manifest["rows_read"],
        sum(manifest["rows_rejected"].values()),
    )
    return final


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.monthly`` takes the same flags as ``mobiterra run``."""
    from mobiterra.cli import add_run_arguments, config_from_args, quiet_library_logs
    from mobiterra.errors import InputError

    quiet_library_logs()
    parser = argparse.ArgumentParser(prog="python -m flows.monthly", description=__doc__)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        pipeline.check_inputs(cfg)
        final = monthly_report(cfg)
    except InputError as e:
        print(f"mobiterra: error: {e}", file=sys.stderr)
        return 2
    manifest = pipeline.read_manifest(Path(final))
    pipeline.summarize(Progress(quiet=cfg.quiet), Path(final), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
