"""Prefect flow ``monthly_report``: the monthly recipe (jobs.pipeline.run_month) with
each stage run as a Prefect task.

Tasks pass paths and small values (never DataFrames or sessions); each Spark task gets
the process's shared SparkSession from the factory. ``mobiterra run`` runs the same
recipe without Prefect.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import records
from jobs import pipeline
from mobiterra.config import RunConfig
from mobiterra.progress import Progress
from mobiterra.spark import engine_session

# Spark stages read and write files that Prefect's input cache cannot see, so tasks
# never cache; a rerun redoes the month and the atomic month swap keeps it idempotent.
RETRY_DELAYS_S = [10, 60]
FAILED = "failed:"


def _spark(cfg: RunConfig):
    return engine_session(cfg.engine)


@task(cache_policy=NO_CACHE, retries=len(RETRY_DELAYS_S), retry_delay_seconds=RETRY_DELAYS_S)
def spark_stage(cfg: RunConfig, fn: Callable[..., Any], *args: Any) -> Any:
    """One Spark stage; retried with back-off (a lost executor, a full disk freed)."""
    return fn(_spark(cfg), *args)


@task(cache_policy=NO_CACHE)
def driver_stage(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def prefect_call(cfg: RunConfig, trail: list[str] | None = None) -> pipeline.Call:
    """Each stage as a task named after it. ``trail`` gets each stage's name when it
    starts and ``failed:<name>`` when it fails after its retries (for the run record)."""

    def call(name: str, fn: Callable[..., Any], *args: Any, spark: bool = True) -> Any:
        if trail is not None:
            trail.append(name)
        try:
            if spark:
                return spark_stage.with_options(name=name)(cfg, fn, *args)
            return driver_stage.with_options(name=name)(fn, *args)
        except BaseException:
            if trail is not None:
                trail.append(f"{FAILED}{name}")
            raise

    return call


def failed_stage(trail: list[str]) -> str:
    """The stage a failed run stopped in: input checks before the first stage, the manifest
    and commit after the last one."""
    failed = [t.removeprefix(FAILED) for t in trail if t.startswith(FAILED)]
    if failed:
        return failed[-1]
    return "commit" if trail else "check_inputs"


@flow(name="monthly_report", log_prints=True)
def monthly_report(cfg: RunConfig) -> str:
    """One month: ingest -> coverage -> usual residence (+ baseline) -> publish -> commit."""
    logger = get_run_logger()
    trail: list[str] = []
    try:
        final, manifest = pipeline.run_month(cfg, prefect_call(cfg, trail), Progress(quiet=True))
    except Exception as e:
        stage = failed_stage(trail)
        create_markdown_artifact(
            records.failure_markdown(cfg, stage, e),
            key=records.artifact_key("monthly-report", cfg.month),
            description=f"mobiterra {cfg.month}: failed in stage {stage}",
        )
        raise
    create_markdown_artifact(
        records.run_markdown(final, manifest),
        key=records.artifact_key("monthly-report", cfg.month),
        description=f"mobiterra {cfg.month}: outputs in {final}",
    )
    logger.info(
        "month %s written to %s: %s rows read, %s quarantined",
        cfg.month,
        final,
        manifest["rows_read"],
        sum(manifest["rows_rejected"].values()),
    )
    return str(final)


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
        final = Path(monthly_report(cfg))
    except InputError as e:
        print(f"mobiterra: error: {e}", file=sys.stderr)
        return 2
    pipeline.summarize(Progress(quiet=cfg.quiet), final, pipeline.read_manifest(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
