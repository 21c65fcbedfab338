"""DEGURBA on H3: hand grids for contiguity, thresholds and gap filling; real communes."""

from __future__ import annotations

import h3.api.basic_int as h3i
import numpy as np
import pandas as pd
import pytest

from mobiterra import degurba
from mobiterra.config import DegurbaParams

P = DegurbaParams()
ORIGIN = h3i.latlng_to_cell(47.0, 2.0, 8)  # central France, far from any pentagon


def grid(density: dict[int, float]) -> pd.DataFrame:
    """Cells with a density (inh/km2); population = density x the cell's real area."""
    ids = np.array(sorted(density), dtype=np.int64)
    area = np.array([h3i.cell_area(int(c), unit="km^2") for c in ids])
    dens = np.array([density[c] for c in ids])
    return pd.DataFrame({"h3_id": ids, "population": dens * area, "density": dens})


def disk(centre: int, radius: int) -> list[int]:
    return [int(c) for c in h3i.grid_disk(centre, radius)]


def classes(cells: pd.DataFrame, params: DegurbaParams = P) -> pd.Series:
    out = degurba.classify_cells(cells, params)
    return out.set_index("h3_id")["cell_class"]


def test_connected_clusters_follow_h3_adjacency():
    a = disk(ORIGIN, 1)
    far = int(h3i.grid_ring(ORIGIN, 5)[0])
    cells = np.array([*a, far], dtype=np.int64)
    labels = degurba.connected_clusters(cells)
    assert len(set(labels[:7])) == 1 and labels[7] != labels[0]
    # a line of cells touching end to end is one cluster
    line = [int(c) for c in h3i.grid_path_cells(ORIGIN, far)]
    assert len(set(degurba.connected_clusters(np.array(line, dtype=np.int64)))) == 1


def test_dense_blob_over_50000_is_an_urban_centre_and_its_thin_ring_a_cluster():
    core = disk(ORIGIN, 3)  # 37 cells x ~0.67 km2 x 2,500/km2 ~ 62,000 people
    ring = [int(c) for c in h3i.grid_ring(ORIGIN, 4)]  # 24 cells at 400/km2
    cells = grid({**dict.fromkeys(core, 2500.0), **dict.fromkeys(ring, 400.0)})
    assert cells.loc[cells["density"] > 2000, "population"].sum() > 50_000
    got = classes(cells)
    assert (got[core] == degurba.URBAN_CENTRE).all()
    assert (got[ring] == degurba.URBAN_CLUSTER).all()


def test_two_separate_dense_blobs_under_50000_each_are_clusters_not_centres():
    other = int(h3i.grid_ring(ORIGIN, 12)[0])
    a, b = disk(ORIGIN, 2), disk(other, 2)  # 19 cells each, ~35,000 people each
    cells = grid({**dict.fromkeys(a, 2500.0), **dict.fromkeys(b, 2500.0)})
    got = classes(cells)
    assert (got == degurba.URBAN_CLUSTER).all()
    # joined by a dense corridor, they make one centre over 50,000
    bridge = [int(c) for c in h3i.grid_path_cells(ORIGIN, other)]
    joined = grid(dict.fromkeys({*a, *b, *bridge}, 2500.0))
    assert (classes(joined) == degurba.URBAN_CENTRE).all()


def test_density_thresholds_are_inclusive_and_strict_below():
    core = disk(ORIGIN, 4)  # 61 cells ~ 0.67 km2: ~61,000 people at 1,500/km2
    at = classes(grid(dict.fromkeys(core, 1500.0)))
    below = classes(grid(dict.fromkeys(core, 1499.0)))
    assert (at == degurba.URBAN_CENTRE).all()
    assert (below == degurba.URBAN_CLUSTER).all()  # still >= 300 and >= 5,000 people
    sparse = classes(grid(dict.fromkeys(core, 299.0)))
    assert (sparse == degurba.RURAL_CELL).all()
    small = classes(grid(dict.fromkeys(disk(ORIGIN, 1), 900.0)))  # 7 cells ~ 4,200 people
    assert (small == degurba.RURAL_CELL).all()


def test_gap_in_an_urban_centre_is_filled_but_an_edge_cell_is_not():
    core = disk(ORIGIN, 3)
    hole = int(h3i.grid_ring(ORIGIN, 1)[0])
    outside = int(h3i.grid_ring(ORIGIN, 5)[0])
    dens = {c: 2500.0 for c in core if c != hole} | {hole: 50.0, outside: 50.0}
    got = classes(grid(dens))
    assert got[hole] == degurba.URBAN_CENTRE  # 6 of 6 neighbours in the centre
    assert got[outside] == degurba.RURAL_CELL
    # a notch: two neighbouring cells out of the ring have 5 of 6 neighbours in the centre
    notch = [int(c) for c in h3i.grid_ring(ORIGIN, 1)[:2]]
    dens = {c: 2500.0 for c in core if c not in notch} | dict.fromkeys(notch, 50.0)
    assert (classes(grid(dens))[notch] == degurba.URBAN_CENTRE).all()
    strict = classes(grid(dens), DegurbaParams(centre_fill_neighbours=6))
    assert (strict[notch] == degurba.RURAL_CELL).all()


def test_commune_class_by_majority_of_people():
    cells = pd.DataFrame(
        {"h3_id": [1, 2, 3, 4], "cell_class": ["urban_centre", "urban_cluster", "rural", "rural"]}
    )
    grid_df = pd.DataFrame(
        {
            "h3_id": [1, 2, 3, 1, 4, 2, 3],
            "commune_code": ["A", "A", "A", "B", "B", "C", "C"],
            "population": [60.0, 30.0, 10.0, 40.0, 60.0, 50.0, 50.0],
        }
    )
    out = degurba.classify_communes(grid_df, cells, P).set_index("commune_code")
    assert out.loc["A", "density_class"] == degurba.CITY  # 60 % in a centre
    assert out.loc["B", "density_class"] == degurba.RURAL  # 40 % centre, 60 % rural
    assert out.loc["C", "density_class"] == degurba.TOWN  # exactly half in a cluster
    assert out.loc["A", "share_urban_centre"] == pytest.approx(0.6)


def test_size_classes_and_small_towns():
    pop = pd.Series([0, 1999, 2000, 9999, 10_000, 49_999, 50_000, 199_999, 200_000])
    got = degurba.size_class(pop, P.size_bounds).tolist()
    assert got == [
        "lt_2k",
        "lt_2k",
        "2k_10k",
        "2k_10k",
        "10k_50k",
        "10k_50k",
        "50k_200k",
        "50k_200k",
        "ge_200k",
    ]
    labels = dict(degurba.size_classes(P.size_bounds))
    assert labels["2k_10k"] == "2\u202f000 à 9\u202f999 hab."
    small = degurba.is_small_town_or_rural(
        pd.Series(["rural", "rural", "town", "town", "city"]),
        pd.Series([500, 80_000, 9_999, 10_000, 3_000]),
        P,
    )
    assert small.tolist() == [True, True, True, False, False]


def test_lookup_prefers_the_commune_holding_the_cell():
    grid_df = pd.DataFrame(
        {"h3_id": [1, 2, 2, 3], "commune_code": ["big", "big", "tiny", "big"], "population": 1.0}
    )
    lookup = degurba.cell_lookup(grid_df).set_index("h3_id")["commune_code"]
    assert lookup.to_dict() == {1: "big", 2: "big", 3: "big"}


def test_real_communes_paris_is_city_cantal_village_rural_auxerre_town():
    from mobiterra.geo import communes, population_grid

    # Paris and its first ring (the urban centre crosses the périphérique), Cantal, Yonne
    deps = ["75", "92", "93", "94", "15", "89"]
    pop_grid = population_grid(8, deps)
    cells = degurba.classify_cells(degurba.cell_density(pop_grid), P)
    classes_df = degurba.classify_communes(pop_grid, cells, P)
    table = degurba.commune_table(communes(deps), classes_df, P).set_index("commune_code")
    paris = table[table["departement_code"] == "75"]
    assert len(paris) == 20 and (paris["density_class"] == degurba.CITY).all()
    assert (paris["size_class"] == "ge_200k").all()  # arrondissements take Paris's size
    murat = table.loc["15138"]  # Murat, Cantal, ~1,900 inhabitants
    assert murat["density_class"] == degurba.RURAL and murat["small_town_or_rural"]
    assert table.loc["89024", "density_class"] == degurba.TOWN  # Auxerre, 35,000
    assert not table.loc["89024", "small_town_or_rural"]
    cantal = table[table["departement_code"] == "15"]
    assert (cantal["density_class"] == degurba.RURAL).mean() > 0.95
