"""Golden tests of the offline French geography (data: INSEE, IGN)."""

from __future__ import annotations

import h3
import pytest

from mobiterra import geo


@pytest.fixture(scope="module")
def com():
    return geo.communes()


def test_paris_is_about_two_million_people_in_20_arrondissements(com):
    paris = com[com["departement_code"] == "75"]
    assert len(paris) == 20
    assert set(paris["parent_code"]) == {"75056"}
    assert 2.0e6 < paris["population"].sum() < 2.4e6


def test_arrondissements_never_double_count(com):
    cities = geo.communes(arrondissements=False)
    assert com["population"].sum() == cities["population"].sum()
    assert "75056" in set(cities["commune_code"]) and "75101" not in set(cities["commune_code"])
    assert "75056" not in set(com["commune_code"]) and "75101" in set(com["commune_code"])
    assert com["commune_code"].is_unique


def test_metropolitan_france_has_96_departements_and_every_commune_a_polygon(com):
    assert com["departement_code"].nunique() == 96
    assert com.geometry.notna().all()
    assert com.crs.to_string() == "EPSG:4326"
    assert 63e6 < com["population"].sum() < 66e6  # INSEE 2017, metropolitan
    assert {"commune_code", "commune_name", "epci_code", "region_code"} <= set(com.columns)


def test_departement_and_region_outlines_have_names():
    deps = geo.departements()
    assert len(deps) == 96
    yonne = deps.set_index("departement_code").loc["89"]
    assert yonne["departement_name"] == "Yonne" and yonne["region_code"] == "27"
    regs = geo.regions()
    assert len(regs) == 13
    assert regs.set_index("region_code").loc["11", "region_name"] == "Île-de-France"


def test_known_points_map_to_known_communes():
    eiffel = h3.latlng_to_cell(48.8584, 2.2945, 9)
    auxerre = h3.latlng_to_cell(47.7980, 3.5670, 9)
    at_sea = h3.latlng_to_cell(47.0, -6.0, 7)
    out = geo.cells_to_communes([eiffel, auxerre, at_sea]).set_index("h3_cell")
    assert out.loc[eiffel, "commune_code"] == "75107"  # Paris 7e
    assert out.loc[auxerre, ["commune_code", "departement_code"]].tolist() == ["89024", "89"]
    assert not out.loc[eiffel, "nearest"] and out.loc[at_sea, "nearest"]
    as_ints = geo.cells_to_communes([h3.str_to_int(eiffel)])
    assert as_ints["commune_code"].tolist() == ["75107"]


def test_cache_builds_from_the_lzma_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBITERRA_CACHE", str(tmp_path))
    com = geo.communes(["2A", "2B"])
    assert set(com["departement_code"]) == {"2A", "2B"}
    assert list(tmp_path.glob("communes_*.parquet"))


def test_population_grid_keeps_the_population():
    grid = geo.population_grid(8, ["75"])
    assert grid["population"].sum() == pytest.approx(geo.communes(["75"])["population"].sum())
    assert grid["h3_id"].dtype == "int64"


def test_unknown_departement_names_the_bad_value():
    with pytest.raises(ValueError, match="'99'"):
        geo.communes(["99"])
