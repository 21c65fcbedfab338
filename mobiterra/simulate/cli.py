"""``mobiterra simulate``: the command-line hook (wired into ``mobiterra.cli``)."""

from __future__ import annotations

import argparse
import json

from mobiterra.simulate.core import (
    DEFAULT_BLOCK_USERS,
    DEFAULT_FRACTION,
    DEFAULT_MARKET_SHARE,
    simulate,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="synthetic antenna events over real French communes, with ground truth",
        description="Simulate one operator's subscribers over real French communes "
        "(data: INSEE, IGN) and write events/, cells.csv, population.csv and truth/ into --out.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--departements", help="département codes, e.g. 75,89,2A")
    where.add_argument("--bbox", help="lon_min,lat_min,lon_max,lat_max (WGS84)")
    where.add_argument("--all", action="store_true", help="all of metropolitan France")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last day (inclusive), YYYY-MM-DD")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--fraction",
        default=str(DEFAULT_FRACTION),
        help="share of subscribers simulated: 0.01, or per département: "
        "75=0.002,89=0.05,default=0.01",
    )
    p.add_argument("--market-share", type=float, default=DEFAULT_MARKET_SHARE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scenario", default=None, help="scenario TOML/JSON (default: 2020 lockdown; 'none': none)"
    )
    p.add_argument("--months", default=None, help="write only these months, e.g. 2020-02,2020-04")
    p.add_argument(
        "--activity", type=float, default=None, help="mean data/call events a day per user"
    )
    p.add_argument("--update-hours", default=None, help="hours between location updates, e.g. 4,6")
    p.add_argument("--workers", type=int, default=2, help="dask worker processes (1 = in process)")
    p.add_argument("--block-users", type=int, default=DEFAULT_BLOCK_USERS)
    p.add_argument(
        "--no-truth-stays", action="store_true", help="skip truth stays/trips (large runs)"
    )
    p.add_argument(
        "--single-file", action="store_true", help="merge events into OUT/events.parquet"
    )
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``simulate`` from parsed arguments; prints the summary, returns the exit code."""
    bbox = tuple(float(v) for v in args.bbox.split(",")) if args.bbox else None
    if bbox is not None and len(bbox) != 4:
        raise SystemExit(f"--bbox needs lon_min,lat_min,lon_max,lat_max, got {args.bbox!r}")
    summary = simulate(
        territory=args.departements.split(",") if args.departements else None,
        start=args.start,
        end=args.end,
        out_dir=args.out,
        seed=args.seed,
        market_share=args.market_share,
        sample_fraction=args.fraction,
        scenario=args.scenario,
        bbox=bbox,
        months=args.months.split(",") if args.months else None,
        activity_per_day=args.activity,
        update_hours=tuple(float(h) for h in args.update_hours.split(","))
        if args.update_hours
        else None,
        workers=args.workers,
        block_users=args.block_users,
        truth_stays=not args.no_truth_stays,
        single_file=args.single_file,
    )
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m mobiterra.simulate.cli simulate ...``."""
    parser = argparse.ArgumentParser(prog="mobiterra")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
