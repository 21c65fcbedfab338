"""Antenna sites placed by population density, their cells, and which cell serves a place."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import shapely

from mobiterra.geo.grid import distance_km
from mobiterra.simulate.territory import Territory, points_in_communes

# One operator's macro site serves about 2,500 inhabitants in towns (≈ 25,000 sites for
# 65 M people, the order of magnitude of each French operator's ANFR site count).
PEOPLE_PER_SITE = 2_500
# Coverage area per site: bounded below in the densest centres (small cells, ~200 m apart)
# and above in the countryside (rural macro sites every ~8 km).
MIN_SITE_AREA_KM2 = 0.15
MAX_SITE_AREA_KM2 = 100.0
# Range: the radius of the site's area with overlap, 0.5 km to 10 km (DESIGN.md: ~2 km
# urban, ~10 km rural).
RANGE_OVERLAP = 1.6
MIN_RANGE_M, MAX_RANGE_M = 500.0, 10_000.0
# Sites in places denser than this get three 120° sectors; sparser sites are omnidirectional.
SECTOR_DENSITY_PER_KM2 = 300.0
SECTOR_AZIMUTHS = np.array([0.0, 120.0, 240.0])
CELLS_VALID_FROM = "2019-01-01"
# Served range: the farthest place served, plus this margin.
SERVED_RANGE_MARGIN = 1.02
# cos(46.5°): degrees of longitude shrink by this factor over France (nearest-site metric).
_LON_SCALE = 0.688


@dataclass(frozen=True)
class Antennas:
    """Sites and their cells; ``cells`` is the contract's cells table."""

    site_lat: np.ndarray
    site_lon: np.ndarray
    site_first_cell: np.ndarray  # index of the site's first cell in ``cells``
    site_sectored: np.ndarray
    site_density: np.ndarray  # inhabitants per km² of the site's commune (job-mass proxy)
    cells: pd.DataFrame
    tree: shapely.STRtree

    def serving_cell(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The serving cell (nearest site, sector by bearing) and a neighbouring cell of the
        same site (handover; the same cell when the site is omnidirectional)."""
        pts = shapely.points(np.asarray(lon) * _LON_SCALE, lat)
        site = self.tree.query_nearest(pts, all_matches=False)[1]
        dy = np.asarray(lat) - self.site_lat[site]
        dx = (np.asarray(lon) - self.site_lon[site]) * _LON_SCALE
        bearing = np.degrees(np.arctan2(dx, dy)) % 360.0
        sector = np.rint(bearing / 120.0).astype(np.int64) % 3
        sectored = self.site_sectored[site]
        first = self.site_first_cell[site]
        cell = np.where(sectored, first + sector, first)
        # the neighbouring sector on the side of the bearing
        side = np.where((bearing - SECTOR_AZIMUTHS[sector]) % 360.0 < 180.0, 1, 2)
        alt = np.where(sectored, first + (sector + side) % 3, first)
        return cell.astype(np.int32), alt.astype(np.int32)


def place_antennas(ter: Territory, rng: np.random.Generator) -> Antennas:
    """Sites inside the territory's communes, more where people live, each with 1 or 3 cells."""
    com = ter.communes
    idx = np.flatnonzero(ter.inside)
    area = com["area_km2"].to_numpy()[idx]
    density = com["population"].to_numpy()[idx] / np.maximum(area, 0.05)
    site_area = np.clip(
        PEOPLE_PER_SITE / np.maximum(density, 1e-3), MIN_SITE_AREA_KM2, MAX_SITE_AREA_KM2
    )
    expected = area / site_area
    n_sites = np.floor(expected + rng.random(len(idx))).astype(np.int64)  # stochastic rounding
    site_commune = np.repeat(idx, n_sites)
    lat, lon = points_in_communes(com, site_commune, rng, central=0.3)
    s_density = np.repeat(density, n_sites)
    s_area = np.repeat(site_area, n_sites)
    range_m = np.clip(np.sqrt(s_area / np.pi) * 1000 * RANGE_OVERLAP, MIN_RANGE_M, MAX_RANGE_M)
    sectored = s_density >= SECTOR_DENSITY_PER_KM2
    n_cells = np.where(sectored, 3, 1)
    first = np.concatenate([[0], np.cumsum(n_cells)[:-1]]).astype(np.int64)

    cell_site = np.repeat(np.arange(len(lat)), n_cells)
    within = np.arange(len(cell_site)) - first[cell_site]
    cell_sectored = sectored[cell_site]
    site_ids = np.char.zfill(np.arange(len(lat)).astype(str), 6)
    cell_ids = np.char.add(
        np.char.add("S", site_ids[cell_site]),
        np.char.add("-", np.where(cell_sectored, within + 1, 0).astype(str)),
    )
    cells = pd.DataFrame(
        {
            "cell_id": cell_ids.astype(object),
            "lat": np.round(lat[cell_site], 6),
            "lon": np.round(lon[cell_site], 6),
            "azimuth_deg": np.where(cell_sectored, SECTOR_AZIMUTHS[within % 3], np.nan),
            "range_m": np.round(range_m[cell_site]),
            "valid_from": CELLS_VALID_FROM,
            "valid_to": None,
        }
    )
    tree = shapely.STRtree(shapely.points(lon * _LON_SCALE, lat))
    return Antennas(lat, lon, first, sectored, s_density, cells, tree)


def with_served_ranges(
    antennas: Antennas, lat: np.ndarray, lon: np.ndarray, cell: np.ndarray
) -> Antennas:
    """``range_m`` raised to the farthest place each cell serves, as an operator reads a
    cell's reach from timing advance: a place is served by its nearest site however far it
    is, and a nominal range below that would leave served homes outside the published
    coverage. lat, lon, cell: places and their serving cells (-1: off the network)."""
    on = cell >= 0
    cells = antennas.cells
    site_lat, site_lon = cells["lat"].to_numpy(), cells["lon"].to_numpy()
    c = cell[on]
    dist_m = 1000 * distance_km(lat[on], lon[on], site_lat[c], site_lon[c])
    farthest = np.zeros(len(cells))
    np.maximum.at(farthest, c, dist_m)
    served = np.ceil(farthest * SERVED_RANGE_MARGIN)
    return replace(antennas, cells=cells.assign(range_m=np.maximum(cells["range_m"], served)))


def write_cells(antennas: Antennas, path) -> None:
    """The contract's cells CSV (``valid_to`` empty: still active)."""
    antennas.cells.to_csv(path, index=False, float_format="%.6g")


def nearest_site(antennas: Antennas, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index of the nearest site to each point."""
    pts = shapely.points(np.asarray(lon) * _LON_SCALE, lat)
    return antennas.tree.query_nearest(pts, all_matches=False)[1]
