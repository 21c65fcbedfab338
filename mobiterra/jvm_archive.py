"""The driver JVM's class-data archive (Java's dynamic AppCDS).

`make setup` runs the pipeline once on a slice of the bundled sample with
``-XX:ArchiveClassesAtExit``; every later local session maps the classes it loaded
instead of loading and verifying Spark's jars again (1 M bench month, fresh JVMs: JVM
start 3.4 -> 1.8-2.2 s, ingest 7.4-8.1 -> 6.5-6.7 s).

The archive's name carries the pyspark version and the Java binary (path, size, time),
so an upgrade of either looks for a new archive instead of meeting a stale one; it is
written under a temporary name, checked by a JVM that maps it, then renamed (a truncated
archive crashes the JVM that maps it).

``python -m mobiterra.jvm_archive``: make the archive if it is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ARCHIVE_DIR = Path(__file__).parent / "data" / "jvm"
# JVM logging of the archive off: a mismatch (another class path) only disables it
QUIET = "-Xlog:cds*=off"
SLICE_ROWS = 150_000


def archive_path() -> Path | None:
    """Where this pyspark and this Java's archive lives (None without a ``java``)."""
    import pyspark

    java = shutil.which("java", path=_java_path())
    if java is None:
        return None
    real = os.path.realpath(java)
    st = os.stat(real)
    key = f"{pyspark.__version__}|{real}|{st.st_size}|{st.st_mtime_ns}"
    return ARCHIVE_DIR / f"spark-classes-{hashlib.sha1(key.encode()).hexdigest()[:12]}.jsa"


def _java_path() -> str:
    # Spark's launcher runs $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH
    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin") if home else os.environ.get("PATH", "")


def driver_options() -> str:
    """The driver JVM's options to map the archive; empty when there is none."""
    path = archive_path()
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path and path.is_file() else ""


def _maps(java: str, archive: Path) -> bool:
    """A JVM given the archive starts (a damaged archive crashes it; its crash report
    goes to a temporary folder, no core dump)."""
    with tempfile.TemporaryDirectory(prefix="mobiterra-jvm-check-") as tmp:
        done = subprocess.run(
            [
                java,
                f"-XX:SharedArchiveFile={archive}",
                QUIET,
                "-XX:-CreateCoredumpOnCrash",
                f"-XX:ErrorFile={tmp}/hs_err_pid%p.log",
                "-version",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp,
        )
    return done.returncode == 0


def _train(archive: Path, sample: Path) -> None:
    """Run the pipeline on a slice of ``sample`` in a JVM that dumps its classes into
    ``archive`` at exit, and wait for that JVM to exit."""
    import numpy as np
    import pyarrow.parquet as pq

    from jobs.pipeline import direct_call, run_month
    from mobiterra.config import JAVA_OPTIONS, EngineParams, RunConfig
    from mobiterra.progress import Progress
    from mobiterra.spark import engine_session

    os.environ.setdefault("MOBITERRA_PSEUDONYM_KEY", "mobiterra-jvm-archive")
    with tempfile.TemporaryDirectory(prefix="mobiterra-jvm-archive-") as tmp:
        events = pq.read_table(sample / "events.parquet")
        rows = np.random.default_rng(0).choice(events.num_rows, SLICE_ROWS, replace=False)
        pq.write_table(events.take(np.sort(rows)), Path(tmp) / "events.parquet")
        cfg = RunConfig(
            events=Path(tmp) / "events.parquet",
            cells=sample / "cells.csv",
            population=sample / "population.csv",
            month="2020-04",
            baseline_month="2020-02",
            out=Path(tmp) / "out",
            work_dir=Path(tmp) / "work",
            quiet=True,
            engine=EngineParams(java_options=f"{JAVA_OPTIONS} -XX:ArchiveClassesAtExit={archive}"),
        )
        spark = engine_session(cfg.engine)
        run_month(cfg, direct_call(spark), Progress(quiet=True))
        gateway = spark.sparkContext._gateway
        spark.stop()
        proc = gateway.proc
        gateway.shutdown()
        proc.stdin.close()  # the JVM exits on its standard input's end, dumping the archive
        proc.wait(timeout=300)


def ensure_archive(sample: Path) -> Path | None:
    """Make this Java's archive from a run on ``sample`` unless it exists (a line says
    when one is made or could not be)."""
    target = archive_path()
    if target is None or target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob("spark-classes-*.jsa"):
        stale.unlink()  # another pyspark's or Java's
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mobiterra.jvm_archive", "--train", str(tmp), str(sample)],
            capture_output=True,
            text=True,
        )
        java = shutil.which("java", path=_java_path())
        if done.returncode != 0 or not tmp.is_file() or not _maps(java, tmp):
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no archive written"]
            print(f"no JVM class archive (sessions start without one): {tail[0]}")
            return None
        os.replace(tmp, target)
        print(f"JVM class archive: {target} ({target.stat().st_size / 2**20:.0f} MiB)")
        return target
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--train"]:
        _train(Path(args[1]), Path(args[2]))
        return 0
    ensure_archive(Path(args[0]) if args else Path("data_samples"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
