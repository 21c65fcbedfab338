"""HMAC-SHA256 pseudonyms in Spark equal Python's hmac; no key, no run (outside the sample)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyspark.sql import functions as F

from jobs import pseudonym
from mobiterra.errors import InputError

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
