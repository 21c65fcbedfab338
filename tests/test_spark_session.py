"""The session factory's JVM settings."""

from __future__ import annotations

import shutil

from mobiterra import jvm_archive
from mobiterra.config import JAVA_OPTIONS, RunConfig


def test_the_shared_session_runs_on_the_configured_throughput_collector(spark):
    jvm = spark.sparkContext._jvm
    beans = jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    names = [bean.getName() for bean in beans]
    assert "-XX:+UseParallelGC" in JAVA_OPTIONS
    # ParallelGC's collectors are "PS Scavenge" and "PS MarkSweep"; G1's "G1 Young ..."
    assert names and all(name.startswith("PS ") for name in names), names
    conf = spark.sparkContext.getConf()
    assert JAVA_OPTIONS in conf.get("spark.driver.extraJavaOptions")
    assert JAVA_OPTIONS in conf.get("spark.executor.extraJavaOptions")
    assert conf.get("spark.sql.codegen.cache.maxEntries") == "1000"  # a static conf: set at start


def test_java_options_are_an_engine_setting(tmp_path):
    cfg = RunConfig(
        events=tmp_path / "e.parquet",
        cells=tmp_path / "c.csv",
        month="2020-04",
        out=tmp_path,
        engine={"java_options": "-XX:+UseG1GC"},
    )
    assert cfg.engine.java_options == "-XX:+UseG1GC"
    assert RunConfig(events="e", cells="c", month="2020-04", out="o").engine.java_options == (
        JAVA_OPTIONS
    )


def test_the_shared_session_maps_the_class_archive_of_make_setup(spark):
    # make setup made this Java's archive (mobiterra.jvm_archive); the driver maps it
    archive = jvm_archive.archive_path()
    assert archive is not None and archive.is_file(), "run make setup"
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        spark.sparkContext._jvm.java.lang.Class.forName(
            "com.sun.management.HotSpotDiagnosticMXBean"
        )
    )
    assert bean.getVMOption("SharedArchiveFile").getValue() == str(archive)
    assert str(archive) not in (spark.sparkContext.getConf().get("spark.executor.extraJavaOptions"))


def test_no_archive_no_option_and_a_new_java_a_new_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "ARCHIVE_DIR", tmp_path)
    assert jvm_archive.driver_options() == ""
    path = jvm_archive.archive_path()
    path.write_bytes(b"x")
    assert jvm_archive.driver_options() == f"-XX:SharedArchiveFile={path} {jvm_archive.QUIET}"
    fake = tmp_path / "jdk" / "bin"
    fake.mkdir(parents=True)
    (fake / "java").write_text("#!/bin/sh\n")
    (fake / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    other = jvm_archive.archive_path()
    assert other != path and other.parent == tmp_path
    assert jvm_archive.driver_options() == ""


def test_a_damaged_archive_is_never_kept(tmp_path):
    # a truncated archive crashes the JVM that maps it: ensure_archive checks before renaming
    archive = jvm_archive.archive_path()
    damaged = tmp_path / "damaged.jsa"
    with archive.open("rb") as whole:
        damaged.write_bytes(whole.read(1_000_000))
    java = shutil.which("java", path=jvm_archive._java_path())
    assert not jvm_archive._maps(java, damaged)
    assert jvm_archive._maps(java, archive)
