"""One benchmark size in a fresh process: the monthly pipeline (in process, stage by stage),
then the DuckDB baseline, then the equality check of their shared tables.

``python -m bench.one_size --data DIR --json OUT.json``. bench/run.py calls it per size
so each size gets its own JVM and clean memory peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from bench import data as bench_data
from bench.measure import STAGE_PROPERTY, Sampler, event_log_metrics

BENCH_KEY = "mobiterra-bench-synthetic"  # synthetic data only: no real people
SHARED = ("residents", "residence_shift", "present_population", "od_trips")
KEYS = {
    "residents": ["resolution", "h3_cell"],
    "residence_shift": ["resolution", "origin_cell", "destination_cell"],
    "present_population": ["resolution", "h3_cell", "period_start", "period"],
    "od_trips": ["resolution", "origin_cell", "destination_cell", "period_start", "period"],
}
VALUES = {
    "residents": ["residents"],
    "residence_shift": ["users"],
    "present_population": ["users"],
    "od_trips": ["trips", "users"],
}


def warm_page_cache(folder: Path) -> int:
    """Read every input file once so the pipeline and the baseline both start warm."""
    n = 0
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.suffix in (".parquet", ".csv")) and "truth" not in p.parts:
            n += len(p.read_bytes())
    return n


def keep_counts(work_root: Path, keep: Path) -> None:
    """Hard-link the pre-gate count tables (work/*/counts-<table>) before the run's
    cleanup removes its work folder."""
    for src in work_root.glob("*/counts-*"):
        dst = keep / src.name
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                os.link(f, dst / f.name)


def write_label(path) -> str:
    """What a pipeline write is, from its target: counts-<t> (aggregation), marked-<t>
    (the gate), the staging month's tables (publication), work tables by kind."""
    name = Path(str(path)).name
    if name.startswith("counts-"):
        return f"counts:{name[7:]}"
    if name.startswith("marked-"):
        return f"gate:{name[7:]}"
    for kind in ("events", "homes", "stays", "trips"):
        if name.startswith(f"{kind}-"):
            return kind
    return f"write:{Path(str(path)).parent.name}/{name}"


def probe_writes(session, state: dict, writes: dict) -> None:
    """Patch DataFrameWriter.parquet so each write's Spark jobs are labelled
    ``<stage>|<what>`` in the event log and its wall time is added to ``writes``."""
    from pyspark.sql.readwriter import DataFrameWriter

    original = DataFrameWriter.parquet

    def parquet(self, path, *args, **kwargs):
        stage = state.get("stage") or "other"
        label = f"{stage}|{write_label(path)}"
        session.sparkContext.setLocalProperty(STAGE_PROPERTY, label)
        t0 = time.perf_counter()
        try:
            return original(self, path, *args, **kwargs)
        finally:
            writes[label] = round(writes.get(label, 0.0) + time.perf_counter() - t0, 3)
            session.sparkContext.setLocalProperty(STAGE_PROPERTY, stage)

    DataFrameWriter.parquet = parquet


def bench_call(
    session, sampler: Sampler, calls: dict, outputs: dict, state: dict, work_root: Path, keep: Path
):
    """A pipeline ``Call`` that times each stage, labels its Spark jobs and memory samples,
    and keeps the count tables (the copy is timed apart and not charged to the stage)."""

    def call(name, fn, *args, spark: bool = True):
        state["stage"] = name
        session.sparkContext.setLocalProperty(STAGE_PROPERTY, name)
        with sampler.phase(name) as rec:
            out = fn(session, *args) if spark else fn(*args)
        outputs[name] = out
        t0 = time.perf_counter()
        keep_counts(work_root, keep)
        rec["keep_counts_s"] = round(time.perf_counter() - t0, 3)
        prev = calls.get(name)
        if prev:  # a stage called twice (e.g. per month): add up
            rec["seconds"] += prev["seconds"]
        calls[name] = rec
        session.sparkContext.setLocalProperty(STAGE_PROPERTY, None)
        state["stage"] = None
        return out

    return call


def read_counts(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def normalized(df: pd.DataFrame, table: str) -> pd.DataFrame:
    cols = KEYS[table] + VALUES[table]
    out = df[cols].copy()
    for c in cols:
        if c == "period_start":
            out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[us, UTC]")
        elif c != "period":
            out[c] = out[c].astype("int64")
    return out.sort_values(KEYS[table]).reset_index(drop=True)


def compare(pipeline: pd.DataFrame, baseline: pd.DataFrame, table: str) -> dict:
    a, b = normalized(pipeline, table), normalized(baseline, table)
    merged = a.merge(b, on=KEYS[table], how="outer", suffixes=("_pipeline", "_duckdb"))
    differ = pd.Series(False, index=merged.index)
    for v in VALUES[table]:
        differ |= merged[f"{v}_pipeline"].ne(merged[f"{v}_duckdb"])
    return {
        "rows_pipeline": len(a),
        "rows_duckdb": len(b),
        "rows_differing": int(differ.sum()),
        "equal": bool(len(a) == len(b) and not differ.any()),
        "examples": merged[differ].head(5).astype(str).to_dict("records"),
    }


def input_rows(events: Path) -> int:
    """Rows of a Parquet dataset, from the files' footers."""
    import pyarrow.dataset as ds

    return ds.dataset(events, format="parquet", partitioning="hive").count_rows()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--duckdb-threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--daily-only",
        action="store_true",
        help="publish the baseline's tables only: present_population and od_trips for the "
        "day period, no od_home_work (the gates and the writes stay)",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("MOBITERRA_PSEUDONYM_KEY", BENCH_KEY)

    folder: Path = args.data
    root = bench_data.BENCH_STATE / "runs" / folder.name
    shutil.rmtree(root, ignore_errors=True)
    work_root, keep, out_dir = root / "work", root / "counts", root / "out"
    keep.mkdir(parents=True)
    log_dir = Path(tempfile.mkdtemp(prefix="mobiterra-eventlog-"))
    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir=file://{log_dir} "
        "--conf spark.eventLog.compress=false --conf spark.eventLog.rolling.enabled=false "
        "pyspark-shell"
    )
    result: dict = {
        "data": str(folder),
        "simulation": json.loads((folder / "simulation.json").read_text()),
        "input_bytes_warmed": warm_page_cache(folder),
        "cpus": os.cpu_count(),
    }

    from jobs.pipeline import run_month
    from mobiterra.config import OdParams, PresenceParams, RunConfig
    from mobiterra.progress import Progress
    from mobiterra.spark import engine_session

    sampler = Sampler().start()
    daily = {
        "presence": PresenceParams(periods=["day"]),
        "od": OdParams(periods=["day"], home_work=False),
    }
    cfg = RunConfig(
        events=folder / "events",
        cells=folder / "cells.csv",
        # the simulated world's census grid, as a real run passes INSEE's (older caches lack it)
        population=(folder / "population.csv") if (folder / "population.csv").exists() else None,
        month=bench_data.MONTH,
        baseline_month=bench_data.BASELINE_MONTH,
        out=out_dir,
        work_dir=work_root,
        quiet=True,
        **(daily if args.daily_only else {}),
    )
    result["periods"] = {"present_population": cfg.presence.periods, "od_trips": cfg.od.periods}
    result["od_home_work"] = cfg.od.home_work
    with sampler.phase("jvm_start") as jvm:
        spark = engine_session(cfg.engine)
    calls: dict = {}
    outputs: dict = {}
    state: dict = {}
    writes: dict = {}
    probe_writes(spark, state, writes)
    progress = Progress(quiet=True)
    with sampler.phase("pipeline") as whole:
        _, manifest = run_month(
            cfg, bench_call(spark, sampler, calls, outputs, state, work_root, keep), progress
        )
    spark.stop()
    kept = sum(c.get("keep_counts_s", 0) for c in calls.values())
    result["jvm_start_s"] = jvm["seconds"]
    result["pipeline"] = {
        "seconds": round(whole["seconds"] - kept, 3),
        "seconds_keeping_counts": round(kept, 3),
        "cpu_s": whole["cpu_s"],
        # events = the input's rows (both months, each ingested by its own stage); the
        # month's manifest counts only what its ingest read (day folders are pruned)
        "rows_read": input_rows(folder / "events"),
        "rows_read_month_ingest": manifest["rows_read"],
        "rows_accepted": manifest["rows_accepted"],
        "users": manifest["users"],
        "users_with_home": manifest["users_with_home"],
        "progress_durations_s": progress.durations(),
        "stages": {name: {**rec, **sampler.summary(name)} for name, rec in calls.items()},
        "writes_s": writes,
        **sampler.summary("pipeline"),
        "tables": {t: v.get("rows_published") for t, v in manifest["tables"].items()},
        "spark": event_log_metrics(log_dir),
    }
    shutil.rmtree(log_dir, ignore_errors=True)
    available = [t for t in SHARED if (keep / f"counts-{t}").exists()]
    result["shared_tables"] = available
    if not args.no_baseline:
        from bench.baseline_duckdb import Baseline
        from jobs.pseudonym import pseudonym_key

        coverage = Path(outputs["coverage"])  # the Parquet the pipeline used
        base = Baseline(
            cfg, cfg.events, coverage, pseudonym_key(cfg.events), threads=args.duckdb_threads
        )
        with sampler.phase("duckdb") as duck:
            tables = base.run(set(available))
        base.close()
        result["duckdb"] = {
            "seconds": duck["seconds"],
            "cpu_s": duck["cpu_s"],
            "threads": args.duckdb_threads,
            "steps_s": base.seconds,
            **sampler.summary("duckdb"),
        }
        result["equality"] = {}
        for t in available:
            pipe = read_counts(keep / f"counts-{t}")
            if "period" in KEYS[t]:
                pipe = pipe[pipe["period"] == "day"]
            result["equality"][t] = compare(pipe, tables[t], t)
    sampler.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
