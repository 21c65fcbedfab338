"""Prefect flow ``territory_outputs``: independent per-département work of a finished
month, in parallel through prefect-dask's ``DaskTaskRunner``.

For now each département gets the extract of the published residents table that touches
it (``exports/departements/<code>/residents.csv``); per-département maps plug in as more
mapped tasks of the same shape (a month folder and a code in, the paths written out).

The extract re-publishes rows of the gated table unchanged, with the share of each
hexagon's population (INSEE) living in the département: it derives no new count, so no
new number can fall in [1, k). Splitting counts by those shares would, and is not done.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from mobiterra import columns as C

# Two single-threaded workers in this process: the per-département tasks are pandas /
# shapely work that releases the GIL in places, and a 2-core machine has no room for
# more. On a bigger host raise n_workers (or pass address= of a Dask cluster).
DASK_CLUSTER = {"n_workers": 2, "processes": False, "threads_per_worker": 1}
DASK_CLUSTER_KWARGS = {**DASK_CLUSTER, "dashboard_address": None}
EXPORTS = Path("exports") / "departements"
SHARE = "departement_share"
SHARES_FILE = ".departement-shares.parquet"


def departement_shares_of_cells(residents: pd.DataFrame) -> pd.DataFrame:
    """For every published cell, the départements it overlaps and the share of its
    population (INSEE, resolution-8 grid) in each: h3_cell, resolution, departement_code,
    departement_share. The territory is the départements any published hexagon touches."""
    import geopandas as gpd

    from mobiterra.geo.attribution import departement_shares
    from mobiterra.geo.france import departements
    from mobiterra.geo.grid import cells_geodataframe, h3_to_int

    cells = residents[[C.H3_CELL, C.RESOLUTION]].drop_duplicates()
    columns = [C.H3_CELL, C.RESOLUTION, "departement_code", SHARE]
    if cells.empty:  # nothing published this month: no département to write
        return pd.DataFrame(columns=columns)
    hexagons = cells_geodataframe(cells[C.H3_CELL])
    touched = gpd.sjoin(hexagons, departements()[["departement_code", "geometry"]])
    territory = sorted(touched["departement_code"].unique())
    parts = []
    for res, rows in cells.groupby(C.RESOLUTION):
        ids = h3_to_int(rows[C.H3_CELL])
        shares = departement_shares(ids, int(res), territory)
        by_id = pd.DataFrame({"cell": ids, C.H3_CELL: rows[C.H3_CELL].to_numpy()})
        parts.append(by_id.merge(shares, on="cell").assign(**{C.RESOLUTION: int(res)}))
    out = pd.concat(parts, ignore_index=True).rename(columns={"share": SHARE})
    return out[columns]


def departement_residents(residents: pd.DataFrame, shares: pd.DataFrame, code: str) -> pd.DataFrame:
    """Published residents rows of cells with population in département ``code``."""
    mine = shares[shares["departement_code"] == code]
    out = residents.merge(mine, on=[C.H3_CELL, C.RESOLUTION], how="inner")
    cols = ["departement_code", C.RESOLUTION, C.H3_CELL, C.RESIDENTS, C.RESIDENTS_EST, SHARE]
    return out[cols].sort_values([C.RESOLUTION, C.H3_CELL]).reset_index(drop=True)


def write_csv_atomic(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


@task(cache_policy=NO_CACHE)
def prepare_shares(month_dir: str) -> tuple[list[str], str]:
    """Départements touched by the month's published residents, and the cell shares."""
    residents = pd.read_parquet(Path(month_dir) / "residents")
    shares = departement_shares_of_cells(residents)
    path = Path(month_dir) / EXPORTS / SHARES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    shares.to_parquet(path, index=False)
    return sorted(shares["departement_code"].unique()), str(path)


@task(cache_policy=NO_CACHE)
def departement_extract(month_dir: str, shares_path: str, code: str) -> str:
    """One département's residents extract (CSV, opens in a spreadsheet)."""
    residents = pd.read_parquet(Path(month_dir) / "residents")
    extract = departement_residents(residents, pd.read_parquet(shares_path), code)
    return str(write_csv_atomic(extract, Path(month_dir) / EXPORTS / code / "residents.csv"))


@flow(name="territory_outputs", task_runner=DaskTaskRunner(cluster_kwargs=DASK_CLUSTER_KWARGS))
def territory_outputs(month_dir: str, departements: list[str] | None = None) -> dict[str, str]:
    """Per-département outputs of OUT/MONTH, one Dask task each; returns {code: path}."""
    codes, shares_path = prepare_shares(month_dir)
    if departements is not None:
        wanted = {str(d).zfill(2) for d in departements}
        codes = [c for c in codes if c in wanted]
    futures = departement_extract.map(unmapped(month_dir), unmapped(shares_path), codes)
    paths = dict(zip(codes, (f.result() for f in futures), strict=True))
    Path(shares_path).unlink(missing_ok=True)
    return paths


if __name__ == "__main__":
    for code, path in territory_outputs(sys.argv[1]).items():
        print(code, path)
