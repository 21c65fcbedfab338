"""Coverage: which H3 cells (finest resolution) each antenna cell covers, with weights.

Computed once per cells table on the driver (the table is small) and broadcast into the
jobs, so the event path never calls h3 or a Python UDF. Coarser resolutions are H3
parents of the finest cell (see mobiterra.h3cols), so every resolution nests exactly.

Strategies plug in through ``STRATEGIES``: each maps the validated cells (status ``ok``)
to rows (cell_id, valid_from, valid_to, h3_id, weight) whose weights sum to 1 per
(cell_id, valid_from, valid_to):

- ``point``: the hexagon holding the site, weight 1 (kept for comparison);
- ``voronoi`` (default): the cell's Voronoi area among the sites active at the time
  (jobs.coverage_voronoi), spread over the hexagons it overlaps with area weights, or
  population weights (dasymetric: commune populations of mobiterra.geo spread evenly
  over their hexagons) where there is population.

Time. The tessellation must only see sites active together, so the cells table is cut
into validity epochs: maximal date spans over which the set of active rows does not
change (boundaries at every ``valid_from`` and every ``valid_to`` + 1 day). A row active
in several epochs whose polygon is the same in all of them keeps one coverage row set
with its own validity; when a neighbour appears or disappears and its polygon changes, the
row is split into pieces with the validity of each epoch (consecutive, non-overlapping),
so events still match exactly one piece by date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta

import h3
import h3.api.numpy_int as h3n
import numpy as np
import pandas as pd
import shapely

from jobs import cells as cells_rules
from jobs import coverage_voronoi as vor
from mobiterra import columns as C
from mobiterra.config import CoverageParams

COVERAGE_COLUMNS = [C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT]
# Part of the coverage cache key (jobs.stages): bump when the algorithms change.
COVERAGE_VERSION = "3"
# Hexagon shares below this are dropped (and the rest renormalized): slivers along a
# polygon's edge that only bloat the broadcast table.
MIN_WEIGHT = 1e-4
log = logging.getLogger(__name__)


def point_coverage(
    cells: pd.DataFrame, resolution: int, params: CoverageParams, reference: pd.Series | None = None
) -> pd.DataFrame:
    """Each antenna cell covers the one hexagon holding its site, with weight 1."""
    out = cells[[C.CELL_ID, C.VALID_FROM, C.VALID_TO]].copy()
    out[C.H3_ID] = site_hexagons(cells, resolution)
    out[C.WEIGHT] = 1.0
    return out[COVERAGE_COLUMNS]


def site_hexagons(cells: pd.DataFrame, resolution: int) -> np.ndarray:
    return np.fromiter(
        (
            h3.str_to_int(h3.latlng_to_cell(lat, lon, resolution))
            for lat, lon in zip(cells[C.LAT], cells[C.LON], strict=True)
        ),
        dtype=np.uint64,
        count=len(cells),
    ).astype(np.int64)


def _as_date(v) -> date | None:
    return v if isinstance(v, date) and not pd.isna(v) else None


def validity_epochs(valid_from: pd.Series, valid_to: pd.Series) -> list[tuple]:
    """Maximal (first, last) date spans (inclusive; None = open) with a constant active set."""
    starts = {d for d in map(_as_date, valid_from) if d is not None}
    starts |= {d + timedelta(days=1) for d in map(_as_date, valid_to) if d is not None}
    bounds = sorted(starts)
    firsts = [None, *bounds]
    lasts = [b - timedelta(days=1) for b in bounds] + [None]
    return list(zip(firsts, lasts, strict=True))


def _active(vf: list, vt: list, first, last) -> np.ndarray:
    """Rows active over the whole epoch [first, last] (an epoch never straddles a bound)."""
    return np.array(
        [
            (f is None or (first is not None and f <= first))
            and (t is None or (last is not None and t >= last))
            for f, t in zip(vf, vt, strict=True)
        ],
        dtype=bool,
    )


def voronoi_pieces(cells: pd.DataFrame, frame: vor.Frame, params: CoverageParams) -> pd.DataFrame:
    """Per row of ``cells`` and validity piece: its coverage polygon (metric frame).

    Columns: ``_row`` (position in ``cells``), valid_from, valid_to, geometry.
    """
    lat, lon = cells[C.LAT].to_numpy(float), cells[C.LON].to_numpy(float)
    ranges = cells[C.RANGE_M].to_numpy(float)
    reach = max(np.nanmax(ranges, initial=0.0), params.max_default_range_m)
    terr = vor.territory(lat, lon, frame, params, reach)
    vf = [_as_date(v) for v in cells[C.VALID_FROM]]
    vt = [_as_date(v) for v in cells[C.VALID_TO]]
    pieces: list[list] = []  # [row, first, last, geometry]
    open_piece: dict[int, int] = {}  # row -> index in pieces of its running piece
    for first, last in validity_epochs(cells[C.VALID_FROM], cells[C.VALID_TO]):
        active = np.flatnonzero(_active(vf, vt, first, last))
        if len(active) == 0:
            open_piece = {}
            continue
        polys = shapely.normalize(vor.cell_polygons(cells.iloc[active], frame, terr, params))
        running = {}
        for row, poly in zip(active, polys, strict=True):
            k = open_piece.get(row)
            if k is not None and shapely.equals_exact(pieces[k][3], poly, tolerance=1e-3):
                pieces[k][2] = last
            else:
                k = len(pieces)
                pieces.append([row, first, last, poly])
            running[row] = k
        open_piece = running
    return pd.DataFrame(pieces, columns=["_row", C.VALID_FROM, C.VALID_TO, "geometry"])


def hexagon_polygons(hexes: np.ndarray, frame: vor.Frame) -> np.ndarray:
    """H3 cells (uint64) as polygons in the metric frame."""
    rings = [h3n.cell_to_boundary(h) for h in hexes]
    sizes = np.fromiter((len(r) for r in rings), dtype=np.int64, count=len(rings))
    if len(rings) and (sizes == 6).all():  # hexagons, no distortion vertices: one array
        latlng = np.asarray(rings, dtype=float).reshape(-1, 2)
    else:
        latlng = np.array([p for r in rings for p in r], dtype=float).reshape(-1, 2)
    x, y = frame.xy(latlng[:, 1], latlng[:, 0])
    ring_id = np.repeat(np.arange(len(hexes)), sizes)
    closed = shapely.linearrings(np.column_stack([x, y]), indices=ring_id)
    return shapely.polygons(closed)


def candidate_hexagons(
    polys_m: np.ndarray, frame: vor.Frame, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """(polygon index, H3 cell uint64) pairs: every hexagon that may overlap each polygon.

    The hexagons whose centre lies in the polygon's bounding box widened by more than a
    hexagon's circumradius (any hexagon touching the polygon has its centre within one
    circumradius of it). A 4-vertex box is ~5x faster for h3 than the polygon with the
    'overlap' mode; the exact test is left to shapely.
    """
    margin = 1.2 * h3.average_hexagon_edge_length(resolution, unit="m")
    x0, y0, x1, y1 = shapely.bounds(polys_m).T
    xs = np.column_stack([x0 - margin, x1 + margin, x1 + margin, x0 - margin])
    ys = np.column_stack([y0 - margin, y0 - margin, y1 + margin, y1 + margin])
    lon, lat = frame.to_ll.transform(xs.ravel(), ys.ravel())
    lon, lat = np.reshape(lon, (-1, 4)), np.reshape(lat, (-1, 4))
    piece, hexes = [], []
    for i in np.flatnonzero(np.isfinite(x0)):  # NaN bounds: empty polygon
        box = h3.LatLngPoly(list(zip(lat[i], lon[i], strict=True)))
        found = h3n.h3shape_to_cells(box, resolution)
        piece.append(np.full(len(found), i))
        hexes.append(np.asarray(found, dtype=np.uint64))
    if not piece:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(piece), np.concatenate(hexes)


def spread_to_h3(
    polys_m: np.ndarray, frame: vor.Frame, resolution: int, population: pd.Series | None
) -> pd.DataFrame:
    """Weights of each polygon over the H3 cells it overlaps: (_piece, h3_id, weight).

    Area weight = overlap area / polygon area. With ``population`` (people per h3_id,
    int64 index), dasymetric: overlap share of each hexagon x its population, normalized;
    a polygon over unpopulated hexagons only falls back to area weights. Empty polygons
    get no rows (the caller falls back to the site's hexagon).
    """
    piece, hexes = candidate_hexagons(polys_m, frame, resolution)
    if len(piece) == 0:
        return pd.DataFrame({"_piece": [], C.H3_ID: [], C.WEIGHT: []})
    unique, which = np.unique(hexes, return_inverse=True)
    hex_m = hexagon_polygons(unique, frame)
    shapely.prepare(polys_m)
    meets = shapely.intersects(polys_m[piece], hex_m[which])
    piece, which = piece[meets], which[meets]
    hex_area = shapely.area(hex_m)

    overlap = hex_area[which].copy()
    partial = ~shapely.contains_properly(polys_m[piece], hex_m[which])
    overlap[partial] = shapely.area(
        shapely.intersection(polys_m[piece[partial]], hex_m[which[partial]])
    )
    df = pd.DataFrame({"_piece": piece, C.H3_ID: unique[which].astype(np.int64), "_area": overlap})
    df["_mass"] = 0.0
    if population is not None:
        people = population.reindex(df[C.H3_ID].to_numpy()).fillna(0.0).to_numpy()
        df["_mass"] = overlap / hex_area[which] * people
    mass_total = df.groupby("_piece")["_mass"].transform("sum")
    df[C.WEIGHT] = np.where(
        mass_total > 0,
        df["_mass"] / mass_total,
        df["_area"] / df.groupby("_piece")["_area"].transform("sum"),
    )
    df = df[df[C.WEIGHT] >= MIN_WEIGHT]
    df[C.WEIGHT] = df[C.WEIGHT] / df.groupby("_piece")[C.WEIGHT].transform("sum")
    return df[["_piece", C.H3_ID, C.WEIGHT]].reset_index(drop=True)


def reference_population(
    polys_m: np.ndarray, frame: vor.Frame, resolution: int
) -> pd.Series | None:
    """People per H3 cell (int64 index) in the French départements the polygons touch.

    INSEE commune populations spread evenly over their hexagons (mobiterra.geo); None when
    no polygon touches metropolitan France (no reference: area weights).
    """
    from mobiterra import geo  # heavy: only for the voronoi strategy

    deps = geo.departements()
    polys_ll = vor.Frame.geoms_to_ll(frame, polys_m)
    _, hit = shapely.STRtree(deps.geometry.values).query(polys_ll, predicate="intersects")
    codes = sorted(set(deps["departement_code"].to_numpy()[np.unique(hit)]))
    if not codes:
        return None
    grid = geo.population_grid(resolution, codes)
    return grid.groupby("h3_id")["population"].sum()


def voronoi_coverage(
    cells: pd.DataFrame, resolution: int, params: CoverageParams, reference: pd.Series | None = None
) -> pd.DataFrame:
    """Each cell's Voronoi area (sectors, range, territory) spread over H3 cells.

    ``reference``: people per H3 cell at ``resolution`` (jobs.population) for the
    population weights; None: INSEE commune populations (:func:`reference_population`).
    """
    if cells.empty:
        return pd.DataFrame(columns=COVERAGE_COLUMNS)
    frame = vor.Frame.around(cells[C.LAT].to_numpy(float), cells[C.LON].to_numpy(float))
    pieces = voronoi_pieces(cells, frame, params)
    # one spread per distinct polygon (cells of one sector on several bands share theirs)
    wkb = shapely.to_wkb(pieces["geometry"].to_numpy())
    distinct, poly_of_piece = np.unique(wkb, return_inverse=True)
    polys_m = shapely.from_wkb(distinct)
    population = None
    if params.weights == "population":
        population = (
            reference if reference is not None else reference_population(polys_m, frame, resolution)
        )
    weights = spread_to_h3(polys_m, frame, resolution, population)

    rows = cells.iloc[pieces["_row"].to_numpy()]
    keys = pd.DataFrame(
        {
            C.CELL_ID: rows[C.CELL_ID].to_numpy(),
            C.VALID_FROM: pieces[C.VALID_FROM].to_numpy(),
            C.VALID_TO: pieces[C.VALID_TO].to_numpy(),
            "_piece": poly_of_piece.ravel(),
        }
    )
    out = keys.merge(weights, on="_piece", how="left")
    empty = out[C.H3_ID].isna()
    if empty.any():  # no land in reach (an offshore site): its own hexagon, as `point`
        fallback_rows = rows.iloc[np.flatnonzero(~keys["_piece"].isin(weights["_piece"]))]
        log.warning(
            "coverage: %d cells with no area on land fall back to their site's hexagon",
            len(fallback_rows),
        )
        out.loc[empty, C.H3_ID] = site_hexagons(fallback_rows, resolution)
        out.loc[empty, C.WEIGHT] = 1.0
    out[C.H3_ID] = out[C.H3_ID].astype(np.int64)
    return out[COVERAGE_COLUMNS].reset_index(drop=True)


Strategy = Callable[[pd.DataFrame, int, CoverageParams, pd.Series | None], pd.DataFrame]
STRATEGIES: dict[str, Strategy] = {"point": point_coverage, "voronoi": voronoi_coverage}


def coverage_table(
    cells: pd.DataFrame,
    strategy: str,
    resolution: int,
    params: CoverageParams | None = None,
    reference: pd.Series | None = None,
) -> pd.DataFrame:
    """Coverage rows for the usable cells (status ok) under the named strategy;
    ``reference``: people per H3 cell for population weights (None: INSEE communes)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown coverage strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    params = params or CoverageParams(strategy=strategy)
    usable = cells[cells[cells_rules.STATUS] == cells_rules.OK]
    table = STRATEGIES[strategy](usable.reset_index(drop=True), resolution, params, reference)
    sums = table.groupby([C.CELL_ID, C.VALID_FROM, C.VALID_TO], dropna=False)[C.WEIGHT].sum()
    if len(sums) and not np.allclose(sums.to_numpy(), 1.0):
        raise AssertionError(f"coverage strategy {strategy!r} weights do not sum to 1 per cell")
    return table
