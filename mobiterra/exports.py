"""Published tables as files a planner opens: CSV (spreadsheet), GeoJSON and GeoPackage (QGIS).

Each table keeps its published rows and columns; the exports only add places: H3 cells as
hexagon polygons (``h3.cell_to_boundary``), flows as lines between cell centres, territories
of the diagnostics table as their INSEE/IGN polygons. Nothing is recomputed, so a suppressed
value stays absent. Coordinates are WGS84 (EPSG:4326).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyogrio
import shapely

from mobiterra import columns as C
from mobiterra.report.readme import readme_text

CRS = "EPSG:4326"
# ~10 cm: enough for hexagons and outlines, keeps GeoJSON files small.
GEOJSON_PRECISION = 6
# Period whose rows the GeoJSON files leave out (documented in exports/README.md).
GEOJSON_LEFT_OUT_PERIOD = "hour"
# GDAL's Arrow write path: about twice as fast on the hourly tables.
USE_ARROW = True
# Spreadsheet programs read accents (Nièvre) correctly from UTF-8 with a byte-order mark.
UTF8_BOM = b"\xef\xbb\xbf"


def h3_polygons(cells: pd.Series) -> np.ndarray:
    """Hexagons of H3 cells (hex strings), lon/lat; each distinct cell computed once (an
    hourly table repeats its cells)."""
    unique, inverse = np.unique(np.asarray(cells, dtype=object), return_inverse=True)
    polys = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in unique]
    return np.asarray(polys, dtype=object)[inverse] if len(polys) else np.empty(0, object)


def cell_centres(cells: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of H3 cell centres, 6 decimals; each distinct cell computed once."""
    unique, inverse = np.unique(np.asarray(cells, dtype=object), return_inverse=True)
    latlng = np.array([h3.cell_to_latlng(c) for c in unique], float).reshape(-1, 2)[inverse]
    return latlng[:, 0].round(6), latlng[:, 1].round(6)


def flow_lines(
    olon: np.ndarray, olat: np.ndarray, dlon: np.ndarray, dlat: np.ndarray
) -> list[shapely.LineString | None]:
    """Straight lines origin -> destination; None when both ends are the same place (a
    zero-length line is invalid in GIS tools)."""
    return [
        None if (a, b) == (c, d) else shapely.LineString([(a, b), (c, d)])
        for a, b, c, d in zip(olon, olat, dlon, dlat, strict=True)
    ]


def with_places(df: pd.DataFrame) -> pd.DataFrame:
    """Centre coordinates beside the H3 columns (for spreadsheets and maps)."""
    out = df.copy()
    if C.H3_CELL in out:
        out["lat"], out["lon"] = cell_centres(out[C.H3_CELL])
    for end in ("origin", "destination"):
        if f"{end}_cell" in out:
            out[f"{end}_lat"], out[f"{end}_lon"] = cell_centres(out[f"{end}_cell"])
    return out


def h3_geodataframe(df: pd.DataFrame) -> gpd.GeoDataFrame:
    """An H3 table with its geometry: hexagons, or lines for origin/destination tables."""
    placed = with_places(df)
    if C.H3_CELL in placed:
        geometry = h3_polygons(placed[C.H3_CELL])
    else:
        geometry = flow_lines(
            placed["origin_lon"],
            placed["origin_lat"],
            placed["destination_lon"],
            placed["destination_lat"],
        )
    return gpd.GeoDataFrame(placed, geometry=geometry, crs=CRS)


def diagnostics_geodataframe(df: pd.DataFrame) -> gpd.GeoDataFrame:
    """Diagnostics rows with the polygon of their territory (département, EPCI, commune) or
    the line between two départements (flows); classes have no geometry."""
    from mobiterra.geo import communes, departements

    geom = pd.Series([None] * len(df), index=df.index, dtype=object)
    territory = df["kind"] == "territory"
    deps = departements().set_index("departement_code").geometry
    is_dep = territory & (df["unit"] == "departement")
    geom[is_dep] = df.loc[is_dep, "code"].map(deps)
    wanted_communes = territory & df["unit"].isin(["commune", "epci"])
    if wanted_communes.any():
        com = communes(arrondissements=True)
        is_com = territory & (df["unit"] == "commune")
        geom[is_com] = df.loc[is_com, "code"].map(com.set_index("commune_code").geometry)
        is_epci = territory & (df["unit"] == "epci")
        if is_epci.any():
            codes = set(df.loc[is_epci, "code"])
            epci = com[com["epci_code"].isin(codes)].dissolve(by="epci_code").geometry
            geom[is_epci] = df.loc[is_epci, "code"].map(epci)
    is_flow = (df["kind"] == "flow") & (df["unit"] == "departement")
    if is_flow.any():
        pts = deps.representative_point()
        o = df.loc[is_flow, "origin_code"].map(pts)
        d = df.loc[is_flow, "destination_code"].map(pts)
        geom[is_flow] = [
            None if a is None or b is None or a.equals(b) else shapely.LineString([a, b])
            for a, b in zip(o, d, strict=True)
        ]
    return gpd.GeoDataFrame(df, geometry=geom.tolist(), crs=CRS)


def departement_geodataframe(df: pd.DataFrame) -> gpd.GeoDataFrame:
    """Rows keyed by ``departement_code`` (the expansion table) with the département outline."""
    from mobiterra.geo import departements

    outlines = departements(metropolitan=False).set_index("departement_code").geometry
    return gpd.GeoDataFrame(df, geometry=df["departement_code"].map(outlines).tolist(), crs=CRS)


def departement_flows_geodataframe(df: pd.DataFrame) -> gpd.GeoDataFrame:
    """od_departements rows: a straight line between the two départements (their
    representative points), the département's outline for trips inside one."""
    from mobiterra.geo import departements

    deps = departements(metropolitan=False).set_index("departement_code").geometry
    pts = deps.representative_point()
    o, d = df[C.ORIGIN_CODE], df[C.DESTINATION_CODE]
    geom = [
        deps.get(a) if a == b else _line(pts.get(a), pts.get(b)) for a, b in zip(o, d, strict=True)
    ]
    return gpd.GeoDataFrame(df, geometry=geom, crs=CRS)


def _line(a, b):
    return None if a is None or b is None else shapely.LineString([a, b])


def to_geodataframe(name: str, df: pd.DataFrame) -> gpd.GeoDataFrame:
    if name == "diagnostics":
        return diagnostics_geodataframe(df)
    if name == "od_departements":
        return departement_flows_geodataframe(df)
    if C.H3_CELL not in df and C.ORIGIN_CELL not in df and "departement_code" in df:
        return departement_geodataframe(df)
    return h3_geodataframe(df)


def layers(name: str, gdf: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """GeoPackage layers: one per H3 resolution (hexagons of several sizes overlap), or one
    per diagnostics unit and kind (flows apart from territories)."""
    if C.RESOLUTION in gdf:
        return {f"{name}_r{r}": part for r, part in gdf.groupby(C.RESOLUTION, sort=True)}
    if name == "od_departements":  # one geometry type per layer
        within = (gdf[C.ORIGIN_CODE] == gdf[C.DESTINATION_CODE]).to_numpy()
        parts = {f"{name}_within": gdf[within], f"{name}_between": gdf[~within]}
        return {layer: part for layer, part in parts.items() if len(part)}
    if "unit" not in gdf:
        return {name: gdf} if len(gdf) else {}
    keyed = gdf.assign(_layer=gdf["unit"] + np.where(gdf["kind"] == "flow", "_flows", ""))
    return {
        f"{name}_{key}": part.drop(columns="_layer")
        for key, part in keyed.groupby("_layer", sort=True)
    }


def _plain_times(df: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO 8601 UTC text ("2020-04-01T22:00:00Z"): spreadsheets and GeoJSON
    readers then agree on the instant."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = iso_utc(out[col])
    return out


def iso_utc(ts: pd.Series) -> pd.Series:
    """ "2020-04-01T22:00:00Z" per timestamp (naive ones are UTC), None for NaT. Each
    distinct instant is formatted once: an hourly table repeats ~720 of them."""
    ts = ts.dt.tz_convert("UTC") if ts.dt.tz is not None else ts.dt.tz_localize("UTC")
    codes, uniques = pd.factorize(ts)
    text = np.append(np.asarray(uniques.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object), None)
    return pd.Series(text[codes], index=ts.index, dtype=object)  # code -1 (NaT) -> None


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """A table as CSV (Arrow's writer: ~6x pandas' on the hourly tables), UTF-8 with a
    byte-order mark; text values quoted, missing values empty, instants as ISO text."""
    table = pa.Table.from_pandas(_plain_times(df), preserve_index=False)
    with open(path, "wb") as fh:
        fh.write(UTF8_BOM)
        pa_csv.write_csv(table, fh, pa_csv.WriteOptions(quoting_style="needed"))


def json_values(values: pd.Series) -> np.ndarray:
    """Each value as JSON text (missing values ``null``), each distinct value encoded once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    text = [json.dumps(_plain(v), ensure_ascii=False) for v in uniques]
    return np.asarray([*text, "null"], dtype=object)[codes]  # code -1 (missing) -> null


def _plain(value):
    if isinstance(value, np.integer | np.bool_ | np.floating):
        return value.item()
    return value if isinstance(value, int | float | str | bool) else str(value)


def geometry_json(geometries) -> np.ndarray:
    """RFC 7946 geometry text per row (exterior rings counterclockwise, coordinates to
    GEOJSON_PRECISION decimals), ``null`` for none. A geometry object repeated over rows
    (an hourly table's hexagons) is encoded once."""
    geoms = np.asarray(geometries, dtype=object)
    ids = np.fromiter((id(g) for g in geoms), dtype=np.int64, count=len(geoms))
    _, first_row, codes = np.unique(ids, return_index=True, return_inverse=True)
    unique = geoms[first_row]
    present = np.array([g is not None for g in unique], dtype=bool)
    text = np.full(len(unique), "null", dtype=object)
    if present.any():
        shapes = shapely.transform(
            np.asarray(list(unique[present]), dtype=object),
            lambda xy: np.round(xy, GEOJSON_PRECISION),
        )
        text[present] = shapely.to_geojson(shapely.orient_polygons(shapes))
    return text[codes]


def write_geojson(name: str, gdf: gpd.GeoDataFrame, path: Path) -> None:
    """A GeoDataFrame (WGS84) as an RFC 7946 FeatureCollection, one feature a line.

    Written here rather than by GDAL: each distinct value and geometry is encoded once,
    which on an hourly table's daily rows is ~4x faster (3.6 s -> ~0.8 s for 236,000
    hexagon rows)."""
    attributes = _plain_times(pd.DataFrame(gdf.drop(columns=gdf.geometry.name)))
    columns = [
        json.dumps(str(col), ensure_ascii=False) + ": " + json_values(attributes[col])
        for col in attributes.columns
    ]
    geometry = geometry_json(gdf.geometry.array)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{\n"type": "FeatureCollection",\n')
        fh.write(f'"name": {json.dumps(name, ensure_ascii=False)},\n"features": [\n')
        fh.write(
            ",\n".join(
                '{ "type": "Feature", "properties": { '
                + ", ".join(props)
                + ' }, "geometry": '
                + geom
                + " }"
                for *props, geom in zip(*columns, geometry, strict=True)
            )
        )
        fh.write("\n]\n}\n")


def export_table(name: str, df: pd.DataFrame, dest: Path) -> list[Path]:
    """Write ``name``.csv, ``name``.geojson and ``name``.gpkg into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    gdf = to_geodataframe(name, df)
    csv = dest / f"{name}.csv"
    write_csv(pd.DataFrame(gdf.drop(columns="geometry")), csv)
    geojson = dest / f"{name}.geojson"
    if C.PERIOD in gdf:
        # hourly rows repeat each hexagon 24 times a day: a GeoJSON of them is too big to
        # open; they stay in the CSV and the GeoPackage
        gdf_light = gdf[gdf[C.PERIOD] != GEOJSON_LEFT_OUT_PERIOD]
    else:
        gdf_light = gdf
    write_geojson(name, gdf_light, geojson)
    gpkg = dest / f"{name}.gpkg"
    gpkg.unlink(missing_ok=True)
    parts = layers(name, gdf)
    if not parts:  # nothing published: an empty layer, so the file still opens
        kind = "LineString" if C.ORIGIN_CELL in gdf else "Polygon"
        pyogrio.write_dataframe(
            gdf, gpkg, layer=name, driver="GPKG", geometry_type=kind, use_arrow=USE_ARROW
        )
    views = []
    for layer, part in parts.items():
        if part.geometry.isna().all():
            # attribute table (density classes, whole-territory rows): no geometry column
            pyogrio.write_dataframe(
                pd.DataFrame(part.drop(columns="geometry")), gpkg, layer=layer, driver="GPKG"
            )
        elif C.PERIOD in part and (keys := place_keys(part)) and part.duplicated(keys).any():
            views.append(write_places_and_values(part, gpkg, layer, keys))
        else:
            pyogrio.write_dataframe(part, gpkg, layer=layer, driver="GPKG", use_arrow=USE_ARROW)
    if views:
        register_views(gpkg, views)
    return [csv, geojson, gpkg]


# A layer of periods repeats each hexagon or flow line once per period (~720 times in an
# hourly month): it is stored as a table of its places (geometry, once each), a table of
# its values (no geometry) and the layer itself as a spatial view joining them, which GDAL
# and QGIS open as any layer. At 30 M events (1.61 M rows) present_population.gpkg:
# 483 -> 90 MiB, and export_table 9.0 -> 5.2 s.
PLACES_SUFFIX = "_places"
VALUES_SUFFIX = "_values"
PLACE_COLUMNS = ("lat", "lon", "origin_lat", "origin_lon", "destination_lat", "destination_lon")


def place_keys(gdf: gpd.GeoDataFrame) -> list[str]:
    """The columns a row's geometry is a function of (h3_geodataframe)."""
    if C.H3_CELL in gdf:
        return [C.H3_CELL]
    if C.ORIGIN_CELL in gdf and C.DESTINATION_CELL in gdf:
        return [C.ORIGIN_CELL, C.DESTINATION_CELL]
    return []


@dataclass(frozen=True)
class View:
    """A layer stored as places and values: what its view selects."""

    layer: str
    geometry_type: str  # POLYGON or LINESTRING
    keys: list[str]  # join columns
    columns: list[str]  # the layer's columns, in order (geometry aside)
    from_places: list[str]  # those read from the places table (besides the keys)


def write_places_and_values(
    part: gpd.GeoDataFrame, gpkg: Path, layer: str, keys: list[str]
) -> View:
    """Write ``layer``_places and ``layer``_values into ``gpkg``."""
    on_place = [*keys, *(c for c in PLACE_COLUMNS if c in part)]
    places = part.drop_duplicates(keys)[[*on_place, part.geometry.name]]
    pyogrio.write_dataframe(
        places, gpkg, layer=layer + PLACES_SUFFIX, driver="GPKG", use_arrow=USE_ARROW
    )
    values = pd.DataFrame(part.drop(columns=[part.geometry.name, *on_place[len(keys) :]]))
    pyogrio.write_dataframe(
        values, gpkg, layer=layer + VALUES_SUFFIX, driver="GPKG", use_arrow=USE_ARROW
    )
    kind = places.geometry.dropna().geom_type.iloc[0].upper()
    columns = [c for c in part.columns if c != part.geometry.name]
    return View(layer, kind, keys, columns, on_place[len(keys) :])


def register_views(gpkg: Path, views: list[View]) -> None:
    """Each layer as a view of its values joined to its places, registered as a feature
    layer (gpkg_contents, gpkg_geometry_columns) in WGS84."""
    con = sqlite3.connect(gpkg)
    try:
        with con:
            for view in views:
                select = ", ".join(
                    f'{"p" if c in view.from_places else "v"}."{c}"' for c in view.columns
                )
                join = " AND ".join(f'p."{k}" = v."{k}"' for k in view.keys)
                con.execute(
                    f'CREATE VIEW "{view.layer}" AS SELECT v.fid AS fid, {select}, '
                    f'p.geom AS geom FROM "{view.layer}{VALUES_SUFFIX}" AS v '
                    f'LEFT JOIN "{view.layer}{PLACES_SUFFIX}" AS p ON {join}'
                )
                con.execute(
                    "INSERT INTO gpkg_contents (table_name, identifier, data_type, srs_id) "
                    "VALUES (?, ?, 'features', 4326)",
                    (view.layer, view.layer),
                )
                con.execute(
                    "INSERT INTO gpkg_geometry_columns "
                    "(table_name, column_name, geometry_type_name, srs_id, z, m) "
                    "VALUES (?, 'geom', ?, 4326, 0, 0)",
                    (view.layer, view.geometry_type),
                )
    finally:
        con.close()


def export_month(
    tables: dict[str, pd.DataFrame], dest: Path, k: int, *, lang: str = "fr", month: str = ""
) -> list[Path]:
    """Every published table as CSV, GeoJSON and GeoPackage, and ``README.md``.

    Returns the files written (README first)."""
    files: list[Path] = []
    for name, df in tables.items():
        files += export_table(name, df, dest)
    readme = dest / "README.md"
    readme.write_text(readme_text(tables, k, lang, month), encoding="utf-8")
    return [readme, *files]
