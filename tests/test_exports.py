"""The export writers on hand-made rows: CSV for spreadsheets, GeoJSON (RFC 7946)."""

from __future__ import annotations

import json

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely

from mobiterra import exports

CELL = h3.latlng_to_cell(47.0, 3.5, 7)


def test_csv_has_a_byte_order_mark_quoted_text_empty_missing_values_and_iso_instants(tmp_path):
    df = pd.DataFrame(
        {
            "name": ["Nièvre", "Côte-d'Or, sud", None],
            "users": [20, 35, 41],
            "residents": [12.0, np.nan, 3.5],
            "period_start": pd.to_datetime(
                ["2020-04-01 22:00", None, "2020-04-02 22:00"], utc=True
            ),
        }
    )
    path = tmp_path / "t.csv"
    exports.write_csv(df, path)
    raw = path.read_bytes()
    assert raw.startswith(exports.UTF8_BOM)
    lines = raw[len(exports.UTF8_BOM) :].decode("utf-8").splitlines()
    assert lines[1] == '"Nièvre",20,12,"2020-04-01T22:00:00Z"'
    assert lines[2] == '"Côte-d\'Or, sud",35,,'
    back = pd.read_csv(path, encoding="utf-8-sig")
    assert list(back.columns) == list(df.columns) and len(back) == 3
    assert back["name"].iloc[1] == "Côte-d'Or, sud" and back["residents"].isna().iloc[1]


def test_geojson_is_rfc7946_with_nulls_and_each_repeated_hexagon_the_same(tmp_path):
    hexagon = exports.h3_polygons(pd.Series([CELL, CELL]))
    # a clockwise square (GDAL's RFC7946 mode and ours turn its ring counterclockwise)
    square = shapely.Polygon([(3.0, 47.0), (3.0, 47.1234567), (3.1, 47.1), (3.1, 47.0)])
    gdf = gpd.GeoDataFrame(
        {
            "h3_cell": [CELL, CELL, None, "x"],
            "users": [20, 21, 22, 23],
            "share": [0.5, np.nan, 1.25, 2.0],
            "name": ['a "quoted" Nièvre', None, "b", "c"],
        },
        geometry=[hexagon[0], hexagon[1], None, square],
        crs=exports.CRS,
    )
    path = tmp_path / "t.geojson"
    exports.write_geojson("t", gdf, path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and doc["name"] == "t"
    feats = doc["features"]
    assert [f["properties"]["users"] for f in feats] == [20, 21, 22, 23]
    assert feats[1]["properties"]["share"] is None and feats[1]["properties"]["name"] is None
    assert feats[0]["properties"]["name"] == 'a "quoted" Nièvre'
    assert feats[2]["geometry"] is None
    assert feats[0]["geometry"] == feats[1]["geometry"]
    ring = feats[3]["geometry"]["coordinates"][0]
    assert shapely.is_ccw(shapely.LinearRing(ring))
    assert [3.0, 47.123457] in ring  # 6 decimals
    back = gpd.read_file(path, engine="pyogrio")
    assert len(back) == 4 and back.geometry.isna().tolist() == [False, False, True, False]
    assert back.geometry.iloc[0].equals_exact(hexagon[0], 1e-6)


def test_an_empty_table_writes_an_empty_feature_collection(tmp_path):
    gdf = gpd.GeoDataFrame({"users": pd.Series([], dtype="int64")}, geometry=[], crs=exports.CRS)
    path = tmp_path / "e.geojson"
    exports.write_geojson("e", gdf, path)
    assert json.loads(path.read_text())["features"] == []
