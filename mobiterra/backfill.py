"""``mobiterra backfill``: run a span of months in order, each against a baseline.

The baseline of a month is the month before it (``previous``, the default), one fixed
month (``fixed:YYYY-MM``) or none. A month with no events at all in the input is skipped
with a note (history has gaps: a backfill over an archive should not stop at the first
one); a month whose previous month has no events runs without a baseline (no
``residence_shift``), also with a note. A fixed baseline without events stops the backfill
before any month runs, and any other failure stops it at that month: months already done
stay committed, later ones are not started.

The plan and the loop are shared by the command (stages called directly, like
``mobiterra run``) and the Prefect flow ``flows.backfill`` (each month a ``monthly_report``
subflow).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mobiterra.config import Month, RunConfig, parse_month
from mobiterra.errors import InputError

PREVIOUS = "previous"
NONE = "none"
FIXED_PREFIX = "fixed:"


@dataclass(frozen=True)
class BaselinePolicy:
    """Which month a month is compared with: the one before, a fixed one, or none."""

    kind: str  # PREVIOUS | "fixed" | NONE
    month: str | None = None

    def for_month(self, month: str) -> str | None:
        if self.kind == PREVIOUS:
            return Month(month).previous()
        if self.kind == NONE or self.month == month:
            return None  # the fixed baseline month itself has nothing to compare with
        return self.month

    def __str__(self) -> str:
        return f"{FIXED_PREFIX}{self.month}" if self.kind == "fixed" else self.kind


def parse_baseline(text: str) -> BaselinePolicy:
    """``previous``, ``none`` or ``fixed:YYYY-MM``."""
    text = (text or "").strip()
    if text in (PREVIOUS, NONE):
        return BaselinePolicy(text)
    if text.startswith(FIXED_PREFIX):
        return BaselinePolicy("fixed", parse_month(text[len(FIXED_PREFIX) :]))
    raise InputError(f"baseline {text!r} is not one of: previous, none, fixed:YYYY-MM")


def months_between(first: str, last: str) -> list[Month]:
    """Calendar months from ``first`` to ``last`` inclusive."""
    m, end = parse_month(first), parse_month(last)
    if m > end:
        raise InputError(f"--from {first} is after --to {last}")
    out = [m]
    while out[-1] != end:
        out.append(out[-1].next())
    return out


@dataclass(frozen=True)
class PlannedMonth:
    month: str
    baseline: str | None
    skip: bool = False
    note: str = ""


def plan_backfill(
    months: list[Month], policy: BaselinePolicy, events_per_month: dict[str, int], events: str
) -> list[PlannedMonth]:
    """Decide, before anything runs, what each month does (see the module docstring)."""
    if policy.kind == "fixed" and not events_per_month.get(policy.month, 0):
        raise InputError(f"{events}: fixed baseline month {policy.month} has no events")
    plan = []
    for m in months:
        if not events_per_month.get(m, 0):
            plan.append(PlannedMonth(m, None, skip=True, note=f"no events in {events}; skipped"))
            continue
        baseline = policy.for_month(m)
        note = ""
        if baseline is not None and not events_per_month.get(baseline, 0):
            note = f"baseline {baseline} has no events: run without residence_shift"
            baseline = None
        plan.append(PlannedMonth(m, baseline, note=note))
    return plan


def count_events_by_month(spark, events: str | Path, timezone: str) -> dict[str, int]:
    """Input rows per local calendar month (rows with an unparseable time are not counted)."""
    from pyspark.sql import functions as F

    from jobs.ingest import with_parsed_timestamp
    from jobs.readers import read_events
    from mobiterra import columns as C

    month_col = F.date_format(F.from_utc_timestamp(F.col(C.TIMESTAMP), timezone), "yyyy-MM")
    rows = (
        with_parsed_timestamp(read_events(spark, Path(events)))
        .filter(F.col(C.TIMESTAMP).isNotNull())
        .groupBy(month_col.alias("month"))
        .count()
        .collect()
    )
    return {r["month"]: int(r["count"]) for r in rows}


def month_config(cfg: RunConfig, planned: PlannedMonth) -> RunConfig:
    return RunConfig.model_validate(
        {**cfg.model_dump(), "month": planned.month, "baseline_month": planned.baseline}
    )


def run_backfill(
    cfg: RunConfig,
    plan: list[PlannedMonth],
    run_month: Callable[[RunConfig], Path | str],
    say: Callable[[str], None] = print,
    records: list[dict] | None = None,
) -> list[dict]:
    """Run the planned months in order; returns one record per month (done, skipped, or
    the failed one, then the exception propagates). ``records`` is filled as it goes."""
    records = [] if records is None else records
    for planned in plan:
        base = {"month": planned.month, "baseline": planned.baseline, "note": planned.note}
        if planned.skip:
            say(f"{planned.month}: {planned.note}")
            records.append({**base, "status": "skipped", "path": None})
            continue
        against = f" against {planned.baseline}" if planned.baseline else ""
        say(f"{planned.month}: running{against}" + (f" ({planned.note})" if planned.note else ""))
        try:
            path = run_month(month_config(cfg, planned))
        except BaseException:
            records.append({**base, "status": "failed", "path": None})
            raise
        records.append({**base, "status": "done", "path": str(path)})
    return records


def summary_lines(records: list[dict]) -> list[str]:
    done = [r["month"] for r in records if r["status"] == "done"]
    skipped = [r["month"] for r in records if r["status"] == "skipped"]
    lines = [f"backfill: {len(done)} month(s) done" + (f" ({', '.join(done)})" if done else "")]
    if skipped:
        lines.append(f"  skipped (no events): {', '.join(skipped)}")
    return lines


# --- command line ---------------------------------------------------------------------


def add_parser(sub) -> None:
    from mobiterra.cli import add_run_arguments

    p = sub.add_parser(
        "backfill",
        help="run a span of months in order (each against the previous or a fixed month)",
        description=__doc__.split("\n\n")[1].replace("``", ""),
    )
    add_run_arguments(p)
    for action in p._actions:  # one month's flags: replaced by --from/--to/--baseline
        if action.dest in ("month", "baseline_month"):
            action.help = argparse.SUPPRESS
    p.add_argument("--from", dest="first", required=True, help="first month, YYYY-MM")
    p.add_argument("--to", dest="last", required=True, help="last month, YYYY-MM")
    p.add_argument(
        "--baseline",
        default=PREVIOUS,
        help="previous (default), none, or fixed:YYYY-MM",
    )
    p.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    from jobs import pipeline
    from mobiterra.cli import config_from_args
    from mobiterra.progress import Progress
    from mobiterra.spark import engine_session

    if args.month or args.baseline_month:
        raise InputError("backfill takes --from/--to and --baseline, not --month/--baseline-month")
    months = months_between(args.first, args.last)
    policy = parse_baseline(args.baseline)
    cfg = config_from_args(args)
    pipeline.check_inputs(cfg.model_copy(update={"month": months[0]}))
    spark = engine_session(cfg.engine)
    counts = count_events_by_month(spark, cfg.events, cfg.timezone)
    plan = plan_backfill(months, policy, counts, str(cfg.events))
    say = Progress(quiet=cfg.quiet).say
    # a fresh Progress per month: each manifest holds its own month's durations
    records = run_backfill(
        cfg, plan, lambda month_cfg: pipeline.run(spark, month_cfg, Progress(quiet=cfg.quiet)), say
    )
    for line in summary_lines(records):
        say(line)
    return 0
