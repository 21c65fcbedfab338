"""Coverage strategies on hand-made antennas: bisectors, sectors, range, land, epochs,
weights (area and dasymetric), and how usual residence uses fractional weights."""

from __future__ import annotations

from datetime import date, datetime

import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import cells as cells_rules
from jobs import coverage, residence
from jobs import coverage_voronoi as vor
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.config import CoverageParams, ResidenceParams

RES = 8
EDGE_M = h3.average_hexagon_edge_length(RES, unit="m")
AREA = CoverageParams(weights="area")
# Rural Cantal: sparse sites, no coast, no border.
CANTAL = (45.05, 2.65)


def _cells(rows: list[tuple]) -> pd.DataFrame:
    """rows: (cell_id, lat, lon, azimuth_deg, range_m[, valid_from, valid_to])."""
    full = [(*r, None, None) if len(r) == 5 else r for r in rows]
    df = pd.DataFrame(
        full,
        columns=[C.CELL_ID, C.LAT, C.LON, C.AZIMUTH_DEG, C.RANGE_M, C.VALID_FROM, C.VALID_TO],
    )
    df[C.AZIMUTH_DEG] = df[C.AZIMUTH_DEG].astype(float)
    df[C.RANGE_M] = df[C.RANGE_M].astype(float)
    df[cells_rules.STATUS] = cells_rules.OK
    return df


def _polygons(cells: pd.DataFrame, params: CoverageParams = AREA):
    lat, lon = cells[C.LAT].to_numpy(float), cells[C.LON].to_numpy(float)
    frame = vor.Frame.around(lat, lon)
    terr = vor.territory(lat, lon, frame, params, 20_000.0)
    return frame, terr, vor.cell_polygons(cells, frame, terr, params)


def _centres(h3_ids) -> np.ndarray:
    """(lat, lon) of int64 H3 ids."""
    return np.array([h3.cell_to_latlng(h3.int_to_str(int(i))) for i in h3_ids]).reshape(-1, 2)


def _assert_weights_sum_to_one(table: pd.DataFrame) -> None:
    key = [C.CELL_ID, C.VALID_FROM, C.VALID_TO]
    sums = table.groupby(key, dropna=False)[C.WEIGHT].sum()
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-9), sums
    assert (table[C.WEIGHT] > 0).all() and (table[C.WEIGHT] <= 1 + 1e-12).all()
    assert not table.duplicated([*key, C.H3_ID]).any()
    assert all(h3.get_resolution(h3.int_to_str(int(i))) == RES for i in table[C.H3_ID])


def test_two_sites_split_along_their_bisector():
    lat, lon = CANTAL
    cells = _cells([("A", lat, lon, None, 20_000), ("B", lat, lon + 0.05, None, 20_000)])
    frame, _, (pa, pb) = _polygons(cells)
    ax, ay = frame.xy(np.array([lon]), np.array([lat]))
    bx, by = frame.xy(np.array([lon + 0.05]), np.array([lat]))
    shared = shapely.get_coordinates(shapely.intersection(pa.boundary, pb.boundary))
    assert len(shared) >= 2
    d_a = np.hypot(shared[:, 0] - ax, shared[:, 1] - ay)
    d_b = np.hypot(shared[:, 0] - bx, shared[:, 1] - by)
    assert np.abs(d_a - d_b).max() < 1.0  # metres: the shared edge is the bisector
    assert shapely.area(shapely.intersection(pa, pb)) < 1.0

    table = coverage.coverage_table(cells, "voronoi", RES, AREA)
    _assert_weights_sum_to_one(table)
    mid = lon + 0.025
    slack = 1.5 * EDGE_M / (111_320 * np.cos(np.radians(lat)))  # one hexagon, in degrees
    for cell, side in (("A", -1), ("B", 1)):
        lons = _centres(table.loc[table[C.CELL_ID] == cell, C.H3_ID])[:, 1]
        assert (side * (lons - mid) > -slack).all()
    # hexagons astride the bisector are shared, with the two weights on either side
    both = set(table.loc[table[C.CELL_ID] == "A", C.H3_ID]) & set(
        table.loc[table[C.CELL_ID] == "B", C.H3_ID]
    )
    assert both and (np.abs(_centres(list(both))[:, 1] - mid) < slack).all()


def test_sectors_split_a_site_by_angular_bisectors():
    lat, lon = CANTAL
    r = 3_000.0
    cells = _cells([(f"S-{a}", lat, lon, a, r) for a in (0.0, 120.0, 240.0)])
    frame, _, polys = _polygons(cells)
    areas = shapely.area(polys)
    disk = shapely.area(shapely.buffer(shapely.Point(0, 0), r))
    assert np.allclose(areas, disk / 3, rtol=0.01)
    for i in range(3):
        for j in range(i + 1, 3):
            assert shapely.area(shapely.intersection(polys[i], polys[j])) < 1.0
    # a point 2 km away at bearing b belongs to the sector whose azimuth is nearest to b
    for bearing, owner in ((10, 0), (100, 1), (170, 1), (200, 2), (290, 2), (350, 0)):
        dlat = 2_000 * np.cos(np.radians(bearing)) / 111_320
        dlon = 2_000 * np.sin(np.radians(bearing)) / (111_320 * np.cos(np.radians(lat)))
        x, y = frame.xy(np.array([lon + dlon]), np.array([lat + dlat]))
        inside = shapely.contains_xy(polys, x[0], y[0])
        assert inside.tolist() == [k == owner for k in range(3)], bearing

    # two sectors facing east and west: bisectors north-south, halves of the site
    ew = _cells([("E", lat, lon, 90.0, r), ("W", lat, lon, 270.0, r)])
    table = coverage.coverage_table(ew, "voronoi", RES, AREA)
    _assert_weights_sum_to_one(table)
    slack = 1.5 * EDGE_M / (111_320 * np.cos(np.radians(lat)))
    assert (_centres(table.loc[table[C.CELL_ID] == "E", C.H3_ID])[:, 1] > lon - slack).all()
    assert (_centres(table.loc[table[C.CELL_ID] == "W", C.H3_ID])[:, 1] < lon + slack).all()


def test_same_azimuth_cells_share_their_sector_and_omni_cells_keep_the_site():
    lat, lon = CANTAL
    cells = _cells(
        [
            ("N-800", lat, lon, 0.0, 4_000),
            ("N-2600", lat, lon, 0.0, 4_000),
            ("S-800", lat, lon, 180.0, 4_000),
            ("OMNI", lat, lon, None, 4_000),
        ]
    )
    _, _, polys = _polygons(cells)
    assert shapely.equals_exact(shapely.normalize(polys[0]), shapely.normalize(polys[1]), 1e-6)
    assert shapely.area(polys[0]) == pytest.approx(shapely.area(polys[3]) / 2, rel=0.01)
    assert shapely.area(polys[3]) == pytest.approx(np.pi * 4_000**2, rel=0.01)


def test_range_clips_an_isolated_site():
    lat, lon = CANTAL
    cells = _cells([("lone", lat, lon, None, 1_500), ("far", lat + 0.3, lon, None, 1_500)])
    _, _, polys = _polygons(cells)
    assert shapely.area(polys[0]) == pytest.approx(np.pi * 1_500**2, rel=0.01)
    table = coverage.coverage_table(cells, "voronoi", RES, AREA)
    _assert_weights_sum_to_one(table)
    centres = _centres(table.loc[table[C.CELL_ID] == "lone", C.H3_ID])
    dist = [h3.great_circle_distance((a, b), (lat, lon), unit="m") for a, b in centres]
    assert max(dist) < 1_500 + EDGE_M


def test_default_range_follows_local_density():
    params = CoverageParams()
    x = np.array([0.0, 300.0, 50_000.0, 80_000.0, 83_000.0])
    y = np.zeros(5)
    got = vor.default_range_m(x, y, params)
    # town pair -> floor; isolated site -> ceiling; 3 km apart -> 2 x 3 km
    assert got.tolist() == [2_000.0, 2_000.0, 10_000.0, 6_000.0, 6_000.0]
    assert vor.default_range_m(x[:1], y[:1], params).tolist() == [10_000.0]
    # absent range_m falls back to the default (isolated: 10 km)
    lat, lon = CANTAL
    cells = _cells([("a", lat, lon, None, None), ("b", lat + 0.5, lon, None, np.nan)])
    _, _, polys = _polygons(cells)
    assert shapely.area(polys[0]) == pytest.approx(np.pi * 10_000**2, rel=0.01)


def test_coverage_is_clipped_to_land_on_the_coast():
    # Biarritz lighthouse: the Atlantic to the west
    cells = _cells([("coast", 43.4937, -1.5577, None, 5_000)])
    _, terr, polys = _polygons(cells)
    assert shapely.area(shapely.difference(polys[0], terr)) < 1.0
    assert shapely.area(polys[0]) < 0.75 * np.pi * 5_000**2  # the sea is cut off
    table = coverage.coverage_table(cells, "voronoi", RES, AREA)
    _assert_weights_sum_to_one(table)


def test_cells_stay_in_the_departements_that_hold_sites():
    from mobiterra import geo

    deps = geo.departements().set_index("departement_code").geometry
    # Maurs (Cantal) is ~3 km from Aveyron and Lot; Decazeville is in Aveyron
    maurs = ("maurs", 44.7103, 2.1978, None, 10_000)
    frame, _, alone = _polygons(_cells([maurs]))
    cantal = frame.geoms_to_m(np.array([deps["15"]]))[0]
    assert shapely.area(shapely.difference(alone[0], cantal)) < 1e3  # m², boundary noise
    # with a site in Aveyron, Aveyron is part of the network's territory
    frame, _, both = _polygons(_cells([maurs, ("decazeville", 44.56, 2.25, None, 10_000)]))
    aveyron = frame.geoms_to_m(np.array([deps["12"]]))[0]
    assert shapely.area(shapely.intersection(both[0], aveyron)) > 1e6


def test_cells_outside_france_use_the_buffered_hull_of_their_sites():
    # Brussels: not French land; the territory is the sites' hull + 10 km
    params = CoverageParams()  # population weights: none here -> area weights
    cells = _cells(
        [
            ("be-1", 50.85, 4.35, None, 3_000),
            ("be-2", 50.86, 4.40, 0.0, None),
            ("be-3", 50.86, 4.40, 180.0, None),
        ]
    )
    frame, terr, polys = _polygons(cells, params)
    assert not shapely.is_empty(polys).any()
    x, y = frame.xy(cells[C.LON].to_numpy(float), cells[C.LAT].to_numpy(float))
    hull = shapely.convex_hull(shapely.multipoints(np.column_stack([x, y])))
    assert shapely.area(shapely.difference(terr, shapely.buffer(hull, 10_001))) < 1.0
    table = coverage.coverage_table(cells, "voronoi", RES, params)
    _assert_weights_sum_to_one(table)
    # area weights: fully covered hexagons weigh the same within a cell
    be1 = table.loc[table[C.CELL_ID] == "be-1", C.WEIGHT]
    assert be1.max() == pytest.approx(be1.quantile(0.75), rel=0.02)


def test_population_weights_follow_the_reference_population():
    from mobiterra import geo

    # western Paris, astride the Boulogne-Billancourt border (Paris 16e / Hauts-de-Seine)
    cells = _cells([("paris-w", 48.8470, 2.2560, None, 1_500)])
    by_area = coverage.coverage_table(cells, "voronoi", RES, AREA).set_index(C.H3_ID)
    by_pop = coverage.coverage_table(cells, "voronoi", RES, CoverageParams()).set_index(C.H3_ID)
    _assert_weights_sum_to_one(by_pop.reset_index())
    people = geo.population_grid(RES, ["75", "92"]).groupby("h3_id")["population"].sum()
    common = by_pop.index.intersection(by_area.index).intersection(people.index[people > 0])
    assert len(common) >= 5
    hex_area = np.array([h3.cell_area(h3.int_to_str(int(i)), unit="m^2") for i in common])
    ratio = by_pop.loc[common, C.WEIGHT] / (
        by_area.loc[common, C.WEIGHT] * people.loc[common].to_numpy() / hex_area
    )
    assert ratio.max() / ratio.min() == pytest.approx(1.0, abs=0.01)
    assert people.loc[common].nunique() > 1  # two communes: the weights really differ


def test_sites_appearing_later_split_their_neighbour_into_validity_pieces():
    lat, lon = CANTAL
    cells = _cells(
        [
            ("A", lat, lon, None, 10_000, None, None),
            ("B", lat, lon + 0.05, None, 10_000, date(2020, 3, 15), None),
            ("C", lat + 0.5, lon, None, 10_000, date(2019, 1, 1), date(2019, 12, 31)),
        ]
    )
    table = coverage.coverage_table(cells, "voronoi", RES, AREA)
    _assert_weights_sum_to_one(table)
    spans = table.groupby(C.CELL_ID)[[C.VALID_FROM, C.VALID_TO]].apply(
        lambda g: sorted(set(zip(g[C.VALID_FROM], g[C.VALID_TO], strict=True)), key=str)
    )
    # A alone (C is far: its arrival and departure do not change A's polygon) until B
    assert spans["A"] == [(None, date(2020, 3, 14)), (date(2020, 3, 15), None)]
    assert spans["B"] == [(date(2020, 3, 15), None)]
    assert spans["C"] == [(date(2019, 1, 1), date(2019, 12, 31))]
    a = table[table[C.CELL_ID] == "A"]
    assert (a[C.VALID_TO].notna()).sum() > (a[C.VALID_FROM].notna()).sum()  # A shrank


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sites=st.lists(
        st.tuples(
            st.floats(0, 0.2),  # lat offset
            st.floats(0, 0.3),  # lon offset
            st.sampled_from([(), (0.0, 120.0, 240.0), (45.0, 225.0), (10.0,)]),
            st.one_of(st.none(), st.floats(300, 12_000)),
        ),
        min_size=1,
        max_size=8,
    ),
    abroad=st.booleans(),
    weights=st.sampled_from(["area", "population"]),
)
def test_weights_sum_to_one_per_cell(sites, abroad, weights):
    base = (50.9, 4.2) if abroad else (45.2, 3.0)  # Flanders or Haute-Loire
    rows = []
    for i, (dlat, dlon, azimuths, rng) in enumerate(sites):
        for a in azimuths or (None,):
            rows.append((f"c{i}-{a}", base[0] + dlat, base[1] + dlon, a, rng))
    cells = _cells(rows)
    table = coverage.coverage_table(cells, "voronoi", RES, CoverageParams(weights=weights))
    _assert_weights_sum_to_one(table)
    assert set(table[C.CELL_ID]) == set(cells[C.CELL_ID])


def test_point_strategy_is_the_site_hexagon_and_unknown_strategies_fail():
    lat, lon = CANTAL
    cells = _cells([("A", lat, lon, None, 1_000), ("B", lat, lon + 0.05, 90.0, None)])
    table = coverage.coverage_table(cells, "point", RES)
    assert table[C.WEIGHT].tolist() == [1.0, 1.0]
    assert table[C.H3_ID].iloc[0] == h3.str_to_int(h3.latlng_to_cell(lat, lon, RES))
    with pytest.raises(ValueError, match="unknown coverage strategy 'disc'"):
        coverage.coverage_table(cells, "disc", RES)


# --- usual residence with fractional weights -------------------------------------------


def _coverage_df(spark, rows):
    return spark.createDataFrame(rows, schemas.COVERAGE)


def test_home_hexagon_is_drawn_by_weight_one_per_user(spark):
    hexes = [int(h) for h in _centres_ring()]
    weights = [0.1, 0.2, 0.3, 0.4]
    rows = [("c", None, None, h, w) for h, w in zip(hexes, weights, strict=True)]
    cov_df = _coverage_df(spark, rows)
    n_users = 1_000
    events = [
        (f"u{u:04d}", datetime(2020, 3, d, 23, 0), "c")
        for u in range(n_users)
        for d in (2, 3, 4, 5)
    ]
    events_df = spark.createDataFrame(events, schemas.ACCEPTED_EVENTS)
    homes_df = residence.usual_residence(
        events_df, cov_df, ResidenceParams(), "Europe/Paris", date(2020, 3, 1), date(2020, 3, 31)
    )
    homes = homes_df.toPandas()
    assert len(homes) == n_users and homes[C.USER_KEY].is_unique  # one home each
    assert (homes[C.NIGHTS] == 4).all()
    counts = homes[C.HOME_H3].value_counts().reindex(hexes).fillna(0).to_numpy()
    expected = n_users * np.array(weights)
    sd = np.sqrt(expected * (1 - np.array(weights)))
    assert (np.abs(counts - expected) < 4.5 * sd).all(), counts
    # the draw depends on the user only, not on partitioning: reshuffled input, same homes
    again = residence.usual_residence(
        events_df.repartition(3),
        cov_df,
        ResidenceParams(),
        "Europe/Paris",
        date(2020, 3, 1),
        date(2020, 3, 31),
    ).toPandas()
    first = homes.set_index(C.USER_KEY)[C.HOME_H3].sort_index()
    assert again.set_index(C.USER_KEY)[C.HOME_H3].sort_index().equals(first)


def test_home_place_is_chosen_on_whole_cells_before_the_draw(spark):
    hexes = [int(h) for h in _centres_ring()]
    # cell "big" spreads over 3 hexagons (its main one weighs 0.5), "small" is one hexagon
    rows = [("big", None, None, hexes[0], 0.5), ("big", None, None, hexes[1], 0.3)]
    rows += [("big", None, None, hexes[2], 0.2), ("small", None, None, hexes[3], 1.0)]
    cov_df = _coverage_df(spark, rows)
    events = [("u1", datetime(2020, 3, d, 23, 0), "big") for d in range(1, 8)]
    events += [("u1", datetime(2020, 3, d, 23, 0), "small") for d in range(10, 15)]
    events_df = spark.createDataFrame(events, schemas.ACCEPTED_EVENTS)
    homes = residence.usual_residence(
        events_df, cov_df, ResidenceParams(), "Europe/Paris", date(2020, 3, 1), date(2020, 3, 31)
    ).collect()
    # 7 nights on "big" beat 5 on "small", although no single hexagon of "big" weighs 1
    assert len(homes) == 1
    assert homes[0][C.HOME_H3] in hexes[:3] and homes[0][C.NIGHTS] == 7


def _centres_ring() -> list[int]:
    centre = h3.latlng_to_cell(*CANTAL, RES)
    return sorted(h3.str_to_int(c) for c in h3.grid_disk(centre, 1))[:4]
