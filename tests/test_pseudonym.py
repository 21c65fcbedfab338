"""HMAC-SHA256 pseudonyms in Spark equal Python's hmac; no key, no run (outside the sample)."""

from __future__ import annotations

import hashlib
import hmac
import shutil

import pytest
from pyspark.sql import functions as F

from jobs import pseudonym
from mobiterra.errors import InputError
from mobiterra.spark import UDF_JAR

MESSAGES = ["user-000001", "", "Zoë Müller-Straße 🚲", "x" * 500]
KEYS = [b"k", b"test-key-not-secret", "clé-secrète-é".encode(), b"K" * 64, b"L" * 200]


@pytest.mark.parametrize("key", KEYS, ids=["1 byte", "ascii", "utf-8", "64 bytes", "200 bytes"])
def test_hmac_matches_python(spark, key):
    df = spark.createDataFrame([(m,) for m in MESSAGES], "m string")
    got = [
        r["h"] for r in df.select(pseudonym.hmac_sha256_hex(F.col("m"), key).alias("h")).collect()
    ]
    assert got == [hmac.new(key, m.encode(), hashlib.sha256).hexdigest() for m in MESSAGES]


def test_user_key_is_truncated_hmac_and_never_the_id(spark):
    df = spark.createDataFrame([("user-1",)], "user_id string")
    (row,) = df.select(pseudonym.user_key(F.col("user_id"), b"s").alias("k")).collect()
    full = hmac.new(b"s", b"user-1", hashlib.sha256).hexdigest()
    assert row["k"] == full[: pseudonym.KEY_HEX_CHARS] and "user-1" not in row["k"]


@pytest.mark.parametrize("key", KEYS, ids=["1 byte", "ascii", "utf-8", "64 bytes", "200 bytes"])
def test_the_java_user_key_equals_the_builtin_expression_and_python(spark, key):
    """`make setup` builds jobs/java's jar; the shared session registers its function and
    ingest uses it: the same pseudonyms as the built-in expression, nulls included, and
    a session running a second key in the same task threads keeps them apart."""
    if shutil.which("javac") is None:
        pytest.skip("no JDK here: the jobs use the built-in expression")
    assert UDF_JAR.exists(), "make setup builds mobiterra/data/jars/mobiterra-udf.jar"
    assert pseudonym.has_java_user_key(spark)
    df = spark.createDataFrame([(m,) for m in [*MESSAGES, None]], "m string")
    java = pseudonym.user_key(F.col("m"), key, spark)
    assert pseudonym.JAVA_USER_KEY in str(java)
    rows = df.select(
        java.alias("j"),
        pseudonym.builtin_user_key(F.col("m"), key).alias("b"),
        pseudonym.user_key(F.col("m"), b"other-key", spark).alias("o"),
    ).collect()
    want = [hmac.new(key, m.encode(), hashlib.sha256).hexdigest()[:32] for m in MESSAGES]
    assert [r["j"] for r in rows] == [r["b"] for r in rows] == [*want, None]
    other = [hmac.new(b"other-key", m.encode(), hashlib.sha256).hexdigest()[:32] for m in MESSAGES]
    assert [r["o"] for r in rows] == [*other, None]


def test_the_java_user_keys_kept_per_thread_stay_right_past_the_cache(spark):
    """The Java function keeps the pseudonyms it made per task thread (at most 65,536, then
    it starts again): 70,000 ids seen three times each, in one task, in an order that
    returns to ids made before the cache was cleared, all equal the built-in expression."""
    if shutil.which("javac") is None:
        pytest.skip("no JDK here: the jobs use the built-in expression")
    ids = spark.range(210_000, numPartitions=1).select(
        F.concat(F.lit("user-"), (F.col("id") * 7_919 % 70_000).cast("string")).alias("m")
    )
    keyed = ids.select(
        "m",
        pseudonym.user_key(F.col("m"), b"cache-key", spark).alias("j"),
        pseudonym.builtin_user_key(F.col("m"), b"cache-key").alias("b"),
    )
    assert keyed.filter(F.col("j") != F.col("b")).count() == 0
    assert keyed.select("m").distinct().count() == 70_000


def test_without_a_session_the_user_key_is_the_builtin_expression():
    assert pseudonym.JAVA_USER_KEY not in str(pseudonym.user_key(F.col("m"), b"k"))


def test_key_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(pseudonym.KEY_ENV, "from-env")
    assert pseudonym.pseudonym_key(tmp_path / "events.parquet") == b"from-env"


def test_no_key_refuses_to_run_outside_the_sample(monkeypatch, tmp_path):
    monkeypatch.delenv(pseudonym.KEY_ENV, raising=False)
    with pytest.raises(InputError, match=pseudonym.KEY_ENV):
        pseudonym.pseudonym_key(tmp_path / "events.parquet")
    with pytest.raises(InputError):
        pseudonym.pseudonym_key(None)
    monkeypatch.setenv(pseudonym.KEY_ENV, "")  # empty is no key
    with pytest.raises(InputError):
        pseudonym.pseudonym_key(tmp_path / "events.parquet")


def test_the_sample_runs_under_the_public_key(monkeypatch):
    monkeypatch.delenv(pseudonym.KEY_ENV, raising=False)
    sample = pseudonym.SAMPLE_DIR / "events.parquet"
    assert pseudonym.pseudonym_key(sample) == pseudonym.SAMPLE_KEY.encode()
