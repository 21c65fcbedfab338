"""The published tables of a finished month, as pandas, and what the maps derive from them.

Only what the publication gate let out is read (``OUT/MONTH/<table>/`` and
``manifest.json``); nothing here goes back to events or homes, so a map or an export can
only show published numbers or differences of two published numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h3
import numpy as np
import pandas as pd

from mobiterra import columns as C

# Published tables, in the order the page lists them (jobs.stages / jobs.diagnostics).
TABLES = (
    "residents",
    "residence_shift",
    "present_population",
    "od_trips",
    "od_home_work",
    "od_departements",
    "diagnostics",
    "expansion",
)
# OD periods from the longest: the map shows the first one published.
OD_PERIODS = ("month", "day", "daytime", "evening", "night", "hour")


@dataclass
class MonthOutputs:
    """One month folder: its manifest, its published tables, the baseline's residents."""

    month_dir: Path
    manifest: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    baseline_residents: pd.DataFrame | None = None

    @property
    def month(self) -> str:
        return self.manifest["month"]

    @property
    def baseline_month(self) -> str | None:
        return self.manifest.get("baseline_month")

    @property
    def k(self) -> int:
        return int(self.manifest["k"])


def read_table(path: Path) -> pd.DataFrame | None:
    """A published Parquet dataset (Spark folder or file), or None when absent/empty."""
    if not path.exists():
        return None
    if path.is_dir() and not any(p.suffix == ".parquet" for p in path.rglob("*.parquet")):
        return None
    return pd.read_parquet(path)


def read_tables(month_dir: Path) -> dict[str, pd.DataFrame]:
    """The month's published tables that exist, in TABLES order."""
    tables = {}
    for name in TABLES:
        df = read_table(Path(month_dir) / name)
        if df is not None:
            tables[name] = df
    return tables


def read_month(month_dir: Path, baseline_dir: Path | None = None) -> MonthOutputs:
    """Read ``month_dir`` (a finished or staged month). ``baseline_dir``: the baseline
    month's folder; by default the folder named after the manifest's baseline month beside
    ``month_dir``, used when it exists."""
    month_dir = Path(month_dir)
    manifest_path = month_dir / "manifest.json"
    if not manifest_path.exists():
        from mobiterra.errors import InputError

        raise InputError(f"{manifest_path}: no manifest; is {month_dir} a finished month?")
    manifest = json.loads(manifest_path.read_text())
    out = MonthOutputs(month_dir, manifest, read_tables(month_dir))
    if baseline_dir is None and out.baseline_month:
        baseline_dir = month_dir.parent / out.baseline_month
    if baseline_dir is not None:
        out.baseline_residents = read_table(Path(baseline_dir) / "residents")
    return out


def residents_change(residents: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Residents change per cell where both months are published (inner join).

    Columns: resolution, h3_cell, residents, residents_baseline, residents_change,
    residents_change_pct."""
    keys = [C.RESOLUTION, C.H3_CELL]
    both = residents[[*keys, C.RESIDENTS]].merge(
        baseline[[*keys, C.RESIDENTS]].rename(columns={C.RESIDENTS: "residents_baseline"}),
        on=keys,
        how="inner",
    )
    both = both[(both[C.RESIDENTS] > 0) & (both["residents_baseline"] > 0)]
    change = both[C.RESIDENTS] - both["residents_baseline"]
    return both.assign(
        residents_change=change, residents_change_pct=100.0 * change / both["residents_baseline"]
    ).reset_index(drop=True)


def shift_net(shift: pd.DataFrame) -> pd.DataFrame:
    """Net residence shift per cell from published flows: inflow - outflow (stayers excluded).

    Columns: resolution, h3_cell, movers_in, movers_out, net_shift."""
    moves = shift[shift[C.ORIGIN_CELL] != shift[C.DESTINATION_CELL]]
    inflow = moves.groupby([C.RESOLUTION, C.DESTINATION_CELL])[C.USERS].sum()
    outflow = moves.groupby([C.RESOLUTION, C.ORIGIN_CELL])[C.USERS].sum()
    inflow.index.names = outflow.index.names = [C.RESOLUTION, C.H3_CELL]
    net = pd.concat([inflow.rename("movers_in"), outflow.rename("movers_out")], axis=1)
    net = net.fillna(0).astype("int64").reset_index()
    return net.assign(net_shift=net["movers_in"] - net["movers_out"])


def flow_resolution(flows: pd.DataFrame, value: str | None = None) -> int | None:
    """The resolution a flow map uses: the coarsest with a published flow between two
    different cells, or (``value`` given) the one whose such flows carry the most ``value``
    — daily trips are local, so coarse hexagons hold them on their diagonal."""
    moves = flows[flows[C.ORIGIN_CELL] != flows[C.DESTINATION_CELL]]
    if moves.empty:
        return None
    if value is None:
        return int(moves[C.RESOLUTION].min())
    volume = moves.groupby(C.RESOLUTION)[value].sum()
    return int(volume[volume == volume.max()].index.min())


def cell_flows(flows: pd.DataFrame, value: str, res: int | None) -> pd.DataFrame:
    """Flows between two different cells of resolution ``res`` (summed over periods), with
    the cells' centres. Columns: resolution, origin_cell, destination_cell, value,
    origin_lat/lon, destination_lat/lon."""
    if res is None:
        return pd.DataFrame(
            columns=[C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, value, *_ENDS]
        )
    moves = flows[
        (flows[C.RESOLUTION] == res) & (flows[C.ORIGIN_CELL] != flows[C.DESTINATION_CELL])
    ]
    moves = moves.groupby([C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL], as_index=False)[
        value
    ].sum()
    return with_cell_centres(moves)


_ENDS = ["origin_lat", "origin_lon", "destination_lat", "destination_lon"]


def cell_centres(cells: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of H3 cell centres given as hex strings."""
    latlng = np.array([h3.cell_to_latlng(c) for c in cells], dtype=float).reshape(-1, 2)
    return latlng[:, 0], latlng[:, 1]


def with_cell_centres(flows: pd.DataFrame) -> pd.DataFrame:
    olat, olon = cell_centres(flows[C.ORIGIN_CELL])
    dlat, dlon = cell_centres(flows[C.DESTINATION_CELL])
    return flows.assign(
        origin_lat=olat, origin_lon=olon, destination_lat=dlat, destination_lon=dlon
    )


def od_for_map(od: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """OD trips of the longest published period (summed over its period starts)."""
    for period in OD_PERIODS:
        rows = od[od[C.PERIOD] == period]
        if len(rows):
            return rows, period
    return od.iloc[:0], None
