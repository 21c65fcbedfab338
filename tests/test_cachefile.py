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


def test_in_memory_reads_once_hands_out_copies_and_rereads_a_changed_file(tmp_path):
    import os

    from mobiterra.cachefile import in_memory

    path, reads = tmp_path / "t.txt", []
    path.write_text("a")

    def load() -> list[str]:
        reads.append(1)
        return [path.read_text()]

    first = in_memory(path, load, list)
    first.append("edited by a caller")
    assert in_memory(path, load, list) == ["a"] and len(reads) == 1
    path.write_text("bb")
    os.utime(path, ns=(1, 1))  # a new mtime even within the clock's resolution
    assert in_memory(path, load, list) == ["bb"] and len(reads) == 2
