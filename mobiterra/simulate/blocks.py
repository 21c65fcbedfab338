"""One block of users on one day: stays, events and truth parts (a dask task)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mobiterra.geo.grid import h3_to_str
from mobiterra.simulate import writer
from mobiterra.simulate.events import day_events
from mobiterra.simulate.population import ANCHOR_NAMES
from mobiterra.simulate.routines import DayContext, day_stays

TIMEZONE = "Europe/Paris"


def local_to_utc_us(day: date, seconds: np.ndarray) -> np.ndarray:
    """Local (Europe/Paris) seconds since midnight of ``day`` as UTC epoch microseconds."""
    midnight = pd.Timestamp(day)
    local = midnight.value // 1000 + seconds.astype(np.int64) * 1_000_000
    off = [
        pd.Timestamp(day).tz_localize(TIMEZONE).utcoffset(),
        (midnight + pd.Timedelta(hours=23)).tz_localize(TIMEZONE).utcoffset(),
    ]
    if off[0] == off[1]:  # no DST change this day: one offset
        return local - int(off[0].total_seconds()) * 1_000_000
    idx = pd.DatetimeIndex(local * 1000).tz_localize(
        TIMEZONE, nonexistent="shift_forward", ambiguous=np.ones(len(local), bool)
    )
    return idx.tz_convert("UTC").asi8 // 1000


def simulate_block_day(
    world_dir: str,
    out_dir: str,
    day_iso: str,
    pos: int,
    block: int,
    lo: int,
    hi: int,
    seed: int,
    ctx: DayContext,
    truth_stays: bool,
) -> dict:
    """Stays, events and truth of users ``lo:hi`` on one day; writes its Parquet parts."""
    w = {p.stem: np.load(p, mmap_mode="r") for p in Path(world_dir).glob("*.npy")}
    rng = np.random.default_rng([seed, pos, block, 7])
    day = date.fromisoformat(day_iso)
    cell = np.asarray(w["anchor_cell"][lo:hi])
    lat, lon = np.asarray(w["anchor_lat"][lo:hi]), np.asarray(w["anchor_lon"][lo:hi])
    stays = day_stays(
        np.asarray(w["plan"][lo:hi, pos]),
        np.asarray(w["plan"][lo:hi, pos + 1]),
        np.asarray(w["worker"][lo:hi]),
        np.asarray(w["essential"][lo:hi]),
        np.nan_to_num(lat),
        np.nan_to_num(lon),
        ctx,
        rng,
    )
    user, t_local, ev_cell = day_events(
        stays,
        np.asarray(w["activity"][lo:hi]),
        np.asarray(w["update_period_h"][lo:hi]),
        np.asarray(w["update_phase_h"][lo:hi]),
        cell,
        np.asarray(w["anchor_alt_cell"][lo:hi]),
        rng,
    )
    out = Path(out_dir)
    part = f"part-{block:05d}.parquet"
    ids = np.asarray(w["user_id"][lo:hi])
    table = writer.events_table(ids, user, local_to_utc_us(day, t_local), w["cell_id"], ev_cell)
    writer.write_table(table, out / "events" / f"day={day_iso}" / part)

    commune = np.asarray(w["anchor_commune"][lo:hi])[stays.user, stays.anchor]
    dep_codes = np.asarray(w["departement_code"])
    dep_of_stay = dep_codes[commune]
    if truth_stays:
        _write_truth_parts(
            out, day, part, ids, stays, commune, np.asarray(w["anchor_h3"][lo:hi]), w
        )
    return {"events": table.num_rows, "presence": _presence(day, stays, dep_of_stay)}


def _presence(day: date, stays, dep_of_stay: np.ndarray) -> pd.DataFrame:
    """Users present per département at the middle of each local hour."""
    frames = []
    for hour in range(24):
        t = hour * 3600 + 1800
        here = (stays.start_s <= t) & (t < stays.end_s)
        counts = pd.Series(dep_of_stay[here]).value_counts()
        frames.append(
            pd.DataFrame(
                {
                    "hour_local": pd.Timestamp(day) + pd.Timedelta(hours=hour),
                    "departement_code": counts.index,
                    "users": counts.to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _write_truth_parts(out: Path, day: date, part: str, ids, stays, commune, anchor_h3, w) -> None:
    h3_codes, h3_idx = np.unique(anchor_h3[stays.user, stays.anchor], return_inverse=True)
    h3_strings = h3_to_str(h3_codes).astype(str)
    start = local_to_utc_us(day, stays.start_s)
    end = local_to_utc_us(day, stays.end_s)
    ts = pa.timestamp("us", tz="UTC")
    com_codes, dep_codes = np.asarray(w["commune_code"]), np.asarray(w["departement_code"])
    stays_t = pa.table(
        {
            "user_id": writer.dictionary_strings(stays.user, ids),
            "start": pa.array(start, ts),
            "end": pa.array(end, ts),
            "place": writer.dictionary_strings(
                stays.anchor.astype(np.int32), np.array(ANCHOR_NAMES)
            ),
            "h3_cell": writer.dictionary_strings(h3_idx, h3_strings),
            "commune_code": writer.dictionary_strings(commune, com_codes),
            "departement_code": writer.dictionary_strings(commune, dep_codes),
        }
    )
    writer.write_table(stays_t, out / "truth" / "stays" / f"day={day.isoformat()}" / part)
    # a trip links two consecutive stays of a user at different places
    nxt = np.arange(1, len(stays.user))
    prev = nxt - 1
    is_trip = (stays.user[nxt] == stays.user[prev]) & (stays.anchor[nxt] != stays.anchor[prev])
    a, b = prev[is_trip], nxt[is_trip]
    trips_t = pa.table(
        {
            "user_id": writer.dictionary_strings(stays.user[a], ids),
            "departure": pa.array(end[a], ts),
            "arrival": pa.array(start[b], ts),
            "origin_h3": writer.dictionary_strings(h3_idx[a], h3_strings),
            "destination_h3": writer.dictionary_strings(h3_idx[b], h3_strings),
            "origin_departement": writer.dictionary_strings(commune[a], dep_codes),
            "destination_departement": writer.dictionary_strings(commune[b], dep_codes),
        }
    )
    writer.write_table(trips_t, out / "truth" / "trips" / f"day={day.isoformat()}" / part)
