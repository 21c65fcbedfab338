"""Where the notebooks find a month of mobiterra outputs — and make one on a fresh clone.

Each notebook starts with::

    import sample_run
    month_dir = sample_run.month_dir()

- ``$MOBITERRA_OUT`` (default ``out``; a relative path is taken from the repository root)
  holding ``2020-04/manifest.json``, as ``make run`` leaves it: used as is;
- otherwise the pipeline runs on ``data_samples/`` into that folder — April 2020 against
  February, scored against the simulator's truth, exactly ``make run`` without Prefect
  (:func:`jobs.pipeline.run`). A few minutes on 2 cores, once.

The working directory becomes the repository root (as for ``make run``), so relative
paths such as the caches in ``.state/`` are the pipeline's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT_ENV = "MOBITERRA_OUT"
SAMPLE = ROOT / "data_samples"
TRUTH = SAMPLE / "truth"
MONTH = "2020-04"
BASELINE_MONTH = "2020-02"


def out_dir() -> Path:
    """The run's output folder: ``$MOBITERRA_OUT``, default ``out`` (repository root)."""
    out = Path(os.environ.get(OUT_ENV) or "out")
    return out if out.is_absolute() else ROOT / out


def month_dir(month: str = MONTH) -> Path:
    """``OUT/MONTH`` of a finished run; runs the sample pipeline first when it is missing."""
    os.chdir(ROOT)
    folder = out_dir() / month
    if (folder / "manifest.json").exists():
        print(f"outputs: {folder}")
    else:
        if month != MONTH:
            raise FileNotFoundError(
                f"{folder}/manifest.json not found; only {MONTH} is made from the sample"
            )
        print(f"{folder} has no finished run: running the pipeline on {SAMPLE} (a few minutes)")
        run_sample(out_dir())
    manifest = json.loads((folder / "manifest.json").read_text())
    print(f"run of {manifest['created_at']}, code {manifest['code_version']}, k = {manifest['k']}")
    return folder


def run_sample(out: Path) -> Path:
    """``make run`` without Prefect: jobs.pipeline.run on the bundled sample into ``out``."""
    from jobs.pipeline import run
    from mobiterra.config import load_config
    from mobiterra.spark import engine_session

    cfg = load_config(
        None,
        {
            "events": str(SAMPLE / "events.parquet"),
            "cells": str(SAMPLE / "cells.csv"),
            "population": str(SAMPLE / "population.csv"),
            "month": MONTH,
            "baseline_month": BASELINE_MONTH,
            "truth": str(TRUTH),
            "out": str(out),
            "quiet": True,
        },
    )
    spark = engine_session(cfg.engine)
    return run(spark, cfg)


def read_table(month_dir: Path, name: str) -> pd.DataFrame | None:
    """A published table as pandas, or None — with a note saying so — when the run has none.

    Tables come and go with the pipeline's version (``present_population``, ``od_trips``
    and ``diagnostics`` were added after ``residents``): a notebook shows what it finds.
    """
    path = Path(month_dir) / name
    if not path.exists() or not any(path.rglob("*.parquet")):
        print(
            f"note: no '{name}' table in {month_dir} — this run's pipeline did not publish "
            "it (an older run? `make run` refreshes it); the cells using it are skipped."
        )
        return None
    return pd.read_parquet(path)


def read_json(month_dir: Path, name: str) -> dict | None:
    """``manifest.json`` / ``validation.json`` of the month, or None with a note."""
    path = Path(month_dir) / name
    if not path.exists():
        print(f"note: no {name} in {month_dir}; the cells using it are skipped.")
        return None
    return json.loads(path.read_text())
