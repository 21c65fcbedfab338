"""The attacker against a release at scale: a simulated France of >= 10 M events per month
(bench.data, cached), released for February alone and for April against February, then
``mobiterra audit`` on both months (every attack of mobiterra.attacks, raw and keyed ids).

``make audit-scale`` runs it; results in .state/audit-scale/results.json. Exit code 1 if
any attack finds a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.data import BASELINE_MONTH, MONTH, ensure_data

STATE = Path(".state/audit-scale")
EVENTS = 21_000_000  # both months: ~10.1 M rows in February, ~10.7 M in April


def _mobiterra(*args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mobiterra.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=EVENTS, help="events of both months")
    p.add_argument("--k", type=int, default=20)
    args = p.parse_args(argv)
    data, summary = ensure_data(args.events)
    out = STATE / f"out-{args.events}"
    # a key of this benchmark only: the simulated ids are not the sample's
    env = {**os.environ, "MOBITERRA_PSEUDONYM_KEY": os.environ.get(
        "MOBITERRA_PSEUDONYM_KEY", "audit-scale-key")}  # fmt: skip
    common = ["--events", str(data / "events"), "--cells", str(data / "cells.csv")]
    if (data / "population.csv").exists():
        common += ["--population", str(data / "population.csv")]
    common += ["--out", str(out), "--work-dir", str(STATE / "work"), "--k", str(args.k)]
    results = {"events": summary["events"], "users": summary["users"], "k": args.k}
    for month, extra in ((BASELINE_MONTH, []), (MONTH, ["--baseline-month", BASELINE_MONTH])):
        t0 = time.perf_counter()
        run = _mobiterra("run", *common, "--month", month, *extra, "--quiet", env=env)
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return run.returncode
        manifest = json.loads((out / month / "manifest.json").read_text())
        audit_args = ["--out", str(out), "--month", month, "--k", str(args.k)]
        audit_args += ["--events", str(data / "events"), *extra]
        audited = _mobiterra("audit", *audit_args, env=env)
        results[month] = {
            "rows_accepted": manifest["rows_accepted"],
            "run_s": round(time.perf_counter() - t0, 1),
            "tables": manifest["tables"],
            "attacks": json.loads(audited.stdout) if audited.stdout else audited.stderr,
            "audit_exit_code": audited.returncode,
        }
        print(f"{month}: {manifest['rows_accepted']:,} events, audit exit {audited.returncode}")
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results in {STATE / 'results.json'}")
    return 1 if any(results[m]["audit_exit_code"] for m in (BASELINE_MONTH, MONTH)) else 0


if __name__ == "__main__":
    sys.exit(main())
