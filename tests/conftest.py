"""One Spark session per test session (it takes ~15 s to start)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".state" / "prefect-test"))
# Tests run on hand-made data, not the sample: give ingest a pseudonym key.
os.environ.setdefault("MOBITERRA_PSEUDONYM_KEY", "test-key-not-secret")


@pytest.fixture(scope="session")
def spark():
    from mobiterra.spark import spark_session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = spark_session(master="local[2]", shuffle_partitions=2, driver_memory="2g")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_run(spark, tmp_path_factory):
    """The bundled sample through `mobiterra run`, once per session: February alone, then
    April against February (scored against the truth). Returns OUT with 2020-02, 2020-04."""
    from mobiterra import cli

    sample = ROOT / "data_samples"
    out = tmp_path_factory.mktemp("sample-run")
    common = ["--events", str(sample / "events.parquet"), "--cells", str(sample / "cells.csv")]
    common += ["--out", str(out), "--work-dir", str(out / ".work"), "--quiet"]
    assert cli.main(["run", *common, "--month", "2020-02"]) == 0
    common += ["--truth", str(sample / "truth")]
    assert cli.main(["run", *common, "--month", "2020-04", "--baseline-month", "2020-02"]) == 0
    return out
