"""H3 cells and French communes: which commune holds a cell, and a population grid.

Data: INSEE, IGN (Licence Ouverte 2.0), through :mod:`mobiterra.geo.france`.
"""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely

from mobiterra.cachefile import cached, in_memory
from mobiterra.geo.france import _CACHE_VERSION, CRS, cache_dir, communes

EARTH_RADIUS_KM = 6371.0088


def distance_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance (haversine), vectorised."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def h3_to_int(cells: Iterable[int | str]) -> np.ndarray:
    """H3 cells as int64, from ints or 15-character hex strings."""
    values = list(cells)
    if values and isinstance(values[0], str):
        return np.array([h3.str_to_int(c) for c in values], dtype=np.uint64).astype(np.int64)
    return np.asarray(values, dtype=np.int64)


def h3_to_str(cells: Iterable[int]) -> np.ndarray:
    """H3 cells as canonical 15-character hex strings."""
    return np.array([h3.int_to_str(int(c) & 0xFFFFFFFFFFFFFFFF) for c in cells], dtype=object)


def latlng_to_h3(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cells (int64) of points; h3-py has no vectorised form, so a tight loop."""
    return np.fromiter(
        (h3.str_to_int(h3.latlng_to_cell(a, b, resolution)) for a, b in zip(lat, lon, strict=True)),
        dtype=np.uint64,
        count=len(lat),
    ).astype(np.int64)


def cells_to_communes(
    h3_cells: Iterable[int | str], *, arrondissements: bool = True
) -> pd.DataFrame:
    """Map each H3 cell to the commune containing its centroid (nearest commune if none).

    Returns one row per distinct input cell: ``h3_cell`` (as given), ``commune_code``,
    ``commune_name``, ``departement_code``, ``region_code`` and ``nearest`` (True when the
    centroid lies in no commune, e.g. at sea, and the nearest commune was taken).
    Data: INSEE, IGN.
    """
    given = pd.unique(pd.Series(list(h3_cells), dtype=object))
    ids = h3_to_int(given)
    latlng = np.array([h3.cell_to_latlng(h3.int_to_str(int(c) & 0xFFFFFFFFFFFFFFFF)) for c in ids])
    latlng = latlng.reshape(-1, 2)
    com = communes(metropolitan=False, arrondissements=arrondissements)
    com = com[com.geometry.notna()].reset_index(drop=True)
    points = shapely.points(latlng[:, 1], latlng[:, 0])
    tree = shapely.STRtree(com.geometry.values)
    pt_idx, com_idx = tree.query(points, predicate="within")
    match = np.full(len(points), -1, dtype=np.int64)
    match[pt_idx[::-1]] = com_idx[::-1]  # first hit wins on (rare) shared edges
    nearest = match < 0
    if nearest.any():
        match[nearest] = tree.query_nearest(points[nearest], all_matches=False)[1]
    cols = ["commune_code", "commune_name", "departement_code", "region_code"]
    out = com.loc[match, cols].reset_index(drop=True)
    out.insert(0, "h3_cell", given)
    out["nearest"] = nearest
    return out


def commune_cells(geom, lat: float, lon: float, resolution: int) -> list[str]:
    """A commune's H3 cells: those whose centre is inside its polygon, or, for a commune
    smaller than a cell (or without a polygon), its representative point's cell."""
    cells = h3.geo_to_cells(geom, resolution) if geom is not None else []
    return cells or [h3.latlng_to_cell(lat, lon, resolution)]


def _build_population_grid(resolution: int, departement: str) -> pd.DataFrame:
    com = communes([departement])
    frames = []
    for code, dep, pop, geom, lat, lon in zip(
        com["commune_code"],
        com["departement_code"],
        com["population"],
        com.geometry,
        com["rep_lat"],
        com["rep_lon"],
        strict=True,
    ):
        cells = commune_cells(geom, lat, lon, resolution)
        ids = np.array([h3.str_to_int(c) for c in cells], dtype=np.uint64).astype(np.int64)
        frames.append(
            pd.DataFrame(
                {
                    "h3_id": ids,
                    "commune_code": code,
                    "departement_code": dep,
                    "population": pop / len(ids),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def population_grid(resolution: int = 8, departements: list[str] | None = None) -> pd.DataFrame:
    """Commune populations spread evenly over the H3 cells whose centroid is in the commune.

    Columns: ``h3_id`` (int64), ``commune_code``, ``departement_code``, ``population``
    (float; a cell on a commune border appears once per commune). Metropolitan France by
    default, INSEE 2017 populations on IGN polygons. Cached per resolution and département
    (all of France at res 8: ~15 s the first time).
    """
    all_deps = sorted(set(communes()["departement_code"]))
    wanted = all_deps if departements is None else sorted({str(d).zfill(2) for d in departements})
    folder = cache_dir() / f"population_grid_r{resolution}_{_CACHE_VERSION}"
    frames = []
    for dep in wanted:
        path = folder / f"{dep}.parquet"
        frames.append(
            in_memory(
                path,
                lambda dep=dep, path=path: cached(
                    path,
                    lambda: _build_population_grid(resolution, dep),
                    lambda grid, tmp: grid.to_parquet(tmp, compression="zstd", index=False),
                    pd.read_parquet,
                ),
                lambda grid: grid,  # concatenated below: a new frame already
            )
        )
    return pd.concat(frames, ignore_index=True)


def cells_geodataframe(h3_cells: Iterable[int | str]) -> gpd.GeoDataFrame:
    """H3 cells as hexagon polygons (EPSG:4326), for maps and exports."""
    ids = h3_to_int(h3_cells)
    polys = [
        shapely.Polygon(
            [
                (lng, lat)
                for lat, lng in h3.cell_to_boundary(h3.int_to_str(int(c) & 0xFFFFFFFFFFFFFFFF))
            ]
        )
        for c in ids
    ]
    return gpd.GeoDataFrame({"h3_id": ids}, geometry=polys, crs=CRS)
