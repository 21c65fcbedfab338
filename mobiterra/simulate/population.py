"""Subscribers of one operator: homes, workplaces, secondary homes, leisure places, activity.

Every user has up to ``N_ANCHORS`` places (anchors); routines move users between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from mobiterra.geo.grid import distance_km
from mobiterra.simulate.antennas import Antennas, nearest_site
from mobiterra.simulate.territory import (
    COASTAL_DEPARTEMENTS,
    MOUNTAIN_DEPARTEMENTS,
    Territory,
    choose_weighted,
    offset_points,
    points_in_communes,
)

HOME, WORK, SECOND, REFUGE, RESORT, LEISURE = 0, 1, 2, 3, 4, 5
N_LEISURE = 3
N_ANCHORS = LEISURE + N_LEISURE
ANCHOR_NAMES = ["home", "work", "second_home", "refuge", "resort", "leisure", "leisure", "leisure"]

# Share of subscribers with a job outside the home (employment rate of adults, INSEE ≈ 65 %,
# applied to subscribers, mostly adults).
WORKER_SHARE = 0.55
# Commute distance: log-normal, median 8 km (INSEE: median home-work distance ≈ 8 km for
# those leaving their commune), capped at 100 km; candidates then weighted by job mass.
COMMUTE_MEDIAN_KM, COMMUTE_SIGMA, COMMUTE_MAX_KM = 8.0, 1.0, 100.0
WORK_CANDIDATES = 8
# Job mass ∝ density ** JOB_MASS_EXPONENT: the stronger pull of big cities.
JOB_MASS_EXPONENT = 0.7
LEISURE_MEDIAN_KM, LEISURE_SIGMA = 3.0, 0.9
# Secondary homes (assumption, order of magnitude of INSEE's "multi-résidence" figures:
# Parisians most often have access to one).
SECOND_HOME_SHARE = {"75": 0.22, "92": 0.15, "78": 0.12, "94": 0.1, "69": 0.1}
SECOND_HOME_DEFAULT_SHARE = 0.07
SECOND_HOME_CANDIDATES = 16
SECOND_HOME_DECAY_KM = 250.0
# Mean data/call/SMS events a day (log-normal across users: some sparse, some dense).
ACTIVITY_MEAN_PER_DAY = 4.0
ACTIVITY_SIGMA = 1.0
# Periodic location updates (hours between two) — at most 6 h, so every night is seen.
UPDATE_PERIOD_HOURS = (3.0, 4.0, 6.0)


@dataclass
class World:
    """Users and their places; ``anchor_lat``/``anchor_lon`` are (n_users, N_ANCHORS), NaN
    where a user lacks that place. Filled in by :func:`locate_anchors`."""

    users: pd.DataFrame
    anchor_lat: np.ndarray
    anchor_lon: np.ndarray
    anchor_commune: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ANCHORS), np.int32))
    anchor_cell: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ANCHORS), np.int32))
    anchor_alt_cell: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ANCHORS), np.int32))
    anchor_h3: np.ndarray = field(default_factory=lambda: np.zeros((0, N_ANCHORS), np.int64))


def user_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pseudonymous user ids: 16 random hex characters."""
    raw = rng.integers(0, 2**63, size=n, dtype=np.int64)
    return np.char.zfill(np.char.mod("%x", raw), 16).astype(object)


def draw_subscribers(ter: Territory, rng: np.random.Generator, market_share: float) -> np.ndarray:
    """Home commune index of each sampled subscriber, in proportion to commune population."""
    inside = np.flatnonzero(ter.inside)
    pop = ter.communes["population"].to_numpy()[inside]
    n = rng.binomial(pop, market_share * ter.fraction[inside])
    return np.repeat(inside, n)


def _snap_to_sites(
    antennas: Antennas,
    lat,
    lon,
    rng,
    n_candidates: int,
    median_km: float,
    sigma: float,
    max_km: float,
):
    """Places near (lat, lon): candidates at log-normal distances, the one kept weighted by
    the job / activity mass around it; the place is near the chosen candidate's site."""
    n = len(lat)
    dist = np.minimum(
        np.exp(np.log(median_km) + sigma * rng.standard_normal((n, n_candidates))), max_km
    )
    c_lat, c_lon = offset_points(
        lat[:, None], lon[:, None], dist, rng.uniform(0, 2 * np.pi, dist.shape)
    )
    site = nearest_site(antennas, c_lat.ravel(), c_lon.ravel()).reshape(n, n_candidates)
    mass = antennas.site_density[site] ** JOB_MASS_EXPONENT
    cum = np.cumsum(mass, axis=1)
    pick = (cum < rng.random(n)[:, None] * cum[:, -1:]).sum(axis=1)
    chosen = site[np.arange(n), pick]
    jitter = rng.normal(0, 0.004, (2, n))  # ≈ 300-400 m around the site
    return antennas.site_lat[chosen] + jitter[0], antennas.site_lon[chosen] + jitter[1]


def second_homes(ter: Territory, home_commune: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Commune of each user's secondary home (all metropolitan France; coast, mountains and
    small towns favoured, far places less likely)."""
    com = ter.communes
    dep = com["departement_code"].to_numpy()
    pop = com["population"].to_numpy().astype(float)
    attract = pop * np.where(
        np.isin(dep, list(COASTAL_DEPARTEMENTS | MOUNTAIN_DEPARTEMENTS)), 3.0, 1.0
    )
    attract *= np.where(pop < 10_000, 2.0, 0.3)
    n = len(home_commune)
    cand = choose_weighted(rng, attract, n * SECOND_HOME_CANDIDATES).reshape(
        n, SECOND_HOME_CANDIDATES
    )
    lat, lon = com["rep_lat"].to_numpy(), com["rep_lon"].to_numpy()
    d = distance_km(lat[home_commune][:, None], lon[home_commune][:, None], lat[cand], lon[cand])
    w = np.exp(-d / SECOND_HOME_DECAY_KM) * (dep[cand] != dep[home_commune][:, None])
    cum = np.cumsum(w, axis=1) + 1e-12
    pick = (
        (cum < rng.random(n)[:, None] * cum[:, -1:]).sum(axis=1).clip(0, SECOND_HOME_CANDIDATES - 1)
    )
    return cand[np.arange(n), pick]


def draw_population(
    ter: Territory, antennas: Antennas, rng: np.random.Generator, market_share: float
) -> World:
    """Residents of the territory with their home, work, secondary home and leisure places."""
    return people(ter, antennas, rng, draw_subscribers(ter, rng, market_share))


def people(
    ter: Territory,
    antennas: Antennas,
    rng: np.random.Generator,
    home_commune: np.ndarray,
    *,
    visitor: bool = False,
) -> World:
    """Users living in the given communes, with their places and activity."""
    n = len(home_commune)
    com = ter.communes
    lat = np.full((n, N_ANCHORS), np.nan)
    lon = np.full((n, N_ANCHORS), np.nan)
    lat[:, HOME], lon[:, HOME] = points_in_communes(com, home_commune, rng)

    worker = rng.random(n) < WORKER_SHARE
    w = np.flatnonzero(worker)
    lat[w, WORK], lon[w, WORK] = _snap_to_sites(
        antennas,
        lat[w, HOME],
        lon[w, HOME],
        rng,
        WORK_CANDIDATES,
        COMMUTE_MEDIAN_KM,
        COMMUTE_SIGMA,
        COMMUTE_MAX_KM,
    )
    dep = com["departement_code"].to_numpy()[home_commune]
    share = pd.Series(dep).map(SECOND_HOME_SHARE).fillna(SECOND_HOME_DEFAULT_SHARE).to_numpy()
    s = np.flatnonzero(rng.random(n) < share)
    second = second_homes(ter, home_commune[s], rng)
    lat[s, SECOND], lon[s, SECOND] = points_in_communes(com, second, rng)

    for k in range(N_LEISURE):
        lat[:, LEISURE + k], lon[:, LEISURE + k] = _snap_to_sites(
            antennas, lat[:, HOME], lon[:, HOME], rng, 4, LEISURE_MEDIAN_KM, LEISURE_SIGMA, 40.0
        )
    d_leisure = distance_km(
        lat[:, HOME, None], lon[:, HOME, None], lat[:, LEISURE:], lon[:, LEISURE:]
    )
    order = np.argsort(d_leisure, axis=1)  # the first leisure place is the nearest
    lat[:, LEISURE:] = np.take_along_axis(lat[:, LEISURE:], order, axis=1)
    lon[:, LEISURE:] = np.take_along_axis(lon[:, LEISURE:], order, axis=1)

    users = pd.DataFrame(
        {
            "user_id": user_ids(rng, n),
            "home_commune": home_commune.astype(np.int32),
            "worker": worker,
            "visitor": visitor,
            "activity": activity_levels(rng, n),
            "update_period_h": rng.choice(UPDATE_PERIOD_HOURS, n),
            "update_phase_h": rng.random(n),
        }
    )
    users["update_phase_h"] *= users["update_period_h"]
    return World(users, lat, lon)


def activity_levels(
    rng: np.random.Generator, n: int, mean: float = ACTIVITY_MEAN_PER_DAY
) -> np.ndarray:
    """Mean events a day per user, log-normal with the given mean."""
    return mean * np.exp(ACTIVITY_SIGMA * rng.standard_normal(n) - ACTIVITY_SIGMA**2 / 2)


def commune_of_points(ter: Territory, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index of the commune containing each point (nearest commune when in none)."""
    geoms = ter.communes.geometry.to_numpy()
    tree = shapely.STRtree(geoms)
    pts = shapely.points(lon, lat)
    p, c = tree.query(pts, predicate="within")
    out = np.full(len(pts), -1, dtype=np.int64)
    out[p[::-1]] = c[::-1]
    miss = out < 0
    if miss.any():
        out[miss] = tree.query_nearest(pts[miss], all_matches=False)[1]
    return out.astype(np.int32)


def concat_worlds(a: World, b: World) -> World:
    """Users of two worlds together (anchors not yet located)."""
    return World(
        pd.concat([a.users, b.users], ignore_index=True),
        np.concatenate([a.anchor_lat, b.anchor_lat]),
        np.concatenate([a.anchor_lon, b.anchor_lon]),
    )


def locate_anchors(world: World, ter: Territory, antennas: Antennas) -> World:
    """Commune, serving cell (-1 outside the territory: off the network) and H3 res-8 cell
    of every place."""
    from mobiterra.geo.grid import latlng_to_h3

    has = ~np.isnan(world.anchor_lat)
    lat, lon = world.anchor_lat[has], world.anchor_lon[has]
    commune = np.full(has.shape, -1, np.int32)
    cell = np.full(has.shape, -1, np.int32)
    alt = np.full(has.shape, -1, np.int32)
    h3_8 = np.zeros(has.shape, np.int64)
    commune[has] = commune_of_points(ter, lat, lon)
    on_network = has & (commune >= 0)
    on_network[has] = ter.inside[commune[has]]
    c, a = antennas.serving_cell(world.anchor_lat[on_network], world.anchor_lon[on_network])
    cell[on_network], alt[on_network] = c, a
    h3_8[has] = latlng_to_h3(lat, lon, H3_RESOLUTION)
    world.anchor_commune, world.anchor_cell, world.anchor_alt_cell, world.anchor_h3 = (
        commune,
        cell,
        alt,
        h3_8,
    )
    return world


# Truth places are recorded on H3 resolution 8 (≈ 0.74 km², the pipeline's finest).
H3_RESOLUTION = 8
