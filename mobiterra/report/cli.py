"""``mobiterra report``: maps, exports and the page for a finished month (wired into
``mobiterra.cli``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="maps, exports and report/index.html for a finished month",
        description="Read the published tables of OUT/MONTH and write OUT/MONTH/maps/ (PNG, "
        "SVG), OUT/MONTH/exports/ (CSV, GeoJSON, GeoPackage, README.md) and "
        "OUT/MONTH/report/index.html. The baseline month's folder beside it is used when present.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder of the runs")
    p.add_argument("--month", required=True, help="month to report, YYYY-MM")
    p.add_argument("--lang", choices=["fr", "en"], help="language of the page and maps (fr)")
    p.add_argument(
        "--departements", help="départements given their own map, e.g. 75,89 (default: all in data)"
    )
    p.add_argument("--config", type=Path, help="TOML or JSON config file ([report] section)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``report`` from parsed arguments; prints the page path; returns the exit code."""
    from mobiterra.config import load_config
    from mobiterra.errors import InputError
    from mobiterra.report.build import build_report

    cfg = load_config(
        args.config,
        {
            "out": str(args.out),
            "month": args.month,
            "report.lang": args.lang,
            "report.departements": args.departements
            and [d.strip() for d in args.departements.split(",") if d.strip()],
        },
    )
    month_dir = Path(cfg.out) / cfg.month
    if not (month_dir / "manifest.json").exists():
        raise InputError(f"{month_dir}: no finished month here (manifest.json missing)")
    # the baseline of the run is the one in its manifest; config's baseline is not used
    cfg = cfg.model_copy(update={"baseline_month": None})
    summary = build_report(cfg, month_dir)
    if not args.quiet:
        s = summary["seconds"]
        print(
            f"{summary['page']}\n  {len(summary['maps'])} maps, {summary['exports']} export "
            f"files in {s['total']:.1f} s (maps {s['maps']:.1f} s; exports beside them, "
            f"{s['exports_after_maps']:.1f} s more)"
        )
        for note in summary["notes"]:
            print(f"  note: {note}")
    return 0
