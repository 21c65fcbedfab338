"""Scenarios (data files) and the night plan: where each user sleeps each night.

The plan is an int8 array (users × nights) of anchor indices; night ``i`` starts on the
evening of ``first_day - 1 + i``. Routines and the truth both read it, so the truth is
exact by construction.
"""

from __future__ import annotations

import json
import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from mobiterra.simulate.antennas import Antennas
from mobiterra.simulate.population import HOME, REFUGE, RESORT, SECOND, World, concat_worlds, people
from mobiterra.simulate.territory import Territory, choose_weighted, points_in_communes

DEFAULT_SCENARIO = "scenario_lockdown_2020.toml"
# Outside any scenario, a user with a secondary home spends a weekend there with this
# probability (assumption: one weekend in four).
WEEKEND_SECOND_HOME_PROBABILITY = 0.25
TOURIST_STAY_NIGHTS = 7  # a ski week, Saturday to Saturday


def load_scenario(path: str | Path | None) -> dict:
    """A scenario from a TOML or JSON file; ``None`` = the packaged 2020 lockdown; ``"none"``
    = no scenario (ordinary life throughout)."""
    if path is None:
        text = (resources.files("mobiterra") / "data" / DEFAULT_SCENARIO).read_text("utf-8")
        return tomllib.loads(text)
    if str(path).lower() == "none":
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"scenario file {p} not found (expected a .toml or .json file)")
    return (
        json.loads(p.read_text("utf-8"))
        if p.suffix == ".json"
        else tomllib.loads(p.read_text("utf-8"))
    )


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def in_lockdown(scenario: dict, day: date) -> bool:
    """Whether the scenario's restrictions apply on this day."""
    if "start" not in scenario:
        return False
    return _as_date(scenario["start"]) <= day < _as_date(scenario["end"])


def night_dates(first_day: date, last_day: date) -> pd.DatetimeIndex:
    """Evening dates of the plan's nights: the eve of the first day to the last day."""
    return pd.date_range(
        pd.Timestamp(first_day) - pd.Timedelta(days=1), pd.Timestamp(last_day), freq="D"
    )


def plan_nights(
    world: World,
    ter: Territory,
    antennas: Antennas,
    scenario: dict,
    first_day: date,
    last_day: date,
    rng: np.random.Generator,
) -> tuple[World, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Where every user sleeps each night; adds ski visitors to the world.

    Returns (world, plan, moves, visits): ``moves`` are the planted relocations, ``visits``
    the ski visitors' stays.
    """
    world, visits = _add_ski_visitors(world, ter, antennas, scenario, first_day, last_day, rng)
    nights = night_dates(first_day, last_day)
    n = len(world.users)
    plan = np.full((n, len(nights)), HOME, dtype=np.int8)

    # weekends at the secondary home (Friday and Saturday nights)
    mobility = scenario.get("mobility", {})
    has_second = ~np.isnan(world.anchor_lat[:, SECOND])
    for friday in np.flatnonzero(nights.dayofweek == 4):
        p = WEEKEND_SECOND_HOME_PROBABILITY
        if in_lockdown(scenario, nights[friday].date()):
            p *= mobility.get("weekend_second_home_factor", 1.0)
        go = has_second & (rng.random(n) < p)
        plan[go, friday : friday + 2] = SECOND

    moves = [
        _relocate(world, ter, scenario, reloc, rng) for reloc in scenario.get("relocations", [])
    ]
    moves_df = pd.concat(moves, ignore_index=True) if moves else _empty_moves()
    night_day = nights.date
    for row in moves_df.itertuples():
        away = (night_day >= row.leave_date) & (night_day < row.return_date)
        plan[row.user_index, away] = REFUGE
    for row in visits.itertuples():
        there = (night_day >= row.arrive_date) & (night_day < row.leave_date)
        plan[row.user_index, there] = RESORT
    return world, plan, moves_df, visits


def _empty_moves() -> pd.DataFrame:
    cols = ["user_index", "destination_commune", "destination_kind", "leave_date", "return_date"]
    return pd.DataFrame(
        {
            c: pd.Series(dtype="int64" if c in ("user_index", "destination_commune") else object)
            for c in cols
        }
    )


def _relocate(
    world: World, ter: Territory, scenario: dict, reloc: dict, rng: np.random.Generator
) -> pd.DataFrame:
    """Pick the movers of one origin and where they go; sets their refuge place."""
    com = ter.communes
    dep = com["departement_code"].to_numpy()
    pop = com["population"].to_numpy()
    users = world.users
    home_dep = dep[users["home_commune"].to_numpy()]
    second_commune = _second_home_commune(world, ter)
    origin = np.flatnonzero((home_dep == reloc["origin"]) & ~users["visitor"].to_numpy())
    origin = origin[rng.permutation(len(origin))]
    n_movers = int(round(reloc["share"] * len(origin)))

    # planted destinations: gain × the destination's residents (sampled at its own
    # fraction inside the territory, at the origin's fraction outside)
    resident_counts = pd.Series(home_dep[~users["visitor"].to_numpy()]).value_counts()
    origin_fraction = ter.fraction[dep == reloc["origin"]].mean()
    targets = {}
    for d, gain in reloc.get("destination_gain", {}).items():
        in_ter = ter.inside[dep == d].any()
        base = (
            resident_counts.get(d, 0)
            if in_ter
            else pop[dep == d].sum() * origin_fraction * _market(world)
        )
        targets[d] = int(round(gain * base))
    planted = sum(targets.values())
    if planted > n_movers:  # not enough movers at the origin's sampling fraction: scale down
        targets = {d: int(np.floor(t * n_movers / planted)) for d, t in targets.items()}

    small = pop < reloc.get("small_town_max_population", 10_000)
    chosen = np.zeros(len(users), bool)
    rows = []
    for d, count in targets.items():
        pool = origin[~chosen[origin]]
        own = pool[dep[np.maximum(second_commune[pool], 0)] == d]
        own = own[second_commune[own] >= 0][:count]
        family = pool[second_commune[pool] < 0][: count - len(own)]
        chosen[own] = chosen[family] = True
        dest = choose_weighted(rng, np.where((dep == d) & small, pop, 0).astype(float), len(family))
        rows += [(u, second_commune[u], "secondary_home") for u in own]
        rows += [(u, c, "family") for u, c in zip(family, dest, strict=True)]
        _set_refuge(world, ter, own, family, dest, rng)
    # the other movers: secondary home wherever it is, else a small town anywhere
    rest = origin[~chosen[origin]][: max(n_movers - int(chosen.sum()), 0)]
    own = rest[second_commune[rest] >= 0]
    family = rest[second_commune[rest] < 0]
    far = np.where(small & (dep != reloc["origin"]) & ~np.isin(dep, list(targets)), pop, 0).astype(
        float
    )
    dest = choose_weighted(rng, far, len(family))
    rows += [(u, second_commune[u], "secondary_home") for u in own]
    rows += [(u, c, "elsewhere") for u, c in zip(family, dest, strict=True)]
    _set_refuge(world, ter, own, family, dest, rng)

    out = pd.DataFrame(rows, columns=["user_index", "destination_commune", "destination_kind"])
    days = [date.fromisoformat(d) for d in reloc["departure_days"]]
    weights = np.asarray(reloc.get("departure_weights", [1.0] * len(days)), float)
    out["leave_date"] = np.array(days, dtype=object)[choose_weighted(rng, weights, len(out))]
    spread = rng.integers(0, reloc.get("return_spread_days", 0) + 1, len(out))
    out["return_date"] = [
        _as_date(scenario["end"]) + pd.Timedelta(days=int(s)).to_pytimedelta() for s in spread
    ]
    return out.sort_values("user_index", ignore_index=True)


def _market(world: World) -> float:
    return float(world.users.attrs.get("market_share", 0.37))


def _second_home_commune(world: World, ter: Territory) -> np.ndarray:
    """Commune index of each user's secondary home, -1 without one (before anchors are
    located, from the point)."""
    from mobiterra.simulate.population import commune_of_points

    out = np.full(len(world.users), -1, np.int64)
    has = ~np.isnan(world.anchor_lat[:, SECOND])
    out[has] = commune_of_points(ter, world.anchor_lat[has, SECOND], world.anchor_lon[has, SECOND])
    return out


def _set_refuge(world, ter, own, family, dest, rng) -> None:
    world.anchor_lat[own, REFUGE] = world.anchor_lat[own, SECOND]
    world.anchor_lon[own, REFUGE] = world.anchor_lon[own, SECOND]
    lat, lon = points_in_communes(ter.communes, dest, rng)
    world.anchor_lat[family, REFUGE], world.anchor_lon[family, REFUGE] = lat, lon


def _add_ski_visitors(world, ter, antennas, scenario, first_day, last_day, rng):
    """Ski visitors (new users) present at resorts until the season ends."""
    ski = scenario.get("ski")
    cols = ["user_index", "resort_commune", "kind", "arrive_date", "leave_date"]
    none = pd.DataFrame({c: [] for c in cols})
    if not ski:
        return world, none
    com = ter.communes
    dep = com["departement_code"].to_numpy()
    ski_inside = ter.inside & np.isin(dep, ski["departements"])
    season_start, season_end = _as_date(ski["season_start"]), _as_date(ski["season_end"])
    if not ski_inside.any() or season_end < first_day or season_start > last_day:
        return world, none
    home_dep = dep[world.users["home_commune"].to_numpy()]
    residents = int(np.isin(home_dep, ski["departements"]).sum())
    present = residents * ski["present_loss"] / (1 - ski["present_loss"])
    n_seasonal = int(round(present * ski["seasonal_worker_share"]))
    per_week = int(round(present * (1 - ski["seasonal_worker_share"])))
    stays = [("seasonal_worker", season_start, season_end)] * n_seasonal
    week = pd.Timestamp(season_start)
    week += pd.Timedelta(days=(5 - week.dayofweek) % 7)  # first Saturday
    while week.date() < season_end:
        leave = min((week + pd.Timedelta(days=TOURIST_STAY_NIGHTS)).date(), season_end)
        if leave > first_day and week.date() <= last_day:
            stays += [("tourist", week.date(), leave)] * per_week
        week += pd.Timedelta(days=7)
    if not stays:
        return world, none
    # visitors live anywhere in France outside the ski départements, sampled at the ski
    # départements' fraction (they are part of the present population there)
    home_w = np.where(np.isin(dep, ski["departements"]), 0, com["population"].to_numpy()).astype(
        float
    )
    homes = choose_weighted(rng, home_w, len(stays))
    visitors = people(ter, antennas, rng, homes.astype(np.int32), visitor=True)
    resorts = np.flatnonzero(com["commune_code"].isin(ski["resorts"]).to_numpy() & ter.inside)
    if not len(resorts):
        resorts = np.flatnonzero(ski_inside)
    where = resorts[
        choose_weighted(rng, np.sqrt(com["population"].to_numpy()[resorts] + 1.0), len(stays))
    ]
    visitors.anchor_lat[:, RESORT], visitors.anchor_lon[:, RESORT] = points_in_communes(
        com, where, rng
    )
    visits = pd.DataFrame(stays, columns=["kind", "arrive_date", "leave_date"])
    visits.insert(0, "resort_commune", where)
    visits.insert(0, "user_index", np.arange(len(stays)) + len(world.users))
    merged = concat_worlds(world, visitors)
    merged.users.attrs = world.users.attrs
    return merged, visits[cols]
