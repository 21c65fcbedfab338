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
Estimates (``*_est``) are raw published counts x factor, rounded, joined to the rows
the gate has already published: k applies to raw counts, never to estimates. Residents
are additive, so their coarse estimates are sums of the finest ones (a parent's estimate
minus its children's is the estimate of the same residual users).

Driver-side pandas: the inputs are one row per home hexagon and per published cell.
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
from mobiterra.geo.attribution import GRID_RESOLUTION, departement_shares, h3_parent
from mobiterra.geo.france import departements as departement_outlines
from mobiterra.geo.grid import cells_to_communes, population_grid
from mobiterra.h3tree import parent_np

CALIBRATED = "calibrated"
TOO_FEW_RESIDENTS = "too_few_residents"
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
        return h3_parent(np.asarray(cells, np.int64), GRID_RESOLUTION), GRID_RESOLUTION
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
    covered = np.unique(h3_parent(np.unique(np.asarray(coverage_cells, np.int64)), res))
    grid = population_grid(GRID_RESOLUTION, departements)
    inside = np.isin(h3_parent(grid["h3_id"].to_numpy(), res), covered)
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
    are listed with a null factor (status ``too_few_residents``).
    """
    if home_counts.empty:
        return pd.DataFrame(columns=EXPANSION_COLUMNS)
    cells, res = _at_resolution(home_counts[C.H3_ID].to_numpy(), resolution)
    candidates = sorted(cells_to_communes(np.unique(cells))[C.DEPARTEMENT_CODE].unique())
    minimum = max(params.min_residents, k)
    first = detected_by_departement(home_counts, resolution, candidates)
    territory = sorted(d for d in candidates if first.get(d, 0.0) >= minimum)
    detected = detected_by_departement(home_counts, resolution, territory)
    reference = reference_residents(candidates)
    coverage = network_coverage(coverage_cells, candidates, params.coverage_resolution)
    rows = []
    for d in candidates:
        n = float(detected.get(d, 0.0))
        calibrated = d in territory and n >= minimum and reference[d] > 0
        rows.append(
            {
                C.DEPARTEMENT_CODE: d,
                C.CALIBRATION_MONTH: str(calibration_month),
                C.REFERENCE_RESIDENTS: int(reference[d]),
                C.NETWORK_COVERAGE: round(float(coverage.get(d, 0.0)), 4),
                C.FACTOR: round(reference[d] / n, 3) if calibrated else None,
                C.STATUS: CALIBRATED if calibrated else TOO_FEW_RESIDENTS,
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


def residents_factors(
    finest_counts: pd.DataFrame, finest: int, resolutions: list[int], factors: pd.DataFrame
) -> pd.DataFrame:
    """(resolution, h3_cell, factor) for the residents table at every resolution.

    ``finest_counts``: (h3_cell, residents) at the finest resolution, before the gate.
    A coarse cell's factor is its estimate (the sum of its finest cells' estimates)
    divided by its residents, so estimates add up across resolutions.
    """
    fine = finest_counts[[C.H3_CELL, C.RESIDENTS]].copy()
    fine["est"] = fine[C.RESIDENTS] * cell_factors(fine[C.H3_CELL].to_numpy(), finest, factors)
    out = []
    for r in resolutions:
        cells = parent_np(fine[C.H3_CELL].to_numpy(), r)
        sums = fine.assign(**{C.H3_CELL: cells}).groupby(C.H3_CELL)[[C.RESIDENTS, "est"]]
        sums = sums.sum(min_count=1).reset_index()
        out.append(
            pd.DataFrame(
                {
                    C.RESOLUTION: r,
                    C.H3_CELL: sums[C.H3_CELL].to_numpy(np.int64),
                    C.FACTOR: (sums["est"] / sums[C.RESIDENTS]).to_numpy(float),
                }
            )
        )
    return pd.concat(out, ignore_index=True).dropna(subset=[C.FACTOR])


def factors_by_cell(cells: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """(resolution, h3_cell, factor) of the given (resolution, h3_cell) rows."""
    out = []
    for r, rows in cells.groupby(C.RESOLUTION):
        ids = rows[C.H3_CELL].to_numpy(np.int64)
        out.append(
            pd.DataFrame(
                {C.RESOLUTION: int(r), C.H3_CELL: ids, C.FACTOR: cell_factors(ids, int(r), factors)}
            )
        )
    if not out:
        return pd.DataFrame(columns=[C.RESOLUTION, C.H3_CELL, C.FACTOR])
    return pd.concat(out, ignore_index=True).dropna(subset=[C.FACTOR])


def with_estimate(
    published_df: DataFrame,
    cell_factors_df: DataFrame,
    count: str,
    estimate: str,
    k: int,
) -> DataFrame:
    """``estimate`` = round(count x factor of the row's (resolution, h3_cell)).

    Null where the cell has no factor, and null rather than a value in [1, k) (a factor
    below 1 would need more subscribers than inhabitants; never published as such).
    ``cell_factors_df``: resolution, h3_cell, factor (small: broadcast).
    """
    keyed_df = cell_factors_df.select(
        F.col(C.RESOLUTION).cast("int").alias("_res"),
        F.col(C.H3_CELL).cast("long").alias("_cell"),
        F.col(C.FACTOR).cast("double").alias("_factor"),
    )
    on = (F.col(C.RESOLUTION) == F.col("_res")) & (F.col(C.H3_CELL) == F.col("_cell"))
    value = F.round(F.col(count) * F.col("_factor")).cast("long")
    return (
        published_df.drop(estimate)
        .join(F.broadcast(keyed_df), on=on, how="left")
        .withColumn(estimate, F.when((value >= 1) & (value < k), F.lit(None)).otherwise(value))
        .drop("_res", "_cell", "_factor")
    )


def _factors_df(spark, factors: pd.DataFrame) -> DataFrame:
    columns = [
        factors[C.RESOLUTION].astype(int).tolist(),
        factors[C.H3_CELL].astype(np.int64).tolist(),
        factors[C.FACTOR].astype(float).tolist(),
    ]
    return spark.createDataFrame(
        list(zip(*columns, strict=True)), "resolution int, h3_cell long, factor double"
    )


def residents_estimator(
    homes_df: DataFrame, resolutions: list[int], factors: pd.DataFrame, k: int
) -> Callable[[DataFrame], DataFrame]:
    """``residents_est`` for the published residents rows (see :func:`residents_factors`)."""

    def estimate(published_df: DataFrame) -> DataFrame:
        finest = max(resolutions)
        fine = count_residents(homes_df, [finest]).select(C.H3_CELL, C.RESIDENTS).toPandas()
        by_cell = residents_factors(fine, finest, resolutions, factors)
        by_cell_df = _factors_df(published_df.sparkSession, by_cell)
        return with_estimate(published_df, by_cell_df, C.RESIDENTS, C.RESIDENTS_EST, k)

    return estimate


def cells_estimator(
    factors: pd.DataFrame, count: str, estimate_column: str, k: int
) -> Callable[[DataFrame], DataFrame]:
    """``estimate_column`` = ``count`` x the factor of each published row's cell."""

    def estimate(published_df: DataFrame) -> DataFrame:
        cells = published_df.select(C.RESOLUTION, C.H3_CELL).distinct().toPandas()
        by_cell_df = _factors_df(published_df.sparkSession, factors_by_cell(cells, factors))
        return with_estimate(published_df, by_cell_df, count, estimate_column, k)

    return estimate


def read_factors(path: str) -> pd.DataFrame:
    """The expansion table written by stage_expansion."""
    return pd.read_parquet(path)
