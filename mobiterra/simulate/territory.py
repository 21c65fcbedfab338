"""The simulated territory: which communes, and how densely their residents are sampled."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely

from mobiterra import geo
from mobiterra.geo.grid import commune_cells

# Mean radius of the Earth in km (IUGG), for distances between nearby points.
# Départements on the sea and in the mountains: more secondary homes there (INSEE counts
# of résidences secondaires are highest on the coasts and in the Alps / Pyrenees).
COASTAL_DEPARTEMENTS = frozenset(
    "06 11 13 14 17 22 29 2A 2B 30 33 34 35 40 44 50 56 59 62 64 66 76 80 83 85".split()
)
MOUNTAIN_DEPARTEMENTS = frozenset("04 05 09 15 38 43 48 63 65 73 74 2A 2B 07 12 25 39 88".split())


@dataclass(frozen=True)
class Territory:
    """Communes of all metropolitan France, with the subset that is simulated.

    ``communes`` holds every metropolitan commune (people also travel out of the
    territory); ``inside`` flags the simulated ones; ``fraction`` is each commune's
    sampling fraction of its operator subscribers.
    """

    communes: gpd.GeoDataFrame
    inside: np.ndarray
    fraction: np.ndarray

    @property
    def departements(self) -> list[str]:
        return sorted(set(self.communes.loc[self.inside, "departement_code"]))


def parse_fraction(value: str | float | dict | None, default: float = 0.01) -> dict[str, float]:
    """Sampling fractions per département: ``0.01`` or ``"75=0.002,89=0.05,default=0.01"``."""
    if value is None:
        return {"default": default}
    if isinstance(value, int | float):
        return {"default": float(value)}
    if isinstance(value, dict):
        return {"default": default} | {str(k): float(v) for k, v in value.items()}
    out = {"default": default}
    for part in str(value).split(","):
        key, sep, frac = part.partition("=")
        if not sep:
            out["default"] = float(key)
        else:
            out[key.strip().zfill(2) if key.strip() != "default" else "default"] = float(frac)
    bad = {k: v for k, v in out.items() if not 0 < v <= 1}
    if bad:
        raise ValueError(f"sampling fractions must be in (0, 1], got {bad}")
    return out


def territory(
    departements: list[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    fraction: str | float | dict | None = None,
) -> Territory:
    """Select the simulated communes: départements, a (lon_min, lat_min, lon_max, lat_max)
    bounding box of representative points, or all of metropolitan France (neither given)."""
    com = geo.communes()
    if departements:
        wanted = {str(d).strip().zfill(2) for d in departements}
        unknown = wanted - set(com["departement_code"])
        if unknown:
            raise ValueError(f"unknown metropolitan départements {sorted(unknown)}")
        inside = com["departement_code"].isin(wanted).to_numpy()
    elif bbox:
        x0, y0, x1, y1 = bbox
        inside = (
            com["rep_lon"].between(x0, x1).to_numpy() & com["rep_lat"].between(y0, y1).to_numpy()
        )
        if not inside.any():
            raise ValueError(
                f"bounding box {bbox} (lon_min, lat_min, lon_max, lat_max) holds no commune"
            )
    else:
        inside = np.ones(len(com), dtype=bool)
    fractions = parse_fraction(fraction)
    frac = com["departement_code"].map(fractions).fillna(fractions["default"]).to_numpy()
    return Territory(com, inside, frac)


def offset_points(lat, lon, dist_km, bearing_rad) -> tuple[np.ndarray, np.ndarray]:
    """Points at a distance and bearing from others (flat-Earth, fine below ~100 km)."""
    dlat = dist_km * np.cos(bearing_rad) / 111.32
    dlon = dist_km * np.sin(bearing_rad) / (111.32 * np.cos(np.radians(lat)))
    return np.asarray(lat) + dlat, np.asarray(lon) + dlon


# Residents in a commune: this share around its representative point, with a gaussian
# whose sd is this fraction of the half-width of the commune's box; the rest uniform.
CENTRAL_SHARE = 0.5
CENTRAL_SD = 0.2


def points_in_communes(
    communes: gpd.GeoDataFrame,
    commune_idx: np.ndarray,
    rng: np.random.Generator,
    *,
    central: float = CENTRAL_SHARE,
) -> tuple[np.ndarray, np.ndarray]:
    """Random points inside the given communes' polygons.

    A share ``central`` is drawn around the commune's representative point (a gaussian of
    a fifth of the commune's size), the rest uniformly in the polygon: town centres denser.
    """
    n = len(commune_idx)
    geoms = communes.geometry.to_numpy()[commune_idx]
    bounds = shapely.bounds(geoms)
    rep_lat = communes["rep_lat"].to_numpy()[commune_idx]
    rep_lon = communes["rep_lon"].to_numpy()[commune_idx]
    is_central = rng.random(n) < central
    lat, lon = rep_lat.copy(), rep_lon.copy()
    todo = np.arange(n)
    for _ in range(30):  # rejection sampling; polygons fill ~half their box on average
        if not len(todo):
            break
        b = bounds[todo]
        u_lon = b[:, 0] + rng.random(len(todo)) * (b[:, 2] - b[:, 0])
        u_lat = b[:, 1] + rng.random(len(todo)) * (b[:, 3] - b[:, 1])
        c = is_central[todo]
        u_lon[c] = rep_lon[todo][c] + rng.normal(0, CENTRAL_SD, c.sum()) * (b[c, 2] - b[c, 0]) / 2
        u_lat[c] = rep_lat[todo][c] + rng.normal(0, CENTRAL_SD, c.sum()) * (b[c, 3] - b[c, 1]) / 2
        ok = shapely.contains_xy(geoms[todo], u_lon, u_lat)
        lat[todo[ok]], lon[todo[ok]] = u_lat[ok], u_lon[ok]
        todo = todo[~ok]
    # the few left keep the representative point, which is inside by construction
    return lat, lon


def population_grid(
    communes: gpd.GeoDataFrame, commune_idx: np.ndarray, resolution: int
) -> pd.DataFrame:
    """Expected residents per H3 cell of the given communes under the model of
    :func:`points_in_communes` (the simulated world's census grid, as INSEE's 200 m grid is
    France's): each commune's population over the hexagons whose centre is inside it, a
    share ``CENTRAL_SHARE`` by the gaussian around its representative point, the rest
    evenly. Columns: h3_cell (string), population (float)."""
    cells_out, people = [], []
    com = communes.iloc[np.asarray(commune_idx)]
    for pop, geom, lat, lon in zip(
        com["population"], com.geometry, com["rep_lat"], com["rep_lon"], strict=True
    ):
        cells = commune_cells(geom, lat, lon, resolution)  # as INSEE's grid spreads them
        centres = np.array([h3.cell_to_latlng(c) for c in cells])
        minx, miny, maxx, maxy = geom.bounds if geom is not None else (lon, lat, lon, lat)
        sd_lon = max(CENTRAL_SD * (maxx - minx) / 2, 1e-6)
        sd_lat = max(CENTRAL_SD * (maxy - miny) / 2, 1e-6)
        z2 = ((centres[:, 1] - lon) / sd_lon) ** 2 + ((centres[:, 0] - lat) / sd_lat) ** 2
        gauss = np.exp(-0.5 * z2)
        gauss = gauss / gauss.sum() if gauss.sum() > 0 else np.full(len(cells), 1 / len(cells))
        cells_out.extend(cells)
        people.append(pop * (CENTRAL_SHARE * gauss + (1 - CENTRAL_SHARE) / len(cells)))
    grid = pd.DataFrame(
        {"h3_cell": cells_out, "population": np.concatenate(people) if people else []}
    )
    return grid.groupby("h3_cell", as_index=False)["population"].sum()


def choose_weighted(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with replacement in proportion to non-negative weights."""
    cdf = np.cumsum(weights, dtype=np.float64)
    if size == 0 or cdf[-1] <= 0:
        return np.zeros(0 if size == 0 else size, dtype=np.int64)
    return np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").clip(0, len(weights) - 1)


def commune_table(ter: Territory) -> pd.DataFrame:
    """The commune attributes the simulator uses, as plain arrays-friendly columns."""
    com = ter.communes
    return pd.DataFrame(
        {
            "commune_code": com["commune_code"],
            "departement_code": com["departement_code"],
            "population": com["population"],
            "density": com["population"] / com["area_km2"].clip(lower=0.05),
        }
    )
