"""``simulate``: synthetic subscribers' antenna events over real French communes, with truth.

Generation is partitioned by day and by block of users; blocks run in parallel with dask
(processes) and stream to Parquet, so memory holds one block-day at a time per worker.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from importlib import resources
from pathlib import Path

import dask
import numpy as np
import pandas as pd

from mobiterra.simulate import writer
from mobiterra.simulate.antennas import place_antennas, with_served_ranges, write_cells
from mobiterra.simulate.blocks import simulate_block_day
from mobiterra.simulate.population import (
    activity_levels,
    draw_population,
    locate_anchors,
    user_ids,
)
from mobiterra.simulate.routines import DayContext
from mobiterra.simulate.scenario import in_lockdown, load_scenario, night_dates, plan_nights
from mobiterra.simulate.territory import territory as make_territory

DEFAULT_MARKET_SHARE = 0.37  # Orange's share of French mobile subscribers, ≈ 35-40 %
DEFAULT_FRACTION = 0.01
DEFAULT_BLOCK_USERS = 100_000
_WORLD_ARRAYS = (
    "plan",
    "anchor_cell",
    "anchor_alt_cell",
    "anchor_lat",
    "anchor_lon",
    "anchor_commune",
    "anchor_h3",
)
_USER_ARRAYS = ("worker", "essential", "activity", "update_period_h", "update_phase_h")


def simulate(
    territory: list[str] | None,
    start: str | date,
    end: str | date,
    out_dir: str | Path,
    seed: int = 0,
    market_share: float = DEFAULT_MARKET_SHARE,
    sample_fraction: float | str | dict = DEFAULT_FRACTION,
    scenario: str | Path | None = None,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    months: list[str] | None = None,
    activity_per_day: float | None = None,
    update_hours: tuple[float, ...] | None = None,
    workers: int = 2,
    block_users: int = DEFAULT_BLOCK_USERS,
    truth_stays: bool = True,
    single_file: bool = False,
) -> dict:
    """Simulate one operator's subscribers from ``start`` to ``end`` (inclusive days) and
    write ``out_dir/events/``, ``cells.csv`` and ``truth/``. Returns a summary.

    territory: département codes (None with no ``bbox`` = all metropolitan France).
    sample_fraction: share of subscribers simulated, or per département ("75=0.002,...").
    scenario: TOML/JSON scenario file; None = the 2020 lockdown; "none" = no scenario.
    months: write only days of these months (YYYY-MM), the others still planned.
    activity_per_day / update_hours: mean data/call events a day per user and the choice of
        hours between periodic location updates (defaults in ``population``).
    single_file: merge events into ``out_dir/events.parquet`` (small samples).
    """
    t0 = time.perf_counter()
    first, last = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("events", "truth", "_world", "events.parquet"):
        shutil.rmtree(out / sub, ignore_errors=True) if (out / sub).is_dir() else (
            out / sub
        ).unlink(missing_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(5)
    scen = load_scenario(scenario)

    ter = make_territory(territory, bbox, sample_fraction)
    antennas = place_antennas(ter, np.random.default_rng(seeds[0]))
    world = draw_population(ter, antennas, np.random.default_rng(seeds[1]), market_share)
    world.users.attrs["market_share"] = market_share
    world, plan, moves, visits = plan_nights(
        world, ter, antennas, scen, first, last, np.random.default_rng(seeds[2])
    )
    rng = np.random.default_rng(seeds[3])
    n = len(world.users)
    ids = np.sort(user_ids(rng, n))  # index order = id order: files sort by user for free
    if len(np.unique(ids)) != n:
        raise RuntimeError("user id collision; change the seed")
    users = world.users
    users["user_id"] = ids
    users["essential"] = rng.random(n) < scen.get("mobility", {}).get("still_commuting", 1.0)
    if activity_per_day is not None:
        users["activity"] = activity_levels(rng, n, activity_per_day)
    if update_hours:
        users["update_period_h"] = rng.choice(np.asarray(update_hours, float), n)
        users["update_phase_h"] = rng.random(n) * users["update_period_h"]
    world = locate_anchors(world, ter, antennas)
    placed = world.anchor_cell >= 0  # a handover cell is on the same site: same reach
    lat, lon = world.anchor_lat[placed], world.anchor_lon[placed]
    antennas = with_served_ranges(
        antennas,
        np.concatenate([lat, lat]),
        np.concatenate([lon, lon]),
        np.concatenate([world.anchor_cell[placed], world.anchor_alt_cell[placed]]),
    )
    t_world = time.perf_counter() - t0

    # static outputs and the truth that does not depend on the day
    write_cells(antennas, out / "cells.csv")
    writer.write_population(ter, out / "population.csv")
    com = ter.communes[["commune_code", "departement_code"]]
    nights = night_dates(first, last)
    days = pd.date_range(first, last, freq="D")
    keep = days.strftime("%Y-%m").isin(months) if months else np.ones(len(days), bool)
    out_months = sorted(set(days[keep].strftime("%Y-%m")))
    truth = out / "truth"
    homes = pd.concat(
        [writer.truth_homes(world, com, plan[:, 1:], nights[1:], m) for m in out_months],
        ignore_index=True,
    )
    writer.write_frame(homes, truth / "homes.parquet")
    writer.write_frame(writer.truth_workplaces(world, com), truth / "workplaces.parquet")
    writer.write_frame(writer.truth_moves(world, com, moves), truth / "moves.parquet")
    visits_out = visits.assign(
        user_id=ids[visits["user_index"].to_numpy(dtype=np.int64)],
        resort_commune_code=com["commune_code"].to_numpy()[
            visits["resort_commune"].to_numpy(dtype=np.int64)
        ],
    ).drop(columns=["user_index", "resort_commune"])
    writer.write_frame(visits_out, truth / "visits.parquet")
    frac = ter.fraction[users["home_commune"].to_numpy()]
    writer.write_frame(
        pd.DataFrame(
            {
                "user_id": ids,
                "visitor": users["visitor"].to_numpy(),
                "worker": users["worker"].to_numpy(),
                "sampling_fraction": frac,
                "expansion_factor": 1.0 / (market_share * frac),
                "activity_per_day": users["activity"].to_numpy(),
            }
        ),
        truth / "users.parquet",
    )

    # the world, shared with worker processes through memory-mapped files
    wdir = out / "_world"
    wdir.mkdir()
    np.save(wdir / "plan.npy", plan)
    for name in _WORLD_ARRAYS[1:]:
        np.save(wdir / f"{name}.npy", getattr(world, name))
    for name in _USER_ARRAYS:
        np.save(wdir / f"{name}.npy", users[name].to_numpy())
    np.save(wdir / "user_id.npy", ids.astype("U16"))
    np.save(wdir / "cell_id.npy", antennas.cells["cell_id"].to_numpy().astype(str))
    np.save(wdir / "commune_code.npy", com["commune_code"].to_numpy().astype(str))
    np.save(wdir / "departement_code.npy", com["departement_code"].to_numpy().astype(str))

    mobility = scen.get("mobility", {})
    tasks = []
    for pos in np.flatnonzero(keep):
        day = days[pos].date()
        ctx = DayContext(
            weekend=day.weekday() >= 5,
            lockdown=in_lockdown(scen, day),
            still_commuting=mobility.get("still_commuting", 1.0),
            leisure_factor=mobility.get("leisure_factor", 1.0),
        )
        for block, lo in enumerate(range(0, n, block_users)):
            hi = min(lo + block_users, n)
            task = dask.delayed(simulate_block_day)(
                str(wdir),
                str(out),
                day.isoformat(),
                int(pos),
                block,
                lo,
                hi,
                seed,
                ctx,
                truth_stays,
            )
            tasks.append(task)
    results = dask.compute(
        *tasks, scheduler="processes" if workers > 1 else "sync", num_workers=workers
    )
    presence = pd.concat([r["presence"] for r in results], ignore_index=True)
    presence = presence.groupby(["hour_local", "departement_code"], as_index=False)["users"].sum()
    writer.write_frame(presence, truth / "presence.parquet")
    shutil.rmtree(wdir)

    n_events = int(sum(r["events"] for r in results))
    if single_file:
        writer.merge_events(out / "events", out / "events.parquet")
        shutil.rmtree(out / "events")
        for name in ("stays", "trips"):
            if (truth / name).is_dir():
                writer.merge_dataset(
                    truth / name,
                    truth / f"{name}.parquet",
                    ["user_id", "start" if name == "stays" else "departure"],
                )
                shutil.rmtree(truth / name)
    elapsed = time.perf_counter() - t0
    summary = {
        "seed": seed,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "months": out_months,
        "departements": ",".join(ter.departements),
        "market_share": market_share,
        "users": n,
        "residents": int((~users["visitor"]).sum()),
        "visitors": int(users["visitor"].sum()),
        "movers": len(moves),
        "sites": len(antennas.site_lat),
        "cells": len(antennas.cells),
        "events": n_events,
        "seconds_world": round(t_world, 1),
        "seconds_total": round(elapsed, 1),
        "events_per_second": round(n_events / max(elapsed - t_world, 1e-9)),
    }
    (out / "simulation.json").write_text(json.dumps(summary, indent=2))
    (truth / "README.md").write_text(
        (resources.files("mobiterra") / "data" / "truth_README.md").read_text("utf-8")
    )
    return summary
