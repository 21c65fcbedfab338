"""mobiterra.cachefile: one build for concurrent first calls, atomic files."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from mobiterra.cachefile import cached


def _build_slowly(path: str, log: str) -> str:
    def build() -> str:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(2.0)  # long enough for the other process to arrive meanwhile
        return "table"

    return cached(path, build, lambda v, tmp: tmp.write_text(v), lambda p: p.read_text())


def test_concurrent_first_calls_build_once_and_both_read_the_file(tmp_path):
    path, log = tmp_path / "cache" / "t.parquet", tmp_path / "builds.log"
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.starmap(_build_slowly, [(str(path), str(log))] * 2)
    assert got == ["table", "table"]
    assert log.read_text() == "built\n"
    assert path.read_text() == "table"
    # no temporary file is left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.parquet", "t.parquet.lock"]


def test_an_existing_file_is_read_not_built(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("old")

    def fail() -> str:
        raise AssertionError("built again")

    assert cached(path, fail, lambda v, tmp: None, lambda p: Path(p).read_text()) == "old"
