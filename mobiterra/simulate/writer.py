"""Writing the simulator's outputs: events (contract schema), cells, and the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mobiterra.geo.grid import h3_to_str
from mobiterra.simulate.population import ANCHOR_NAMES, H3_RESOLUTION, N_ANCHORS, World
from mobiterra.simulate.territory import Territory, population_grid

# The population reference is on the truth's grid.
POPULATION_RESOLUTION = H3_RESOLUTION

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("cell_id", pa.string()),
    ]
)
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 9, "use_dictionary": True}
# A file of several days sorted by user then time: timestamps delta-encode well (a third
# smaller than dictionary encoding). Day files keep dictionary encoding: one day holds at
# most 86,400 distinct seconds, which a dictionary packs into 17 bits (20 % smaller).
EVENTS_PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": ["user_id", "cell_id"],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED"},
}


def dictionary_strings(indices: np.ndarray, values: np.ndarray) -> pa.Array:
    """A string column from indices into a small array of values (built in C, not Python)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, pa.int32()), pa.array(values, pa.string())
    ).cast(pa.string())


def write_table(table: pa.Table, path: Path, options: dict | None = None) -> None:
    """One Parquet file, written aside then renamed (no half-written file is ever visible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, **(options or PARQUET_OPTIONS))
    tmp.replace(path)


def events_table(
    user_ids: np.ndarray,
    user: np.ndarray,
    ts_us: np.ndarray,
    cell_ids: np.ndarray,
    cell: np.ndarray,
) -> pa.Table:
    """Events in the contract's schema (user_id, timestamp UTC, cell_id)."""
    return pa.Table.from_arrays(
        [
            dictionary_strings(user, user_ids),
            pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            dictionary_strings(cell, cell_ids),
        ],
        schema=EVENTS_SCHEMA,
    )


def place_columns(
    world: World, communes: pd.DataFrame, rows: np.ndarray, anchor: np.ndarray
) -> dict:
    """Commune, département, H3 res-8 and coordinates of places (user rows, anchors)."""
    com = world.anchor_commune[rows, anchor]
    return {
        "commune_code": communes["commune_code"].to_numpy()[com],
        "departement_code": communes["departement_code"].to_numpy()[com],
        "lat": np.round(world.anchor_lat[rows, anchor], 6),
        "lon": np.round(world.anchor_lon[rows, anchor], 6),
        "h3": h3_to_str(world.anchor_h3[rows, anchor]),
    }


def truth_homes(
    world: World, communes: pd.DataFrame, plan: np.ndarray, nights: pd.DatetimeIndex, month: str
) -> pd.DataFrame:
    """True home of each user in a month: the place of most nights (ties: the main home)."""
    in_month = nights.strftime("%Y-%m") == month
    sub = plan[:, in_month]
    counts = np.stack([(sub == a).sum(axis=1) for a in range(N_ANCHORS)], axis=1)
    anchor = counts.argmax(axis=1)
    rows = np.arange(len(plan))
    places = place_columns(world, communes, rows, anchor)
    return pd.DataFrame(
        {
            "user_id": world.users["user_id"].to_numpy(),
            "month": month,
            "home_commune_code": places["commune_code"],
            "departement_code": places["departement_code"],
            "lat": places["lat"],
            "lon": places["lon"],
            "home_h3": places["h3"],
            "place": np.array(ANCHOR_NAMES, dtype=object)[anchor],
            "nights": counts[rows, anchor],
            "month_nights": int(in_month.sum()),
            "in_territory": world.anchor_cell[rows, anchor] >= 0,
        }
    )


def truth_workplaces(world: World, communes: pd.DataFrame) -> pd.DataFrame:
    """Workplace of each worker (commune, département, point, H3 res 8)."""
    from mobiterra.simulate.population import WORK

    rows = np.flatnonzero(world.users["worker"].to_numpy())
    places = place_columns(world, communes, rows, np.full(len(rows), WORK))
    return pd.DataFrame(
        {
            "user_id": world.users["user_id"].to_numpy()[rows],
            "work_commune_code": places["commune_code"],
            "departement_code": places["departement_code"],
            "lat": places["lat"],
            "lon": places["lon"],
            "work_h3": places["h3"],
            "still_commuting_in_lockdown": world.users["essential"].to_numpy()[rows],
        }
    )


def truth_moves(world: World, communes: pd.DataFrame, moves: pd.DataFrame) -> pd.DataFrame:
    """The planted relocations, one row per mover."""
    from mobiterra.simulate.population import HOME, REFUGE

    rows = moves["user_index"].to_numpy(dtype=np.int64)
    home = place_columns(world, communes, rows, np.full(len(rows), HOME))
    dest = place_columns(world, communes, rows, np.full(len(rows), REFUGE))
    return pd.DataFrame(
        {
            "user_id": world.users["user_id"].to_numpy()[rows],
            "from_commune_code": home["commune_code"],
            "from_departement_code": home["departement_code"],
            "from_h3": home["h3"],
            "to_commune_code": dest["commune_code"],
            "to_departement_code": dest["departement_code"],
            "to_h3": dest["h3"],
            "to_in_territory": world.anchor_cell[rows, REFUGE] >= 0,
            "kind": moves["destination_kind"].to_numpy(),
            "leave_date": pd.to_datetime(moves["leave_date"]).dt.date,
            "return_date": pd.to_datetime(moves["return_date"]).dt.date,
        }
    )


def write_frame(df: pd.DataFrame, path: Path) -> None:
    write_table(pa.Table.from_pandas(df, preserve_index=False), path)


def merge_events(events_dir: Path, path: Path) -> int:
    """Concatenate a day-partitioned events dataset into ONE Parquet file sorted by user then
    time (for small committed samples). Returns the row count."""
    table = ds.dataset(events_dir, format="parquet", partitioning="hive").to_table(
        columns=["user_id", "timestamp", "cell_id"]
    )
    table = table.sort_by([("user_id", "ascending"), ("timestamp", "ascending")]).cast(
        EVENTS_SCHEMA
    )
    write_table(table, path, EVENTS_PARQUET_OPTIONS | {"compression_level": 19})
    return table.num_rows


def merge_dataset(directory: Path, path: Path, sort_by: list[str]) -> None:
    """Concatenate a partitioned truth dataset into one file (partition columns kept)."""
    table = ds.dataset(directory, format="parquet", partitioning="hive").to_table()
    table = table.sort_by([(c, "ascending") for c in sort_by])
    write_table(table, path)


def write_population(ter: Territory, path: Path) -> None:
    """The simulated world's population reference (``h3_cell,population``, res 8): what a
    run passes as ``--population``, as it would pass INSEE's gridded population."""
    grid = population_grid(ter.communes, np.flatnonzero(ter.inside), POPULATION_RESOLUTION)
    grid["population"] = grid["population"].round(2)
    grid[grid["population"] > 0].to_csv(path, index=False)
