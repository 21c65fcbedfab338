"""Expansion to the whole population: a factor per département, applied after the gate.

    factor(d) = reference residents of d (INSEE commune populations)
                / detected resident subscribers of d (usual residences of the calibration month)

Detected residents are attributed to départements with mobiterra.geo.attribution (each
home hexagon split in proportion to its INSEE population), in two passes: first among
the départements the homes' hexagons lie in, then only among those with at least
``max(min_residents, k)`` detected residents (the network's territory), so a handful of
subscribers spilling over a border neither makes a factor of thousands nor is lost.

A hexagon's factor mixes its départements' factors by population: its expected
subscribers are sum_d pop(d) / factor(d), so factor = pop / that (a harmonic mean).

Estimates (``*_est``) are joined to the rows the gate has already published (k applies
to raw counts only). Within one tree of the coarsest resolution every estimate is the
same whole number times its raw count: the tree's effective factor on its residents,
rounded. So any difference of published estimates an attacker can form across
resolutions is that number times the difference of raw counts, which the gate keeps out
of [1, k) — per-cell or fractional factors would let rounding and factor mixing put
such differences at 1 or 2. The cost: one factor per coarse hexagon (~1,800 km2 at res 4;
a border one mixes its départements) and a rounding error below 0.5 / factor.

Driver-side pandas: the inputs are one row per home hexagon and per published tree.
Data: INSEE, IGN (Licence Ouverte 2.0) through mobiterra.geo.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.residence import count_residents
from mobiterra import columns as C
from mobiterra.config import ExpansionParams
from mobiterra.geo.attribution import GRID_RESOLUTION, departement_shares
from mobiterra.geo.france import departements as departement_outlines
from mobiterra.geo.grid import cells_to_communes, population_grid
from mobiterra.h3cols import h3_parent
from mobiterra.h3tree import parent_np

CALIBRATED = "calibrated"
TOO_FEW_RESIDENTS = "too_few_residents"
LOW_COVERAGE = "low_network_coverage"
EXPANSION_COLUMNS = [
    C.DEPARTEMENT_CODE,
    C.CALIBRATION_MONTH,
    C.REFERENCE_RESIDENTS,
    C.NETWORK_COVERAGE,
    C.FACTOR,
    C.STATUS,
]


def attribution_resolution(finest: int) -> int:
    """Home hexagons are attributed at the finest resolution, at most the grid's (8)."""
    return min(finest, GRID_RESOLUTION)


def _at_resolution(cells: np.ndarray, resolution: int) -> tuple[np.ndarray, int]:
    """Cells finer than the population grid are replaced by their grid-resolution parent."""
    if resolution > GRID_RESOLUTION:
        return parent_np(cells, GRID_RESOLUTION), GRID_RESOLUTION
    return np.asarray(cells, np.int64), resolution


def detected_by_departement(
    home_counts: pd.DataFrame, resolution: int, territory: list[str]
) -> pd.Series:
    """Detected residents per département: ``home_counts`` (h3_id, residents) split by
    the INSEE population shares of each hexagon among the ``territory``'s départements."""
    if not territory or home_counts.empty:
        return pd.Series(dtype=float)
    cells, res = _at_resolution(home_counts[C.H3_ID].to_numpy(), resolution)
    counts = pd.DataFrame({"cell": cells, "n": home_counts[C.RESIDENTS].to_numpy(float)})
    counts = counts.groupby("cell", as_index=False)["n"].sum()
    shares = departement_shares(counts["cell"].to_numpy(), res, territory)
    split = counts.merge(shares, on="cell", how="inner")
    return (split["n"] * split["share"]).groupby(split[C.DEPARTEMENT_CODE]).sum()


def network_coverage(
    coverage_cells: np.ndarray, departements: list[str], resolution: int
) -> pd.Series:
    """Share of each département's INSEE population living in ``resolution`` hexagons
    that hold at least one hexagon of the coverage table."""
    if not departements:
        return pd.Series(dtype=float)
    res = min(resolution, GRID_RESOLUTION)
    covered = np.unique(parent_np(np.unique(np.asarray(coverage_cells, np.int64)), res))
    grid = population_grid(GRID_RESOLUTION, departements)
    inside = np.isin(parent_np(grid["h3_id"].to_numpy(), res), covered)
    total = grid.groupby(C.DEPARTEMENT_CODE)["population"].sum()
    return (grid["population"] * inside).groupby(grid[C.DEPARTEMENT_CODE]).sum() / total


def reference_residents(departements: list[str]) -> pd.Series:
    """INSEE population of each département (sum of its communes)."""
    outlines = departement_outlines(metropolitan=False)
    ref = outlines.set_index(C.DEPARTEMENT_CODE)["population"]
    return ref.reindex(departements).fillna(0).astype(np.int64)


def departement_factors(
    home_counts: pd.DataFrame,
    resolution: int,
    coverage_cells: np.ndarray,
    params: ExpansionParams,
    k: int,
    calibration_month: str,
) -> pd.DataFrame:
    """The expansion table (EXPANSION_COLUMNS): one row per département holding homes.

    ``home_counts``: (h3_id, residents) of the calibration month at ``resolution``.
    Départements with fewer than ``max(params.min_residents, k)`` detected residents
    are listed with a null factor (status ``too_few_residents``), and so are those whose
    network coverage is below ``params.min_network_coverage`` (``low_network_coverage``):
    their reference counts people the network does not serve, so the factor would expand
    a border's spill-over of subscribers (a few hundred of 40,000 in a simulated month)
    to the whole département — factors of thousands, mixed into border hexagons' estimates.
    Their detected residents are attributed to the covered départements instead.
    """
    if home_counts.empty:
        return pd.DataFrame(columns=EXPANSION_COLUMNS)
    cells, res = _at_resolution(home_counts[C.H3_ID].to_numpy(), resolution)
    candidates = sorted(cells_to_communes(np.unique(cells))[C.DEPARTEMENT_CODE].unique())
    minimum = max(params.min_residents, k)
    coverage = network_coverage(coverage_cells, candidates, params.coverage_resolution)
    covered = [d for d in candidates if coverage.get(d, 0.0) >= params.min_network_coverage]
    first = detected_by_departement(home_counts, resolution, candidates)
    territory = sorted(d for d in covered if first.get(d, 0.0) >= minimum)
    detected = detected_by_departement(home_counts, resolution, territory)
    reference = reference_residents(candidates)
    rows = []
    for d in candidates:
        n = float(detected.get(d, 0.0))
        calibrated = d in territory and n >= minimum and reference[d] > 0
        status = CALIBRATED if calibrated else TOO_FEW_RESIDENTS
        if not calibrated and d not in covered:
            status = LOW_COVERAGE
        rows.append(
            {
                C.DEPARTEMENT_CODE: d,
                C.CALIBRATION_MONTH: str(calibration_month),
                C.REFERENCE_RESIDENTS: int(reference[d]),
                C.NETWORK_COVERAGE: round(float(coverage.get(d, 0.0)), 4),
                C.FACTOR: round(reference[d] / n, 3) if calibrated else None,
                C.STATUS: status,
            }
        )
    table = pd.DataFrame(rows, columns=EXPANSION_COLUMNS)
    return table.astype({C.FACTOR: "float64", C.NETWORK_COVERAGE: "float64"})


def cell_factors(cells: np.ndarray, resolution: int, factors: pd.DataFrame) -> np.ndarray:
    """Factor of each H3 cell (NaN when no département is calibrated).

    The population-weighted harmonic mean of its calibrated départements' factors:
    people / expected subscribers, with expected subscribers = sum_d pop_d / factor_d.
    """
    cells = np.asarray(cells, np.int64)
    calibrated = factors.dropna(subset=[C.FACTOR])
    if calibrated.empty or not len(cells):
        return np.full(len(cells), np.nan)
    at, res = _at_resolution(cells, resolution)
    unique = np.unique(at)
    shares = departement_shares(unique, res, sorted(calibrated[C.DEPARTEMENT_CODE]))
    factor = calibrated.set_index(C.DEPARTEMENT_CODE)[C.FACTOR]
    per_subscriber = shares["share"] / shares[C.DEPARTEMENT_CODE].map(factor)
    inverse = per_subscriber.groupby(shares["cell"]).sum()
    by_cell = (shares.groupby("cell")["share"].sum() / inverse).reindex(unique)
    return by_cell.reindex(at).to_numpy(float)


def tree_factors(
    finest_counts: pd.DataFrame,
    finest: int,
    coarsest: int,
    factors: pd.DataFrame,
    roots: np.ndarray | None = None,
) -> pd.DataFrame:
    """(root, factor): one whole-number factor per ``coarsest``-resolution cell.

    The root's factor is its effective factor on its residents: the sum of its finest
    cells' estimates (residents x cell factor) over its residents, so the tree's
    estimates add up to what per-cell factors give. ``roots`` without residents take
    their own cell factor. Rounded to a whole number so that every estimate of the tree
    is exactly that number times the raw count (see the module docstring).
    ``finest_counts``: (h3_cell, residents) at ``finest``, before the gate.
    """
    fine = finest_counts[[C.H3_CELL, C.RESIDENTS]].copy()
    fine["est"] = fine[C.RESIDENTS] * cell_factors(fine[C.H3_CELL].to_numpy(), finest, factors)
    fine["root"] = parent_np(fine[C.H3_CELL].to_numpy(), coarsest)
    sums = fine.groupby("root")[[C.RESIDENTS, "est"]].sum(min_count=1)
    by_root = (sums["est"] / sums[C.RESIDENTS]).dropna()
    if roots is not None:
        others = np.setdiff1d(np.unique(np.asarray(roots, np.int64)), by_root.index.to_numpy())
        own = pd.Series(cell_factors(others, coarsest, factors), index=others)
        by_root = pd.concat([by_root, own.dropna()])
    rounded = by_root.round()
    rounded = rounded[rounded >= 1]  # below one person per subscriber: no estimate
    return pd.DataFrame(
        {"root": rounded.index.to_numpy(np.int64), C.FACTOR: rounded.to_numpy(np.int64)}
    )


def with_estimate(
    published_df: DataFrame,
    root_factors_df: DataFrame,
    coarsest: int,
    count: str,
    estimate: str,
) -> DataFrame:
    """``estimate`` = ``count`` x the whole-number factor of the row's ``coarsest`` ancestor.

    Null where the tree has no factor. Every estimate of a tree is the same multiple of
    its raw count, so a difference of estimates is that multiple of the difference of
    raw counts, which the gate already keeps out of [1, k); a factor >= 1 keeps every
    estimate >= its count >= k. ``root_factors_df``: root, factor (small: broadcast).
    """
    keyed_df = root_factors_df.select(
        F.col("root").cast("long").alias("_root"), F.col(C.FACTOR).cast("long").alias("_factor")
    )
    on = h3_parent(C.H3_CELL, coarsest) == F.col("_root")
    return (
        published_df.drop(estimate)
        .join(F.broadcast(keyed_df), on=on, how="left")
        .withColumn(estimate, (F.col(count) * F.col("_factor")).cast("long"))
        .drop("_root", "_factor")
    )


def estimator(
    homes_df: DataFrame,
    resolutions: list[int],
    factors: pd.DataFrame,
    count: str,
    estimate_column: str,
) -> Callable[[DataFrame], DataFrame]:
    """The ``*_est`` column of a table's published rows (int64 ``h3_cell``): ``count`` x
    the whole-number factor of the row's coarsest-resolution tree (:func:`tree_factors`,
    effective factors on the month's residents ``homes_df``)."""

    def estimate(published_df: DataFrame) -> DataFrame:
        finest, coarsest = max(resolutions), min(resolutions)
        fine = count_residents(homes_df, [finest]).select(C.H3_CELL, C.RESIDENTS).toPandas()
        roots = (
            published_df.select(h3_parent(C.H3_CELL, coarsest).alias("root"))
            .distinct()
            .toPandas()["root"]
            .to_numpy()
        )
        by_root = tree_factors(fine, finest, coarsest, factors, roots)
        by_root_df = published_df.sparkSession.createDataFrame(
            list(zip(by_root["root"].tolist(), by_root[C.FACTOR].tolist(), strict=True)),
            "root long, factor long",
        )
        return with_estimate(published_df, by_root_df, coarsest, count, estimate_column)

    return estimate


def read_factors(path: str) -> pd.DataFrame:
    """The expansion table written by stage_expansion."""
    return pd.read_parquet(path)
