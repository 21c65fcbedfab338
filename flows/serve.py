"""Serve ``monthly_report`` on its monthly cron: ``make serve`` or ``python -m flows.serve``.

The deployment ``previous_month_report/monthly_report`` runs at 03:00 Europe/Paris on the
1st of every month (``0 3 1 * *``); each run computes *at run time* the month before its
scheduled start (in Europe/Paris: a run due on 1 March 00:30 Paris is still on 29 February
in UTC) and runs ``monthly_report`` for it, against the month before that by default.

``--start-server`` starts a real ``prefect server start`` first (its SQLite database
lives in ``$PREFECT_HOME``, ``.state/prefect`` under make), waits for its health check,
serves, and stops the server on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import flow, serve
from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.monthly import monthly_report
from mobiterra.backfill import parse_baseline

DEPLOYMENT = "monthly_report"
FLOW = "previous_month_report"
# 03:00 on the 1st (the operations contract). The month's last night runs until 06:00 on
# the 1st (ingest reads that tail), so a 03:00 run sees half of it, and late events not at
# all; one night in ~30 barely moves usual residences, and a rerun later that day
# replaces the month atomically (docs/operations.md).
CRON = "0 3 1 * *"
TIMEZONE = "Europe/Paris"
DEFAULT_PORT = 4200
HEALTH_TIMEOUT_S = 120


def previous_month(when: datetime, timezone: str = TIMEZONE) -> str:
    """The calendar month before ``when`` as seen in ``timezone`` (naive = UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone(ZoneInfo(timezone))
    last_day = local.date().replace(day=1) - timedelta(days=1)
    return f"{last_day.year:04d}-{last_day.month:02d}"


def _scheduled_start() -> datetime:
    from prefect.runtime import flow_run

    start = flow_run.scheduled_start_time
    return datetime.fromisoformat(start.isoformat()) if start is not None else datetime.now(UTC)


@flow(name=FLOW, log_prints=True)
def previous_month_report(
    events: str,
    cells: str,
    out: str,
    config: str | None = None,
    baseline: str = "previous",
    month: str | None = None,
    master: str | None = None,
    remote: str | None = None,
    work_dir: str | None = None,
    population: str | None = None,
) -> str:
    """monthly_report for the month before the scheduled start (or ``month`` if given).

    baseline: ``previous`` (the month before that), ``none`` or ``fixed:YYYY-MM``;
    population: the reference for the coverage weights (None: INSEE communes).
    """
    from mobiterra.config import load_config

    month = month or previous_month(_scheduled_start())
    cfg = load_config(
        Path(config) if config else None,
        {
            "events": events,
            "cells": cells,
            "population": population,
            "out": out,
            "month": month,
            "baseline_month": parse_baseline(baseline).for_month(month),
            "engine.master": master,
            "engine.remote": remote,
            "work_dir": work_dir,
            "quiet": True,
        },
    )
    return monthly_report(cfg)


def deployment(
    events: str | Path,
    cells: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    baseline: str = "previous",
    master: str | None = None,
    remote: str | None = None,
    work_dir: str | Path | None = None,
    population: str | Path | None = None,
):
    """The RunnerDeployment ``make serve`` registers (also used by the tests)."""
    parse_baseline(baseline)  # fail now, not on the 1st of next month

    def absolute(p: str | Path | None) -> str | None:
        # runs start in a fresh process, and a Spark Connect server resolves relative
        # paths against its own working directory: pass absolute ones
        return None if p is None else str(Path(p).resolve())

    parameters = {
        "events": absolute(events),
        "cells": absolute(cells),
        "out": absolute(out),
        "config": absolute(config),
        "baseline": baseline,
        "master": master,
        "remote": remote,
        "work_dir": absolute(work_dir),
        "population": absolute(population),
    }
    return previous_month_report.to_deployment(
        name=DEPLOYMENT,
        schedules=[Cron(CRON, timezone=TIMEZONE)],
        parameters={k: v for k, v in parameters.items() if v is not None},
        description=f"monthly_report for the previous month, {CRON} ({TIMEZONE})",
        tags=["mobiterra", "monthly"],
        # "flows.serve.previous_month_report": runs import it by module, whatever the cwd
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(
    home: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1", log: Path | None = None
) -> Iterator[str]:
    """A real ``prefect server start`` with its SQLite database in ``home``; yields the API
    URL once healthy and stops the server on exit. A server already answering on that
    port is reused (and left running)."""
    api_url = f"http://{host}:{port}/api"
    if healthy(api_url):
        yield api_url
        return
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)  # the server must not talk to another one
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    log_path = Path(log) if log else home / "server.log"
    with open(log_path, "ab") as log_file:
        server = subprocess.Popen(
            [prefect, "server", "start", "--host", host, "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own process group: `prefect server start` runs uvicorn as a child, and
            # both must go when we stop
            start_new_session=True,
        )
    pid_file = home / "server.pid"  # its process group, should this process be killed
    pid_file.write_text(f"{server.pid}\n")
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not healthy(api_url):
            if server.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with code {server.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy after {HEALTH_TIMEOUT_S} s")
            time.sleep(0.5)
        yield api_url
    finally:
        _stop_group(server)
        pid_file.unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies aside; Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _stop_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group we started (the server and its uvicorn), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_alive(proc.pid):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop_on_sigterm(_signum: int, _frame) -> None:
    """SIGTERM is the way to stop serving: exit 0 like Prefect's runner does (it prints
    "being served" before it installs its own handler, so a SIGTERM can land here)."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--cells", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--baseline", default="previous", help="previous, none or fixed:YYYY-MM")
    parser.add_argument("--master", help="Spark master URL (default local[*])")
    parser.add_argument("--remote", help="Spark Connect URL, e.g. sc://127.0.0.1:15002")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--population", type=Path, help="population reference (coverage weights)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--api-url", help="a running Prefect API (default: $PREFECT_API_URL)")
    where.add_argument(
        "--start-server", action="store_true", help="start `prefect server` in $PREFECT_HOME"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="for --start-server")
    args = parser.parse_args(argv)
    # SIGTERM before Prefect's runner installs its own (graceful) handler must still run
    # the finally blocks below, which stop the server we started
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # `python -m flows.serve` runs this file as __main__: deploy the importable module's
    # flow so that runs find it as flows.serve.previous_month_report
    this = importlib.import_module("flows.serve")

    if args.start_server:
        home = Path(os.environ.get("PREFECT_HOME", ".state/prefect"))
        server = prefect_server(home, args.port)
    else:
        server = contextlib.nullcontext(args.api_url or os.environ.get("PREFECT_API_URL"))
    with server as api_url:
        if not api_url:
            parser.error("no Prefect API: pass --start-server, --api-url or set PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = api_url  # inherited by the runs' processes
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            d = this.deployment(
                args.events,
                args.cells,
                args.out,
                args.config,
                args.baseline,
                args.master,
                args.remote,
                args.work_dir,
                population=args.population,
            )
            print(f"serving {FLOW}/{DEPLOYMENT} ({CRON}, {TIMEZONE}) on {api_url}", flush=True)
            # one run at a time: two runs of one month would race on its staging folder
            serve(d, limit=1)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
