"""One Spark session per test session (it takes ~15 s to start)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
# one Prefect home per pytest-xdist worker (`make test` runs two, see pyproject.toml)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".state" / f"prefect-test-{_WORKER}"))
# Tests run on hand-made data, not the sample: give ingest a pseudonym key.
os.environ.setdefault("MOBITERRA_PSEUDONYM_KEY", "test-key-not-secret")


# Tests that read the bundled sample's run (2.7 M events, ~4 min) stay on one worker, so
# the run is made once; the other worker takes everything else meanwhile.
SAMPLE_RUN_MODULES = {"test_notebooks"}  # takes sample_run through request.getfixturevalue


def _on_the_sample_run(item) -> bool:
    return "sample_run" in item.fixturenames or item.module.__name__ in SAMPLE_RUN_MODULES


def pytest_itemcollected(item):
    """One xdist group per module (the sample run's tests apart): a module's tests share
    its module-scoped runs, which each worker running one of its tests would redo (the
    publish-tables run was made three times over three workers)."""
    # here, not in pytest_collection_modifyitems: xdist's own modifyitems reads the groups
    if _on_the_sample_run(item):
        item.add_marker(pytest.mark.xdist_group("sample_run"))
    else:
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))


# Modules of several minutes, each on one worker: scheduled right after the sample run's
# group, so that no long group starts last while the other worker idles.
LONG_MODULES = ("test_cluster", "test_flows", "test_run")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        if _on_the_sample_run(item):
            return 0
        return 1 if item.module.__name__ in LONG_MODULES else 2

    items.sort(key=rank)  # stable: each module keeps its order


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
    common += ["--population", str(sample / "population.csv")]  # as `make run`
    common += ["--out", str(out), "--work-dir", str(out / ".work"), "--quiet"]
    # February's own release is for the two-release checks (residents, shift, attacks on
    # both months): its mobility tables with one period each (hours: April's run)
    light = out / ".february.toml"
    light.write_text('[presence]\nperiods = ["day"]\n[od]\nperiods = ["day"]\n')
    assert cli.main(["run", *common, "--month", "2020-02", "--config", str(light)]) == 0
    common += ["--truth", str(sample / "truth")]
    assert cli.main(["run", *common, "--month", "2020-04", "--baseline-month", "2020-02"]) == 0
    return out
