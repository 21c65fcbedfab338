"""Spark's ``xxhash64`` (seed 42, chained over columns) in numpy, for the baseline's draw.

jobs.residence draws each user's home hexagon from ``xxhash64("home", user_key)``; DuckDB
has no XXH64, so the baseline computes the same number here, once per user with a home.
XXH64 is the standard algorithm (Spark's XXH64.java); a Spark row hash chains its
columns: the hash of one column is the seed of the next.
"""

from __future__ import annotations

import numpy as np

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)
SPARK_SEED = 42
_M64 = (1 << 64) - 1


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * P2, 31) * P1


def _merge(h: np.ndarray, acc: np.ndarray) -> np.ndarray:
    return (h ^ _round(np.zeros_like(acc), acc)) * P1 + P4


def _avalanche(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(33))) * P2
    h = (h ^ (h >> np.uint64(29))) * P3
    return h ^ (h >> np.uint64(32))


def xxh64(data: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """XXH64 of equal-length byte rows ``data`` (n x length uint8) with per-row seeds."""
    with np.errstate(over="ignore"):
        n, length = data.shape
        seed = np.asarray(seed, dtype=np.uint64)
        pos = 0
        if length >= 32:
            v = [seed + P1 + P2, seed + P2, seed.copy(), seed - P1]
            while pos + 32 <= length:
                lanes = data[:, pos : pos + 32].copy().view("<u8")
                v = [_round(v[i], lanes[:, i]) for i in range(4)]
                pos += 32
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
            for acc in v:
                h = _merge(h, acc)
        else:
            h = seed + P5
        h = h + np.uint64(length)
        while pos + 8 <= length:
            lane = data[:, pos : pos + 8].copy().view("<u8")[:, 0]
            h = _rotl(h ^ _round(np.zeros(n, np.uint64), lane), 27) * P1 + P4
            pos += 8
        if pos + 4 <= length:
            word = data[:, pos : pos + 4].copy().view("<u4")[:, 0].astype(np.uint64)
            h = _rotl(h ^ (word * P1), 23) * P2 + P3
            pos += 4
        while pos < length:
            h = _rotl(h ^ (data[:, pos].astype(np.uint64) * P5), 11) * P1
            pos += 1
        return _avalanche(h)


def spark_xxhash64(salt: str, keys: list[str] | np.ndarray) -> np.ndarray:
    """Spark's ``xxhash64(lit(salt), key)`` for equal-length ASCII keys, as uint64."""
    salt_bytes = np.frombuffer(salt.encode(), dtype=np.uint8)[None, :]
    h_salt = xxh64(salt_bytes, np.array([SPARK_SEED], dtype=np.uint64))
    keys = np.asarray(keys, dtype="S")
    rows = np.frombuffer(keys.tobytes(), dtype=np.uint8).reshape(len(keys), keys.itemsize)
    return xxh64(rows, np.repeat(h_salt, len(keys)))


def user_uniform(salt: str, keys) -> np.ndarray:
    """jobs.residence.user_uniform: pmod(xxhash64(salt, key), 2^53) / 2^53."""
    h = spark_xxhash64(salt, keys)
    return (h & np.uint64((1 << 53) - 1)).astype(np.float64) / float(1 << 53)
