"""The one SparkSession factory: embedded local mode, a cluster master, or Spark Connect."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from mobiterra import jvm_archive
from mobiterra.config import JAVA_OPTIONS, EngineParams

LOG4J = Path(__file__).parent / "data" / "log4j2.properties"
# jobs/java's functions, built by `make setup` (absent without a JDK: the jobs then use
# built-in expressions, see jobs.pseudonym)
UDF_JAR = Path(__file__).parent / "data" / "jars" / "mobiterra-udf.jar"
JAVA_FUNCTIONS = {"mobiterra_user_key": "org.mobiterra.UserKey"}
# The session's record of the functions registered (a runtime conf: asking the catalog
# would start a warehouse folder in the working directory of a Spark Connect server)
JAVA_FUNCTIONS_CONF = "mobiterra.javaFunctions"


def spark_session(
    master: str | None = None,
    remote: str | None = None,
    shuffle_partitions: int = 8,
    driver_memory: str = "4g",
    app_name: str = "mobiterra",
    java_options: str = JAVA_OPTIONS,
) -> SparkSession:
    """Get or create the session.

    - ``remote="sc://host:15002"``: Spark Connect (jobs use only the DataFrame API).
    - ``master="spark://host:7077"`` (or yarn, k8s://…): a cluster.
    - neither: ``local[*]``, embedded, nothing to start.
    Sessions are UTC inside (inputs are UTC; local time is applied explicitly).
    """
    # Executors must run the same Python as the driver (h3 is never needed on executors).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
    }
    if remote:
        builder = SparkSession.builder.remote(remote)
        for key, value in conf.items():
            builder = builder.config(key, value)
        return builder.appName(app_name).getOrCreate()

    builder = SparkSession.builder.master(master or "local[*]").appName(app_name)
    # the class archive of `make setup` (mobiterra.jvm_archive): a local driver only, the
    # one JVM whose class path it was made with
    archive = jvm_archive.driver_options() if (master or "local").startswith("local") else ""
    local_conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": driver_memory,
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
        # generated code kept for 1,000 plans, not 100: a run compiles ~530 classes, and a
        # second month in the same JVM (backfills, the tests' shared session) reuses them
        # (the 1 M bench month, second run in one JVM: 24.0 -> 20.4 s)
        "spark.sql.codegen.cache.maxEntries": "1000",
        "spark.driver.extraJavaOptions": (
            f"-Dlog4j2.configurationFile={LOG4J} {java_options} {archive}".rstrip()
        ),
        "spark.executor.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J} {java_options}",
    }
    if UDF_JAR.exists():  # shipped to a cluster's executors too
        local_conf["spark.jars"] = str(UDF_JAR)
    for key, value in {**conf, **local_conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    register_java_functions(spark)
    return spark


def engine_session(engine: EngineParams) -> SparkSession:
    """The session for a run's ``engine`` settings (RunConfig.engine)."""
    return spark_session(
        engine.master,
        engine.remote,
        engine.shuffle_partitions,
        engine.driver_memory,
        java_options=engine.java_options,
    )


def register_java_functions(spark: SparkSession) -> list[str]:
    """Register jobs/java's functions when their jar is on the session's class path;
    returns the names registered (none without the jar)."""
    from pyspark.sql import types as T

    jars = spark.sparkContext.getConf().get("spark.jars", "")
    if str(UDF_JAR) not in jars.split(","):
        return []
    if java_functions(spark) == list(JAVA_FUNCTIONS):  # the factory's session again
        return list(JAVA_FUNCTIONS)
    for name, java_class in JAVA_FUNCTIONS.items():
        spark.udf.registerJavaFunction(name, java_class, T.StringType())
    spark.conf.set(JAVA_FUNCTIONS_CONF, ",".join(JAVA_FUNCTIONS))
    return list(JAVA_FUNCTIONS)


def java_functions(spark: SparkSession) -> list[str]:
    """The jobs/java functions registered in ``spark`` by :func:`register_java_functions`."""
    try:
        names = spark.conf.get(JAVA_FUNCTIONS_CONF, "")
    except Exception:  # noqa: BLE001 - a session that cannot say has none
        return []
    return [n for n in (names or "").split(",") if n]


def has_java_jobs(spark: SparkSession) -> bool:
    """Whether ``spark`` runs jobs/java's Dataset functions (org.mobiterra.Stays,
    AcceptedEvents): a classic session (not Spark Connect) with the jar."""
    return bool(java_functions(spark)) and getattr(spark, "_jvm", None) is not None


def java_dataset(df, java_class: str, *args):
    """``org.mobiterra.<java_class>.apply(df, *args)``: a jobs/java Dataset function (only
    where :func:`has_java_jobs`) as a DataFrame."""
    from pyspark.sql.classic.dataframe import DataFrame

    spark = df.sparkSession
    jdf = getattr(spark._jvm.org.mobiterra, java_class).apply(df._jdf, *args)
    return DataFrame(jdf, spark)
