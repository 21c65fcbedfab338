"""Network events from stays: data/call/SMS activity with a diurnal rhythm, plus periodic
location updates, each served by the cell covering the user's place."""

from __future__ import annotations

import numpy as np

from mobiterra.simulate.routines import DAY_S, HOUR_S, Stays

# Relative mobile activity by local hour (shape of published operator traffic curves:
# a trough at 3-5 h, a rise from 7 h, a plateau in the day and an evening peak).
DIURNAL_PROFILE = np.array(
    [0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.3, 0.7, 1.0, 1.1, 1.15, 1.2,
     1.25, 1.2, 1.15, 1.15, 1.2, 1.3, 1.4, 1.45, 1.4, 1.2, 0.9, 0.6]
)  # fmt: skip
_CDF_X = np.arange(25) * HOUR_S
_CDF_Y = np.concatenate([[0.0], np.cumsum(DIURNAL_PROFILE) / DIURNAL_PROFILE.sum()])
# Share of events handed over to a neighbouring sector of the same site.
HANDOVER_SHARE = 0.1


def day_events(
    stays: Stays,
    activity: np.ndarray,
    update_period_h: np.ndarray,
    update_phase_h: np.ndarray,
    cell: np.ndarray,
    alt_cell: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of one day: (user index, local second of the day, cell index), sorted by user
    then time. Places off the network (cell -1) produce none.

    activity: mean activity events a day per user; update_period_h / update_phase_h: periodic
    location updates; cell / alt_cell: (users, anchors) serving and handover cells.
    """
    stay_cell = cell[stays.user, stays.anchor]
    on = stay_cell >= 0
    u, a, s, e = stays.user[on], stays.anchor[on], stays.start_s[on], stays.end_s[on]

    # activity: a Poisson process with the diurnal rhythm, by inverse transform sampling
    f0, f1 = np.interp(s, _CDF_X, _CDF_Y), np.interp(e, _CDF_X, _CDF_Y)
    n_act = rng.poisson(activity[u] * (f1 - f0))
    rep = np.repeat(np.arange(len(u)), n_act)
    q = f0[rep] + rng.random(len(rep)) * (f1 - f0)[rep]
    t_act = np.interp(q, _CDF_Y, _CDF_X)
    stay_act = rep

    # periodic location updates at phase + k * period, inside a stay (none while travelling)
    users = np.unique(u)
    k_max = int(np.ceil(24 / update_period_h.min())) if len(users) else 0
    t_upd = (
        update_phase_h[users][:, None] + np.arange(k_max)[None, :] * update_period_h[users][:, None]
    ) * HOUR_S
    u_upd = np.broadcast_to(users[:, None], t_upd.shape)
    keep = t_upd < DAY_S
    t_upd, u_upd = t_upd[keep], u_upd[keep]
    # stays of a user are contiguous and ordered; find the stay holding each update
    first = np.searchsorted(u, u_upd, side="left")
    last = np.searchsorted(u, u_upd, side="right")
    stay_upd = np.full(len(t_upd), -1)
    for k in range(4):  # at most four stays a day
        idx = first + k
        ok = (idx < last) & (stay_upd < 0)
        idx_c = np.minimum(idx, len(u) - 1)
        hit = ok & (s[idx_c] <= t_upd) & (t_upd < e[idx_c])
        stay_upd[hit] = idx_c[hit]
    inside = stay_upd >= 0

    stay_all = np.concatenate([stay_act, stay_upd[inside]])
    t_all = np.concatenate([t_act, t_upd[inside]]).astype(np.int64)
    user_all = u[stay_all]
    handover = rng.random(len(stay_all)) < HANDOVER_SHARE
    cells = np.where(handover, alt_cell[user_all, a[stay_all]], cell[user_all, a[stay_all]])
    order = np.lexsort((t_all, user_all))
    return user_all[order], t_all[order], cells[order]
