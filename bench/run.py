"""``make bench``: simulate 1 M, 10 M and 30 M events (cached), run the monthly pipeline
and the DuckDB baseline on each (bench/one_size.py, one process per size), and write
``.state/bench/results.json`` and the table ``bench/RESULTS.md``.

A benchmark, not a test: nothing here asserts a time. Run it on a quiet machine; the load
average seen during each measurement is in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import data as bench_data

SIZES = (1_000_000, 10_000_000, 30_000_000)
# Stages that do not make the four shared tables (expansion factors, the daily trips
# between départements, territorial diagnostics, maps and exports, scoring; coverage is
# a cached lookup, shared as input).
NOT_SHARED = ("coverage", "expansion", "od-departements", "diagnostics", "report", "validate")
RESULTS_MD = Path(__file__).with_name("RESULTS.md")


def run_size(n: int, no_baseline: bool, daily_only: bool = False) -> dict:
    """One size in a process of its own; ``daily_only``: the pipeline publishing the
    baseline's tables only (the daily periods of present_population and od_trips, no
    od_home_work)."""
    folder, _ = bench_data.ensure_data(n, log=lambda m: print(m, file=sys.stderr))
    out = bench_data.BENCH_STATE / f"size-{n}{'-daily' if daily_only else ''}.json"
    cmd = [sys.executable, "-m", "bench.one_size", "--data", str(folder), "--json", str(out)]
    if no_baseline:
        cmd.append("--no-baseline")
    if daily_only:
        cmd.append("--daily-only")
    what = ", daily periods only" if daily_only else ""
    print(f"size {n:,}{what}: {folder}  (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return {"target_events": n, **json.loads(out.read_text())}


def shared_seconds(pipeline: dict) -> float:
    """Pipeline time without the stages that make no shared table."""
    return pipeline["seconds"] - sum(
        s["seconds"] for name, s in pipeline["stages"].items() if name in NOT_SHARED
    )


def derived(r: dict) -> dict:
    """Throughput and ratios of one size."""
    p = r["pipeline"]
    shared_s = shared_seconds(p)
    d = {
        "events": p["rows_read"],
        "events_per_s": round(p["rows_read"] / p["seconds"]),
        "pipeline_shared_s": round(shared_s, 3),
    }
    if "duckdb" in r:
        d["ratio_whole_vs_duckdb"] = round(p["seconds"] / r["duckdb"]["seconds"], 2)
        d["ratio_shared_vs_duckdb"] = round(shared_s / r["duckdb"]["seconds"], 2)
        d["tables_equal"] = all(e["equal"] for e in r["equality"].values())
    daily = r.get("daily_only")
    if daily and "duckdb" in daily:
        d["daily_only_shared_s"] = round(shared_seconds(daily["pipeline"]), 3)
        d["daily_only_duckdb_s"] = daily["duckdb"]["seconds"]
        d["ratio_daily_only_vs_duckdb"] = round(
            d["daily_only_shared_s"] / daily["duckdb"]["seconds"], 2
        )
        d["daily_only_tables_equal"] = all(e["equal"] for e in daily["equality"].values())
    return d


def targets(by_n: dict) -> list[str]:
    """The issue's targets (2 cores) against what was measured."""
    out = ["Targets (issue 9, this machine):", ""]
    big = by_n.get(30_000_000)
    if big:
        p, d = big["pipeline"], big["derived"]
        rss = (p.get("peak_driver_rss_gib") or 0) + (p.get("peak_jvm_rss_gib") or 0)
        out.append(f"- throughput at 30 M >= 250,000 events/s: {d['events_per_s']:,}")
        if "ratio_shared_vs_duckdb" in d:
            out.append(
                f"- pipeline / DuckDB <= 2.0 at 30 M: {d['ratio_shared_vs_duckdb']} (shared "
                f"stages), {d['ratio_whole_vs_duckdb']} (whole run)"
            )
        if "ratio_daily_only_vs_duckdb" in d:
            out.append(
                f"- the same with the daily periods only (the baseline's tables): "
                f"{d['ratio_daily_only_vs_duckdb']} ({d['daily_only_shared_s']:.1f} s against "
                f"DuckDB's {d['daily_only_duckdb_s']:.1f} s in that run)"
            )
        out.append(f"- peak memory < 6 GiB at 30 M: {rss:.2f} GiB (driver + JVM peaks)")
    if 10_000_000 in by_n and big:
        ratio = big["pipeline"]["seconds"] / by_n[10_000_000]["pipeline"]["seconds"]
        out.append(f"- time(30 M) / time(10 M) <= 3.3: {ratio:.2f}")
    return out


def _daily(d: dict) -> str:
    if "ratio_daily_only_vs_duckdb" not in d:
        return "–"
    return (
        f"{d['daily_only_shared_s']:.1f}, {d['daily_only_duckdb_s']:.1f}, "
        f"{d['ratio_daily_only_vs_duckdb']}"
        + ("" if d["daily_only_tables_equal"] else " (tables differ)")
    )


def _gib(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(results: dict) -> str:
    runs = results["runs"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {results['created_at']} on {results['machine']} by `make bench` "
        "(bench/run.py). Monthly pipeline for 2020-04 with baseline month 2020-02 on the "
        "simulated France of data_samples/ scaled up (bench/data.py); events = rows of "
        "the input (both months: each month's ingest reads its own day folders, the "
        "others pruned). Times exclude the JVM start (its own column). The DuckDB baseline "
        "(bench/baseline_duckdb.py) computes residents, residence_shift and the daily "
        "present_population and od_trips the pipeline publishes; its tables are checked "
        "equal to the pipeline's pre-gate counts first. `shared` = pipeline time without "
        f"the stages that make no shared table ({', '.join(NOT_SHARED)}). `daily only`: "
        "a second run of the size, in its own process, publishing the baseline's tables "
        "only (present_population and od_trips for the day period, no od_home_work; the "
        "gates and the writes stay): its shared seconds against its own DuckDB run.",
        "",
        "| events | JVM start s | pipeline s | events/s | shared s | DuckDB s "
        "| pipeline/DuckDB (whole, shared) | daily only: shared s, DuckDB s, ratio | equal "
        "| peak driver GiB | peak JVM GiB | DuckDB peak driver GiB | load (mean, max) |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---|",
    ]
    for r in runs:
        p, d, duck = r["pipeline"], r["derived"], r.get("duckdb", {})
        lines.append(
            f"| {d['events']:,} | {r['jvm_start_s']:.1f} | {p['seconds']:.1f} "
            f"| {d['events_per_s']:,} | {d['pipeline_shared_s']:.1f} "
            f"| {duck.get('seconds', float('nan')):.1f} "
            f"| {d.get('ratio_whole_vs_duckdb', '–')}, {d.get('ratio_shared_vs_duckdb', '–')} "
            f"| {_daily(d)} "
            f"| {', '.join(t for t, e in r.get('equality', {}).items() if e['equal']) or '–'} "
            f"| {_gib(p.get('peak_driver_rss_gib'))} | {_gib(p.get('peak_jvm_rss_gib'))} "
            f"| {_gib(duck.get('peak_driver_rss_gib'))} "
            f"| {p.get('load_1min_mean')}, {p.get('load_1min_max')} |"
        )
    by_n = {r["target_events"]: r for r in runs}
    lines += ["", *targets(by_n), "", "What was changed and what limits: docs/performance.md."]
    for r in runs:
        p = r["pipeline"]
        spark = p["spark"]["by_pipeline_stage"]
        lines += [
            "",
            f"## {p['rows_read']:,} events: per stage",
            "",
            "| stage | s | events/s | peak driver GiB | peak JVM GiB | shuffle write MB "
            "| spill MB | executor s | load mean |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in p["stages"].items():
            m = spark.get(name, {})
            eps = f"{p['rows_read'] / s['seconds']:,.0f}" if s["seconds"] > 0.05 else "–"
            lines.append(
                f"| {name} | {s['seconds']:.1f} | {eps} | {_gib(s.get('peak_driver_rss_gib'))} "
                f"| {_gib(s.get('peak_jvm_rss_gib'))} "
                f"| {m.get('shuffle_write_bytes', 0) / 1e6:,.1f} "
                f"| {m.get('spill_disk_bytes', 0) / 1e6:,.1f} "
                f"| {m.get('executor_run_s', 0):,.1f} | {s.get('load_1min_mean')} |"
            )
        if "duckdb" in r:
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["duckdb"]["steps_s"].items())
            lines += ["", f"DuckDB ({r['duckdb']['threads']} threads): {steps}."]
        daily = r.get("daily_only")
        if daily:
            stages = ", ".join(
                f"{k} {v['seconds']:.1f} s" for k, v in daily["pipeline"]["stages"].items()
            )
            lines += ["", f"Daily periods only ({daily['pipeline']['seconds']:.1f} s): {stages}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument(
        "--no-daily-only",
        action="store_true",
        help="skip the second run of each size with the daily periods only",
    )
    ap.add_argument("--json", type=Path, default=bench_data.BENCH_STATE / "results.json")
    ap.add_argument("--markdown", type=Path, default=RESULTS_MD)
    args = ap.parse_args(argv)
    runs = []
    for n in (int(float(s)) for s in args.sizes.split(",")):
        r = run_size(n, args.no_baseline)
        if not (args.no_baseline or args.no_daily_only):
            r["daily_only"] = run_size(n, False, daily_only=True)
        r["derived"] = derived(r)
        runs.append(r)
        d = r["derived"]
        print(
            f"  {d['events']:,} events: pipeline {r['pipeline']['seconds']:.1f} s "
            f"({d['events_per_s']:,} events/s), JVM start {r['jvm_start_s']:.1f} s"
            + (
                f", DuckDB {r['duckdb']['seconds']:.1f} s, ratio {d['ratio_shared_vs_duckdb']}"
                f" (shared), equal {d['tables_equal']}"
                if "duckdb" in r
                else ""
            ),
            file=sys.stderr,
        )
    results = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    args.markdown.write_text(markdown(results))
    print(f"results: {args.json} and {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
