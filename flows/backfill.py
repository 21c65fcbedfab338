"""Prefect flow ``backfill``: months in order, each a ``monthly_report`` subflow.

Same plan as ``mobiterra backfill`` (mobiterra.backfill): the baseline of each month is
the previous month, a fixed one or none; months without events are skipped with a note.
``python -m flows.backfill`` takes the same flags as the command.
"""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import records
from flows.monthly import RETRY_DELAYS_S, _spark, monthly_report
from mobiterra import backfill as plan
from mobiterra.config import RunConfig


@task(cache_policy=NO_CACHE, retries=len(RETRY_DELAYS_S), retry_delay_seconds=RETRY_DELAYS_S)
def count_events(cfg: RunConfig) -> dict[str, int]:
    """Input rows per local month (one Spark pass), to skip months without events."""
    return plan.count_events_by_month(_spark(cfg), cfg.events, cfg.timezone)


@flow(name="backfill", log_prints=True)
def backfill(cfg: RunConfig, first: str, last: str, baseline: str = plan.PREVIOUS) -> list[dict]:
    """Run ``first`` .. ``last`` in order; returns one record per month."""
    logger = get_run_logger()
    months = plan.months_between(first, last)
    policy = plan.parse_baseline(baseline)
    planned = plan.plan_backfill(months, policy, count_events(cfg), str(cfg.events))
    done: list[dict] = []
    try:
        plan.run_backfill(cfg, planned, monthly_report, logger.info, done)
    finally:
        # the record lists what is done even when a month failed (its own record names
        # the stage); months after a failure are not started
        attempted = {r["month"] for r in done}
        rest = [
            {
                "month": p.month,
                "baseline": p.baseline,
                "note": p.note,
                "status": "not run",
                "path": None,
            }
            for p in planned
            if p.month not in attempted
        ]
        create_markdown_artifact(
            records.backfill_markdown(first, last, str(policy), done + rest),
            key=records.artifact_key("backfill", f"{first}-{last}"),
            description=f"mobiterra backfill {first} .. {last}",
        )
    for line in plan.summary_lines(done):
        logger.info(line)
    return done


def main(argv: list[str] | None = None) -> int:
    from mobiterra.cli import build_parser, quiet_library_logs
    from mobiterra.errors import InputError

    quiet_library_logs()
    args = build_parser().parse_args(["backfill", *(sys.argv[1:] if argv is None else argv)])
    try:
        from mobiterra.cli import config_from_args

        if args.month or args.baseline_month:
            raise InputError("backfill takes --from/--to and --baseline")
        backfill(config_from_args(args), args.first, args.last, args.baseline)
    except InputError as e:
        print(f"mobiterra: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
