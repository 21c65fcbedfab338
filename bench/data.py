"""Benchmark inputs: the bundled sample's synthetic France scaled to N events, cached.

The command is the one that made ``data_samples/`` (see data_samples/README.md) with every
département's sampling fraction multiplied so the two months hold about N events. The
data lands in ``.state/bench/data/<hash of the command>/``; a rerun with the same command
finds it there and skips generation.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_STATE = Path(".state/bench")
SEED = 2020
SAMPLE_EVENTS = 2_734_789  # events in data_samples/ (its README)
SAMPLE_FRACTIONS = {  # data_samples/README.md
    "75": 0.0038,
    "69": 0.0012,
    "89": 0.0048,
    "58": 0.016,
    "46": 0.0109,
    "15": 0.0156,
    "32": 0.0099,
}
MONTH = "2020-04"
BASELINE_MONTH = "2020-02"


def simulate_command(n_events: int, out: Path) -> list[str]:
    """``mobiterra simulate`` arguments for about ``n_events`` events in Feb + Apr 2020."""
    scale = n_events / SAMPLE_EVENTS
    fractions = ",".join(f"{d}={f * scale:.6g}" for d, f in SAMPLE_FRACTIONS.items())
    return [
        "simulate",
        "--departements",
        ",".join(SAMPLE_FRACTIONS),
        "--start",
        "2020-02-01",
        "--end",
        "2020-04-30",
        "--months",
        f"{BASELINE_MONTH},{MONTH}",
        "--fraction",
        fractions,
        "--activity",
        "2",
        "--update-hours",
        "6",
        "--seed",
        str(SEED),
        "--no-truth-stays",
        "--out",
        str(out),
    ]


def ensure_data(n_events: int, log=print) -> tuple[Path, dict]:
    """(folder holding events/ and cells.csv, simulation summary); simulates on a miss."""
    key = hashlib.sha256(json.dumps(simulate_command(n_events, Path("OUT"))).encode())
    folder = BENCH_STATE / "data" / f"{n_events}-{key.hexdigest()[:12]}"
    done = folder / "simulation.json"
    if not done.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "mobiterra.cli", *simulate_command(n_events, tmp)]
        log(f"simulating ~{n_events:,} events: {' '.join(cmd[3:])}")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        log(f"  done in {time.perf_counter() - t0:.0f} s")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder, json.loads(done.read_text())
