"""The same jobs through Spark Connect on a real Spark standalone cluster (a master, a
worker and a Connect server whose executors run on that worker), started on 127.0.0.1
from the classes and scripts pyspark ships: outputs equal local mode's.

The cluster run is a ``mobiterra run --remote`` subprocess (a Connect client cannot share
the test session's process); the local reference runs in the test session's own Spark
session. Both on a small slice of the sample. h3 is never needed on executors (coverage is
computed on the driver); the gate's applyInPandas needs the project's Python packages
there, which the worker and the Connect server get by running the venv's interpreter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyspark
import pytest
from small_sample import CELLS, ROOT, assert_same_month, write_small_events

pytestmark = pytest.mark.slow

SPARK_HOME = Path(pyspark.__file__).parent
MOBITERRA = Path(sys.executable).parent / "mobiterra"
MONTH, BASELINE = "2020-04", "2020-02"
START_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600
LIGHT_CONFIG = """
[engine]
shuffle_partitions = 2
[presence]
periods = ["day"]
[od]
periods = ["day"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp / "logs"),
        "SPARK_PID_DIR": str(tmp / "pids"),
        # executors run the venv's Python (pandas, pyarrow and this project's packages)
        "PYSPARK_PYTHON": sys.executable,
        # no REST submission server on 6066: another test or user may hold that port
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }


@contextlib.contextmanager
def service(
    cmd: list[str], env: dict, log: Path, ready: Callable[[str], bool], cwd: Path
) -> Iterator[subprocess.Popen]:
    """Start a JVM service in its own process group; yield once ``ready(log text)``;
    on exit stop the whole group (SIGTERM, then SIGKILL)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(log.read_text(errors="replace")):
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(cmd[:3])} not ready in {START_TIMEOUT_S} s")
            time.sleep(0.5)
        yield proc
    finally:
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Inputs, outputs, logs and the services' folders of this module's runs."""
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def events(workdir) -> Path:
    path = workdir / "events.parquet"
    write_small_events(path, users=300)
    return path


def run_arguments(workdir: Path, events: Path, name: str) -> list[str]:
    """``mobiterra run`` arguments (absolute paths) of the run called ``name``; its
    month is written to OUT/MONTH (:func:`month_of`)."""
    config = workdir / "light.toml"
    # a small input: few shuffle partitions (the default 8 suits the sample's full size),
    # and one period per mobility table (hours dominate their volume)
    config.write_text(LIGHT_CONFIG)
    return [
        "run", "--events", str(events), "--cells", str(CELLS),
        "--month", MONTH, "--baseline-month", BASELINE,
        "--out", str(month_of(workdir, name).parent),
        "--work-dir", str(workdir / f"work-{name}"), "--resolutions", "6,7,8", "--quiet",
        # coverage is driver-side pandas/shapely, the same in every mode: the cheap one
        "--coverage", "point", "--config", str(config),
    ]  # fmt: skip


def month_of(workdir: Path, name: str) -> Path:
    return workdir / f"out-{name}" / MONTH


def run_month(workdir: Path, events: Path, name: str, *engine: str) -> Path:
    """``mobiterra run`` in a subprocess; returns OUT/MONTH."""
    done = subprocess.run(
        # from the checkout: its .state/cache (coverage, DEGURBA grid) is built once
        [str(MOBITERRA), *run_arguments(workdir, events, name), *engine],
        cwd=ROOT, env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return month_of(workdir, name)


@pytest.fixture(scope="module")
def local_month(spark, workdir, events) -> Path:
    """The reference: embedded local mode, in the test session's own (warm) Spark session
    (local[2], as a subprocess with ``--master local[2]`` would be, ~40 s sooner)."""
    from mobiterra import cli

    assert cli.main(run_arguments(workdir, events, "local")) == 0
    return month_of(workdir, "local")


@pytest.fixture(scope="module")
def standalone_master(workdir) -> Iterator[str]:
    """A standalone master and one worker (2 cores) on loopback."""
    env = spark_env(workdir)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    master_log, worker_log = workdir / "master.log", workdir / "worker.log"
    master_cmd = [
        spark_class, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port()),
    ]  # fmt: skip
    worker_cmd = [
        spark_class, "org.apache.spark.deploy.worker.Worker",
        "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
        "--webui-port", str(free_port()), "--work-dir", str(workdir / "worker"), url,
    ]  # fmt: skip
    with (
        service(master_cmd, env, master_log, lambda t: "elected leader" in t, workdir),
        service(
            worker_cmd, env, worker_log, lambda t: "Successfully registered with master" in t,
            workdir,
        ),
    ):  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def connect_server(workdir, standalone_master) -> Iterator[str]:
    """A Spark Connect server in another working folder, its executors on the standalone
    worker: one run goes through both the Connect client and a real cluster."""
    port = free_port()
    server_dir = workdir / "connect-server-cwd"
    server_dir.mkdir()
    cmd = [
        str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--wait",
        "--master", standalone_master,
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", f"spark.executorEnv.PYSPARK_PYTHON={sys.executable}",
    ]  # fmt: skip
    ready = "Spark Connect server started"
    with service(
        cmd, spark_env(workdir), workdir / "connect.log", lambda t: ready in t, server_dir
    ):
        yield f"sc://127.0.0.1:{port}"


def test_spark_connect_on_a_standalone_cluster_outputs_equal_local_mode(
    workdir, events, local_month, connect_server
):
    """``mobiterra run --remote``: the jobs travel through Spark Connect to a server whose
    executors run on a standalone worker (their own JVM and Python workers for the gate's
    applyInPandas); every output equals the embedded local mode's. (One run for both:
    a run per mode took ~2 min each of a 15-min suite.)"""
    cluster_month = run_month(workdir, events, "connect", "--remote", connect_server)
    compared = assert_same_month(local_month, cluster_month)
    assert {"residents", "residence_shift", "quarantine/events", "quarantine/cells"} <= set(
        compared
    )
    # not two empty months: the slice publishes residents and quarantines its bad rows
    assert len(pd.read_parquet(local_month / "residents")) > 0
    assert len(pd.read_parquet(local_month / "quarantine" / "events")) == 3
    # the executors really ran on the worker (their folder holds the app's stderr)
    assert any((workdir / "worker").glob("app-*/*/stderr"))
    # nothing was written relative to the server's own working folder
    assert not any((workdir / "connect-server-cwd").iterdir())
