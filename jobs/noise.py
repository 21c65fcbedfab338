"""Optional differential-privacy noise, the approach of Google's COVID-19 Community
Mobility Reports (Aktay et al. 2020): bound each user's contributions, add Laplace (or
Gaussian) noise to the counts, then threshold on the noisy value (the gate's k).

Deterministic: the noise of a row is a keyed hash of (seed, row key), so a rerun with
the same seed publishes the same values. The seed must stay as secret as the pseudonym
key: whoever knows it can recompute and remove the noise.
"""

from __future__ import annotations

import math
from typing import Literal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.gate import TableSpec
from mobiterra import columns as C
from mobiterra.config import PrivacyParams

Mechanism = Literal["laplace", "gaussian"]
_BITS = 52  # uniform draws from 52 hash bits


def bound_contributions(
    df: DataFrame, user_col: str, c: int, seed: int | str, per: tuple[Column, ...] = ()
) -> DataFrame:
    """Keep at most ``c`` rows per user (and per ``per`` group, e.g. the local day),
    chosen by a seeded hash (before aggregation).

    Each input row is one contribution (e.g. one stay or one trip); with at most c of
    them a user moves any count table by at most c per resolution (L1 sensitivity c,
    L2 sqrt(c)).
    """
    if c < 1:
        raise ValueError(f"max contributions must be >= 1, got {c}")
    others = [F.col(x) for x in df.columns]
    rank = Window.partitionBy(user_col, *per).orderBy(
        F.sha2(F.concat_ws("|", F.lit(str(seed)), *[x.cast("string") for x in others]), 256),
        *others,
    )
    return df.withColumn("_n", F.row_number().over(rank)).filter(F.col("_n") <= c).drop("_n")


def _uniform(seed: int | str, stream: str, keys: list[str]) -> Column:
    """A uniform in (0, 1) from a SHA-256 of (seed, stream, row key)."""
    text = F.concat_ws("|", F.lit(f"{seed}|{stream}"), *[F.col(x).cast("string") for x in keys])
    bits = F.conv(F.substring(F.sha2(text, 256), 1, _BITS // 4), 16, 10).cast("double")
    return (bits + 0.5) / float(2**_BITS)


def noise_column(
    mechanism: Mechanism, scale: float, seed: int | str, stream: str, keys: list[str]
) -> Column:
    """Laplace(0, scale) by inverse CDF, or N(0, scale^2) by Box-Muller."""
    u = _uniform(seed, stream, keys)
    if mechanism == "laplace":
        centred = u - 0.5
        return -scale * F.signum(centred) * F.log(1 - 2 * F.abs(centred))
    if mechanism == "gaussian":
        v = _uniform(seed, stream + "/2", keys)
        return scale * F.sqrt(-2 * F.log(u)) * F.cos(2 * math.pi * v)
    raise ValueError(f"noise mechanism must be 'laplace' or 'gaussian', got {mechanism!r}")


def noise_scale(
    mechanism: Mechanism, epsilon: float, max_contributions: int, delta: float
) -> float:
    """Laplace b = c / eps (L1 sensitivity c); Gaussian sigma = sqrt(2 ln(1.25/delta)) *
    sqrt(c) / eps (Dwork & Roth, Thm A.1, valid for eps < 1)."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if mechanism == "laplace":
        return max_contributions / epsilon
    return math.sqrt(2 * math.log(1.25 / delta)) * math.sqrt(max_contributions) / epsilon


def with_noise(
    counts_df: DataFrame,
    spec: TableSpec,
    epsilon: float,
    mechanism: Mechanism,
    seed: int | str,
    max_contributions: int = 1,
    delta: float = 1e-6,
) -> DataFrame:
    """Noisy counts, rounded and clipped at 0, ready for the gate (which thresholds them).

    Every count column (users, trips) gets its own noise at budget ``epsilon`` each;
    estimates are rescaled by noisy / raw users (the expansion factor is public).
    The contributions must already be bounded (:func:`bound_contributions`).
    """
    keys = [x for x in spec.key_columns if x in counts_df.columns]
    scale = noise_scale(mechanism, epsilon, max_contributions, delta)
    out = counts_df
    raw_users = F.col(spec.user_column)
    for col in (spec.user_column, *spec.other_counts):
        if col in out.columns:
            noisy = F.greatest(
                F.round(F.col(col) + noise_column(mechanism, scale, seed, col, keys)), F.lit(0)
            )
            out = out.withColumn(f"_noisy_{col}", noisy.cast("long"))
    for col in spec.estimate_columns:
        if col in out.columns:
            factor = F.when(raw_users > 0, F.col(col) / raw_users)
            out = out.withColumn(col, factor * F.col(f"_noisy_{spec.user_column}"))
    for col in (spec.user_column, *spec.other_counts):
        if col in counts_df.columns:
            out = out.withColumn(col, F.col(f"_noisy_{col}")).drop(f"_noisy_{col}")
    return out


def local_day(ts_col: str, timezone: str) -> Column:
    """The local calendar date of a UTC timestamp column (the unit of contribution bounds)."""
    return F.to_date(F.from_utc_timestamp(F.col(ts_col), timezone))


def bound_per_local_day(
    df: DataFrame, time_col: str, privacy: PrivacyParams, timezone: str
) -> DataFrame:
    """At most ``max_contributions`` rows per user and local day of ``time_col``."""
    return bound_contributions(
        df,
        C.USER_KEY,
        privacy.max_contributions,
        privacy.noise_seed,
        per=(local_day(time_col, timezone),),
    )


def bound_stays(stays_df: DataFrame, privacy: PrivacyParams, timezone: str) -> DataFrame:
    """At most ``max_contributions`` stays per user and local day of the stay's start."""
    return bound_per_local_day(stays_df, C.STAY_START, privacy, timezone)


def bound_trips(trips_df: DataFrame, privacy: PrivacyParams, timezone: str) -> DataFrame:
    """At most ``max_contributions`` trips per user and local day of departure.

    Bound after the trips are made from all stays: dropping stays first would invent
    trips between stays that were not consecutive."""
    return bound_per_local_day(trips_df, C.DEPARTURE, privacy, timezone)


def sensitivity(table: str, max_contributions: int) -> int:
    """L1 sensitivity of one (resolution, period) layer of ``table``: the most rows (and
    the most a count column) one user can change in it.

    residents, residence_shift, od_home_work: one home (one pair) per user per resolution.
    present_population with at most c stays a day: an hour or a day touches the c stays
    of its day plus the one in progress since the day before (c + 1); a night (22:00-06:00)
    touches two days' stays (2c + 1). od_trips with at most c trips a day by departure:
    a day holds c, a night's departures fall on two days (2c). od_departements (days
    only): c.
    """
    c = max_contributions
    bounds = {
        "residents": 1,
        "residence_shift": 1,
        "od_home_work": 1,
        "present_population": 2 * c + 1,
        "od_trips": 2 * c,
        "od_departements": c,
    }
    if table not in bounds:
        raise ValueError(f"no contribution bound for table {table!r}; known: {sorted(bounds)}")
    return bounds[table]


def noise_summary(table: str, privacy: PrivacyParams) -> dict | None:
    """What the manifest says of a table's noise (None when noise is off)."""
    if privacy.noise == "none":
        return None
    delta = sensitivity(table, privacy.max_contributions)
    return {
        "mechanism": privacy.noise,
        "epsilon": privacy.epsilon,
        "delta": privacy.delta if privacy.noise == "gaussian" else None,
        "sensitivity": delta,
        "scale": round(noise_scale(privacy.noise, privacy.epsilon, delta, privacy.delta), 3),
    }


def with_configured_noise(
    counts_df: DataFrame, spec: TableSpec, privacy: PrivacyParams, release: str
) -> DataFrame:
    """``counts_df`` unchanged when noise is off, else :func:`with_noise` at the table's
    sensitivity (the contributions are bounded upstream: bound_stays / bound_trips).

    ``release`` (the month) is part of the seed: the same cell gets fresh noise each
    month, else the noise would cancel in a difference of two releases and expose the
    exact change.
    """
    if privacy.noise == "none":
        return counts_df
    return with_noise(
        counts_df,
        spec,
        privacy.epsilon,
        privacy.noise,
        f"{privacy.noise_seed}|{release}",
        sensitivity(spec.name, privacy.max_contributions),
        privacy.delta,
    )
