"""The session factory's JVM settings."""

from __future__ import annotations

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
