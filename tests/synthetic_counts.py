"""Realistic gate inputs without Spark: users with homes on real H3 cells around Paris
(skewed: a dense centre, a long tail of sparse suburbs and a few rural movers), counted
at every resolution the way the jobs count them (coarse = parents of the finest)."""

from __future__ import annotations

from datetime import datetime

import h3
import numpy as np
import pandas as pd

from jobs.suppression import h3_parent_np
from mobiterra import columns as C

RESOLUTIONS = (5, 6, 7, 8)
PARIS = (48.8566, 2.3522)
YONNE = (47.798, 3.567)


def _cells_around(rng: np.random.Generator, n: int, centre, spread_deg: float) -> np.ndarray:
    lat = centre[0] + rng.standard_t(3, n) * spread_deg
    lon = centre[1] + rng.standard_t(3, n) * spread_deg * 1.5
    return np.array(
        [h3.str_to_int(h3.latlng_to_cell(a, b, 8)) for a, b in zip(lat, lon, strict=True)]
    )


def homes(users: int, seed: int, move_share: float = 0.12) -> pd.DataFrame:
    """user_id, baseline home, current home (int64 res-8 cells)."""
    rng = np.random.default_rng(seed)
    base = _cells_around(rng, users, PARIS, 0.03)
    current = base.copy()
    movers = rng.random(users) < move_share
    to_yonne = movers & (rng.random(users) < 0.4)
    current[movers] = _cells_around(rng, int(movers.sum()), PARIS, 0.05)
    current[to_yonne] = _cells_around(rng, int(to_yonne.sum()), YONNE, 0.08)
    ids = [f"user-{seed}-{i:06d}" for i in range(users)]
    return pd.DataFrame({C.USER_ID: ids, "base": base, "home": current})


def _explode(df: pd.DataFrame, cells: dict[str, str], resolutions) -> pd.DataFrame:
    parts = []
    for r in resolutions:
        part = df.drop(columns=list(cells)).assign(**{C.RESOLUTION: r})
        for src, dst in cells.items():
            part[dst] = h3_parent_np(df[src].to_numpy(), r)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def count_residents(h: pd.DataFrame, col: str = "home", resolutions=RESOLUTIONS) -> pd.DataFrame:
    x = _explode(h[[C.USER_ID, col]], {col: C.H3_CELL}, resolutions)
    out = x.groupby([C.RESOLUTION, C.H3_CELL]).size().rename(C.RESIDENTS).reset_index()
    # expansion: one subscriber stands for ~2.7 inhabitants (operator share ~37 %)
    return out.assign(**{C.RESIDENTS_EST: out[C.RESIDENTS] * 2.7})


def count_shift(h: pd.DataFrame, resolutions=RESOLUTIONS) -> pd.DataFrame:
    cells = {"base": C.ORIGIN_CELL, "home": C.DESTINATION_CELL}
    x = _explode(h[[C.USER_ID, "base", "home"]], cells, resolutions)
    keys = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL]
    return x.groupby(keys).size().rename(C.USERS).reset_index()


def count_presence(h: pd.DataFrame, seed: int, resolutions=RESOLUTIONS) -> pd.DataFrame:
    """Distinct users per cell and hour; some users are seen in two cells in an hour."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for hour in (3, 9):
        start = pd.Timestamp(datetime(2020, 3, 2, hour))
        here = h["home"].to_numpy() if hour == 3 else _cells_around(rng, len(h), PARIS, 0.02)
        rows.append(pd.DataFrame({C.USER_ID: h[C.USER_ID], "cell": here, C.PERIOD_START: start}))
        second = rng.random(len(h)) < 0.2
        extra = h3_parent_np(here[second], 8)  # same cell or a neighbour's sibling
        extra = extra ^ (rng.integers(1, 7, second.sum()) << 3).astype(np.int64)
        rows.append(
            pd.DataFrame({C.USER_ID: h[C.USER_ID][second], "cell": extra, C.PERIOD_START: start})
        )
    x = _explode(pd.concat(rows), {"cell": C.H3_CELL}, resolutions)
    keys = [C.RESOLUTION, C.H3_CELL, C.PERIOD_START]
    out = x.groupby(keys)[C.USER_ID].nunique().rename(C.USERS).reset_index()
    return out.assign(**{C.PERIOD: "hour", C.USERS_EST: out[C.USERS] * 2.7})


def count_od(h: pd.DataFrame, seed: int, resolutions=RESOLUTIONS) -> pd.DataFrame:
    """Trips home -> a hub on one day; a user makes 1-3 trips."""
    rng = np.random.default_rng(seed + 2)
    n = len(h)
    reps = rng.integers(1, 4, n)
    origin = np.repeat(h["home"].to_numpy(), reps)
    # destinations: 40 hubs (stations, business districts) with Zipf-like popularity
    hubs = _cells_around(rng, 40, PARIS, 0.03)
    weights = 1 / np.arange(1, 41)
    dest = rng.choice(hubs, int(reps.sum()), p=weights / weights.sum())
    user = np.repeat(h[C.USER_ID].to_numpy(), reps)
    trips = pd.DataFrame({C.USER_ID: user, "o": origin, "d": dest})
    x = _explode(trips, {"o": C.ORIGIN_CELL, "d": C.DESTINATION_CELL}, resolutions)
    keys = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL]
    out = x.groupby(keys).agg(**{C.TRIPS: (C.USER_ID, "size"), C.USERS: (C.USER_ID, "nunique")})
    return out.reset_index().assign(
        **{C.PERIOD_START: pd.Timestamp(datetime(2020, 3, 2)), C.PERIOD: "day"}
    )


def count_home_work(h: pd.DataFrame, seed: int, resolutions=RESOLUTIONS) -> pd.DataFrame:
    """The month's home -> work matrix: 95 % of users have a workplace, the hub of their
    district (res-6 parent of home), so a district's flow is nearly all its residents."""
    rng = np.random.default_rng(seed + 3)
    workers = h[rng.random(len(h)) < 0.95]
    hubs = _cells_around(rng, 40, PARIS, 0.03)
    district = h3_parent_np(workers["home"].to_numpy(), 6)
    pairs = pd.DataFrame(
        {C.USER_ID: workers[C.USER_ID], "o": workers["home"], "d": hubs[district % 40]}
    )
    x = _explode(pairs, {"o": C.ORIGIN_CELL, "d": C.DESTINATION_CELL}, resolutions)
    keys = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL]
    out = x.groupby(keys).size().rename(C.USERS).reset_index()
    return out.assign(
        **{
            C.TRIPS: out[C.USERS],
            C.PERIOD_START: pd.Timestamp(datetime(2020, 3, 1)),
            C.PERIOD: "month",
        }
    )
