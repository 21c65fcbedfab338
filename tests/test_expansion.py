"""Expansion factors per département, cell factors and estimates after the gate."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from jobs import expansion
from mobiterra import columns as C
from mobiterra.config import ExpansionParams
from mobiterra.geo import departements
from mobiterra.geo.attribution import departement_shares
from mobiterra.geo.grid import population_grid

K = 20
# Resolution-8 hexagons: two in Aurillac (Cantal, 15), one in Le Puy-en-Velay (Haute-Loire,
# 43), one in Cahors (Lot, 46).
AURILLAC = h3.str_to_int(h3.latlng_to_cell(44.9265, 2.4397, 8))
AURILLAC_2 = h3.str_to_int(h3.latlng_to_cell(44.93, 2.47, 8))
LE_PUY = h3.str_to_int(h3.latlng_to_cell(45.0434, 3.8853, 8))
CAHORS = h3.str_to_int(h3.latlng_to_cell(44.4475, 1.4419, 8))


@pytest.fixture(scope="module")
def population():
    return departements(metropolitan=False).set_index(C.DEPARTEMENT_CODE)["population"]


def _factors(**by_departement: float) -> pd.DataFrame:
    return pd.DataFrame(
        {C.DEPARTEMENT_CODE: list(by_departement), C.FACTOR: list(by_departement.values())}
    )


def _covering(*codes: str) -> np.ndarray:
    """Every resolution-8 hexagon of these départements: a network covering them."""
    return population_grid(8, list(codes))[C.H3_ID].to_numpy()


def test_factor_is_reference_over_detected_and_a_small_spill_joins_the_territory(population):
    homes = pd.DataFrame({C.H3_ID: [AURILLAC, AURILLAC_2, LE_PUY], C.RESIDENTS: [150, 100, 15]})
    # min_residents below k: k still rules (15 detected in Haute-Loire make no factor)
    params = ExpansionParams(min_residents=10)
    table = expansion.departement_factors(
        homes, 8, _covering("15", "43"), params, K, "2020-02"
    ).set_index(C.DEPARTEMENT_CODE)
    assert list(table.index) == ["15", "43"]
    assert table.loc["15", C.STATUS] == expansion.CALIBRATED
    # the 15 users homed in Haute-Loire are the territory's (nearest calibrated): 265
    assert table.loc["15", C.FACTOR] == pytest.approx(population["15"] / 265, abs=1e-3)
    assert table.loc["43", C.STATUS] == expansion.TOO_FEW_RESIDENTS
    assert np.isnan(table.loc["43", C.FACTOR])
    assert table[C.REFERENCE_RESIDENTS].to_dict() == {
        "15": population["15"],
        "43": population["43"],
    }
    assert (table[C.CALIBRATION_MONTH] == "2020-02").all()
    assert table[C.NETWORK_COVERAGE].between(0, 1).all()
    # factors and public populations only: no subscriber count leaves
    assert [C.DEPARTEMENT_CODE, *table.columns] == expansion.EXPANSION_COLUMNS


def test_a_neighbour_the_network_barely_covers_gets_no_factor(population):
    # 300 subscribers homed in Haute-Loire (enough for a factor) but the antennas cover
    # Cantal and only Le Puy's hexagon: Haute-Loire is outside the network's territory
    homes = pd.DataFrame({C.H3_ID: [AURILLAC, LE_PUY], C.RESIDENTS: [1000, 300]})
    cells = np.concatenate([_covering("15"), [LE_PUY]])
    table = expansion.departement_factors(
        homes, 8, cells, ExpansionParams(), K, "2020-02"
    ).set_index(C.DEPARTEMENT_CODE)
    assert table.loc["43", C.NETWORK_COVERAGE] < 0.9
    assert table.loc["43", C.STATUS] == expansion.LOW_COVERAGE
    assert np.isnan(table.loc["43", C.FACTOR])
    # the border's homes are Cantal's: 1,300 detected residents
    assert table.loc["15", C.FACTOR] == pytest.approx(population["15"] / 1300, abs=1e-3)
    # with the threshold off, Haute-Loire gets its (spill-over) factor
    off = expansion.departement_factors(
        homes, 8, cells, ExpansionParams(min_network_coverage=0), K, "2020-02"
    ).set_index(C.DEPARTEMENT_CODE)
    assert off.loc["43", C.STATUS] == expansion.CALIBRATED


def test_no_homes_no_factors():
    empty = pd.DataFrame({C.H3_ID: pd.Series(dtype="int64"), C.RESIDENTS: pd.Series(dtype="int64")})
    table = expansion.departement_factors(empty, 8, np.array([AURILLAC]), ExpansionParams(), K, "m")
    assert table.empty and list(table.columns) == expansion.EXPANSION_COLUMNS


def test_cell_factor_is_the_population_weighted_harmonic_mean():
    factors = _factors(**{"15": 100.0, "46": 400.0})
    inside = expansion.cell_factors(np.array([AURILLAC, CAHORS]), 8, factors)
    assert inside.tolist() == [100.0, 400.0]
    # a resolution-4 hexagon straddling Cantal and Lot (edge ~ 22 km)
    border = h3.str_to_int(h3.latlng_to_cell(44.85, 2.10, 4))
    shares = departement_shares(np.array([border]), 4, ["15", "46"]).set_index(C.DEPARTEMENT_CODE)[
        "share"
    ]
    assert 0.05 < shares["15"] < 0.95
    (mixed,) = expansion.cell_factors(np.array([border]), 4, factors)
    # people / expected subscribers: a Lot inhabitant is 1/400 of a subscriber
    assert mixed == pytest.approx(1 / (shares["15"] / 100 + shares["46"] / 400))
    assert 100 < mixed < shares["15"] * 100 + shares["46"] * 400
    assert np.isnan(expansion.cell_factors(np.array([AURILLAC]), 8, _factors(**{"15": None})))


def test_one_whole_factor_per_coarse_tree_from_its_residents():
    factors = _factors(**{"15": 100.0, "46": 400.0})
    # a resolution-4 tree holding residents of both départements (see the test above)
    border = h3.str_to_int(h3.latlng_to_cell(44.85, 2.10, 4))
    cantal_side, lot_side = _children_in(border, "15"), _children_in(border, "46")
    fine = pd.DataFrame({C.H3_CELL: [AURILLAC, cantal_side, lot_side], C.RESIDENTS: [150, 30, 10]})
    empty_root = _parent(CAHORS, 4)  # no residents: its own population mix
    got = expansion.tree_factors(fine, 8, 4, factors, np.array([empty_root]))
    got = got.set_index("root")[C.FACTOR].to_dict()
    assert got[_parent(AURILLAC, 4)] == 100
    assert got[border] == round((30 * 100 + 10 * 400) / 40)  # 175: its residents' mix
    assert got[empty_root] == 400
    assert all(isinstance(v, int) for v in got.values())


def _children_in(cell: int, departement: str) -> int:
    """A populated resolution-8 descendant of ``cell`` lying wholly in ``departement``."""
    children = np.array(
        [h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(cell), 8)], np.int64
    )
    shares = departement_shares(children, 8, ["15", "46"])
    whole = shares[(shares[C.DEPARTEMENT_CODE] == departement) & (shares["share"] == 1.0)]
    return int(whole["cell"].iloc[len(whole) // 2])


def _parent(cell: int, res: int) -> int:
    return h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), res))


def test_estimates_are_one_multiple_of_raw_counts_per_tree(spark):
    root = _parent(AURILLAC, 4)
    published_df = spark.createDataFrame(
        [(8, AURILLAC, 25), (6, _parent(AURILLAC, 6), 60), (4, root, 85), (8, LE_PUY, 30)],
        "resolution int, h3_cell long, users long",
    )
    factors_df = spark.createDataFrame([(root, 173)], "root long, factor long")
    got = expansion.with_estimate(published_df, factors_df, 4, C.USERS, C.USERS_EST)
    assert got.columns == [C.RESOLUTION, C.H3_CELL, C.USERS, C.USERS_EST]
    rows = {(r[C.RESOLUTION], r[C.H3_CELL]): r[C.USERS_EST] for r in got.collect()}
    assert rows == {
        (8, AURILLAC): 25 * 173,
        (6, _parent(AURILLAC, 6)): 60 * 173,
        (4, root): 85 * 173,  # minus its child: (85 - 60) x 173, as the raw 25 >= k
        (8, LE_PUY): None,  # no factor for its tree
    }
