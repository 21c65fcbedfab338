"""Daily routines: each user's stays on one local day, vectorised over users.

A day has at most four stays, in this order: the morning place (where the night was spent),
work, a leisure place, the evening place (where the next night is spent). Times are local
seconds since midnight (Europe/Paris); travel between two places takes time, with no stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobiterra.geo.grid import distance_km
from mobiterra.simulate.population import HOME, LEISURE, N_LEISURE, WORK

DAY_S = 86_400
HOUR_S = 3_600
# Leaving home for work ~ N(8:00, 45 min), leaving work ~ N(17:30, 1 h) (DESIGN.md day
# anchor window 09:00-17:00 falls inside).
LEAVE_HOME_MEAN_H, LEAVE_HOME_SD_H = 8.0, 0.75
LEAVE_WORK_MEAN_H, LEAVE_WORK_SD_H = 17.5, 1.0
MIN_WORK_H = 3.0
# A worker is off on a given weekday with this probability (leave, sickness).
ABSENCE_PROBABILITY = 0.08
# Probability of a leisure outing: after work, on a weekday off, on a weekend day.
LEISURE_AFTER_WORK, LEISURE_WEEKDAY, LEISURE_WEEKEND = 0.25, 0.4, 0.6
# Door-to-door travel: 10 minutes plus distance at a speed growing with distance
# (20 km/h in town up to 100 km/h on motorways / trains).
TRAVEL_FIXED_S = 600


@dataclass(frozen=True)
class DayContext:
    weekend: bool
    lockdown: bool
    still_commuting: float = 1.0
    leisure_factor: float = 1.0


@dataclass(frozen=True)
class Stays:
    """Stays of one day: arrays of equal length (user index within the block)."""

    user: np.ndarray
    anchor: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


def travel_seconds(lat, lon, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Travel time between anchors a and b of each user (rows of lat/lon)."""
    rows = np.arange(len(a))
    d = distance_km(lat[rows, a], lon[rows, a], lat[rows, b], lon[rows, b])
    d = np.nan_to_num(d)
    speed = np.minimum(20.0 + 0.5 * d, 100.0)
    return TRAVEL_FIXED_S + d / speed * HOUR_S


def day_stays(
    morning: np.ndarray,
    evening: np.ndarray,
    worker: np.ndarray,
    essential: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    ctx: DayContext,
    rng: np.random.Generator,
) -> Stays:
    """The stays of every user of a block on one day.

    morning / evening: anchor of the night before / after; worker, essential: per user;
    lat / lon: (users, anchors) places, for travel times.
    """
    n = len(morning)
    at_home = (morning == HOME) & (evening == HOME)
    commuting_ok = (~ctx.lockdown) | essential
    works = worker & (not ctx.weekend) & (morning == HOME) & commuting_ok
    works &= rng.random(n) > ABSENCE_PROBABILITY
    moving = ~works & (morning != evening)

    p_leisure = np.where(
        works, LEISURE_AFTER_WORK, LEISURE_WEEKEND if ctx.weekend else LEISURE_WEEKDAY
    )
    if ctx.lockdown:
        p_leisure = p_leisure * ctx.leisure_factor
    leisure = at_home & (rng.random(n) < p_leisure)
    spot = LEISURE + (0 if ctx.lockdown else rng.integers(0, N_LEISURE, n))
    spot = np.broadcast_to(spot, (n,)).astype(np.int8)
    work_anchor = np.full(n, WORK, np.int8)

    starts = np.zeros((n, 4))
    ends = np.zeros((n, 4))
    # worker's day
    leave = np.clip(rng.normal(LEAVE_HOME_MEAN_H, LEAVE_HOME_SD_H, n), 5.5, 10.5) * HOUR_S
    w_start = leave + travel_seconds(lat, lon, morning, np.where(works, work_anchor, morning))
    w_end = np.maximum(
        rng.normal(LEAVE_WORK_MEAN_H, LEAVE_WORK_SD_H, n) * HOUR_S, w_start + MIN_WORK_H * HOUR_S
    )
    w_end = np.minimum(w_end, 21.5 * HOUR_S)
    # leisure outing: after work, or during the day
    day_out = rng.uniform(10, 18, n) * HOUR_S
    from_anchor = np.where(works, work_anchor, morning)
    l_start = np.where(works, w_end, day_out) + np.where(
        works, travel_seconds(lat, lon, from_anchor, spot), 0
    )
    l_end = l_start + np.where(works, rng.uniform(1, 2.5, n), rng.uniform(1, 4, n)) * HOUR_S
    # moving between two night places (weekend trip, relocation, ski week)
    t_move = rng.uniform(9, 17, n) * HOUR_S

    s0_end = np.full(n, float(DAY_S))
    s0_end = np.where(works, leave, s0_end)
    s0_end = np.where(~works & leisure, day_out - travel_seconds(lat, lon, morning, spot), s0_end)
    s0_end = np.where(moving, t_move, s0_end)
    last_out = np.where(leisure, l_end, np.where(works, w_end, t_move))
    last_from = np.where(leisure, spot, np.where(works, work_anchor, morning))
    s3_start = last_out + travel_seconds(lat, lon, last_from, evening)
    s3_start = np.where(works | leisure | moving, s3_start, DAY_S)

    starts[:, 0], ends[:, 0] = 0, s0_end
    starts[:, 1], ends[:, 1] = np.where(works, w_start, 0), np.where(works, w_end, 0)
    starts[:, 2], ends[:, 2] = np.where(leisure, l_start, 0), np.where(leisure, l_end, 0)
    starts[:, 3], ends[:, 3] = np.minimum(s3_start, DAY_S), DAY_S
    ends = np.minimum(ends, DAY_S)
    anchors = np.stack([morning, work_anchor, spot, evening], axis=1).astype(np.int8)
    valid = ends > starts + 60
    user = np.broadcast_to(np.arange(n)[:, None], (n, 4))
    return Stays(
        user[valid], anchors[valid], starts[valid].astype(np.int32), ends[valid].astype(np.int32)
    )
