"""The ``mobiterra`` command: run, simulate, validate, report."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from mobiterra.errors import InputError


def _resolutions(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"resolutions must be integers like 4,5,6, got {text!r}"
        ) from None


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=Path, help="events: Parquet file/dir or CSV with a header")
    p.add_argument("--cells", type=Path, help="cells: CSV or Parquet")
    p.add_argument(
        "--population",
        type=Path,
        help="population reference for the coverage weights: h3_cell,population or "
        "lat,lon,population (CSV or Parquet; default: INSEE commune populations)",
    )
    p.add_argument("--month", help="month to compute, YYYY-MM")
    p.add_argument("--out", type=Path, help="output folder (DIR/YYYY-MM is written)")
    p.add_argument("--baseline-month", help="compare homes with this month (residence shift)")
    p.add_argument("--k", type=int, help="k-anonymity threshold on distinct users (default 20)")
    p.add_argument("--resolutions", type=_resolutions, help="H3 resolutions, e.g. 4,5,6,7,8")
    p.add_argument("--coverage", choices=["point", "voronoi"], help="coverage strategy")
    p.add_argument("--config", type=Path, help="TOML or JSON config file")
    p.add_argument("--master", help="Spark master URL (default local[*])")
    p.add_argument("--remote", help="Spark Connect URL, e.g. sc://127.0.0.1:15002")
    p.add_argument("--work-dir", type=Path, help="scratch folder for intermediate tables")
    p.add_argument(
        "--keep-work",
        action="store_true",
        default=None,
        help="keep the intermediate tables (pseudonymous keys) in --work-dir for inspection",
    )
    p.add_argument("--truth", type=Path, help="simulator truth folder: score the run against it")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress output (cron)")


def config_from_args(args: argparse.Namespace):
    from mobiterra.config import load_config

    return load_config(
        args.config,
        {
            "events": args.events and str(args.events),
            "cells": args.cells and str(args.cells),
            "population": args.population and str(args.population),
            "month": args.month,
            "out": args.out and str(args.out),
            "baseline_month": args.baseline_month,
            "privacy.k": args.k,
            "resolutions": args.resolutions,
            "coverage.strategy": args.coverage,
            "engine.master": args.master,
            "engine.remote": args.remote,
            "work_dir": args.work_dir and str(args.work_dir),
            "truth": args.truth and str(args.truth),
            "keep_work": args.keep_work,
            "quiet": args.quiet,
        },
    )


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from jobs.pipeline import check_inputs, run
    from mobiterra.spark import engine_session

    check_inputs(cfg)  # fail fast, before the JVM starts
    spark = engine_session(cfg.engine)
    final = run(spark, cfg)
    if cfg.quiet:
        return 0
    print(final)
    return 0


def _optional_subcommands(sub) -> None:
    """Subcommands that live in their own modules (registered if present)."""
    import importlib

    for module in (
        "mobiterra.simulate.cli",
        "mobiterra.validate",
        "mobiterra.audit",
        "mobiterra.report.cli",
        "mobiterra.backfill",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                continue
            raise
        if hasattr(mod, "add_parser"):
            mod.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobiterra",
        description="Privacy-safe mobility statistics on the H3 grid from antenna traces.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the monthly pipeline on events + cells")
    add_run_arguments(run_p)
    run_p.set_defaults(func=cmd_run)
    _optional_subcommands(sub)
    return parser


def quiet_library_logs() -> None:
    """Errors reach the user once, as one line; pyspark's own JSON error logs are muted."""
    import logging

    for name in ("py4j", "pyspark", "DataFrameQueryContextLogger"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    quiet_library_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"mobiterra: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mobiterra: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for users; traceback on demand
        if os.environ.get("MOBITERRA_DEBUG"):
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        print(
            f"mobiterra: failed: {type(e).__name__}: {first} (MOBITERRA_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
