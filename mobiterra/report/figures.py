"""The month's maps: what is drawn, at which resolution, with which caption.

mobiterra.maps draws; this module chooses the data (published tables only), the frame and
the words, and writes ``maps/<name>.png`` and ``.svg``.
"""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import pandas as pd

from mobiterra import columns as C
from mobiterra import maps
from mobiterra.report import flow_figures, inputs
from mobiterra.report.context import Context, MapFile, finish, hex_note
from mobiterra.report.labels import number

# A département map uses the finest resolution still covering this share of the residents
# that its coarsest published resolution covers (finer = more detail, fewer cells published).
DEPARTEMENT_COVERAGE = 0.75
# Hexagons whose change is labelled on the national map (largest absolute changes).
LABELLED_CELLS = 3
# Hexagons this fine (<= 36 km²) lie mostly in the département of their centre.
DETAIL_RESOLUTION = 6
# Largest communes named on a département map (fewer when they would overlap).
COMMUNE_LABELS = 8


def change_cells(data: inputs.MonthOutputs) -> pd.DataFrame | None:
    residents = data.tables.get("residents")
    if residents is None or data.baseline_residents is None:
        return None
    return inputs.residents_change(residents, data.baseline_residents)


def with_departement(gdf: gpd.GeoDataFrame, ctx: Context) -> gpd.GeoDataFrame:
    """The département holding most of each polygon's INSEE population (communes by their
    representative point), else the one holding its centroid. Lambert-93 inputs.

    A coarse hexagon straddles départements: its centre alone would put the Paris hexagon
    in the Hauts-de-Seine."""
    flat = gpd.GeoDataFrame(geometry=gdf.geometry.values, crs=gdf.crs)
    hit = gpd.sjoin(ctx.commune_points, flat, how="inner", predicate="within")
    by_pop = (
        hit.groupby(["index_right", "departement_code"])["population"]
        .sum()
        .sort_values()
        .groupby(level=0)
        .tail(1)
        .reset_index(level=1)["departement_code"]
    )
    pts = gpd.GeoDataFrame(geometry=flat.geometry.centroid, crs=gdf.crs)
    by_centre = gpd.sjoin(
        pts, ctx.departements[["departement_code", "geometry"]], how="left", predicate="within"
    )
    by_centre = by_centre[~by_centre.index.duplicated()]["departement_code"]
    code = pd.Series(by_pop).reindex(flat.index).fillna(by_centre)
    return gdf.assign(departement_code=code.to_numpy())


def present_departements(ctx: Context, cells: gpd.GeoDataFrame | None) -> list[str]:
    """Départements in the data, most residents first: those with published residents in
    the diagnostics table, else those where published hexagons of resolution >=
    DETAIL_RESOLUTION lie (coarser hexagons straddle départements)."""
    diagnostics = ctx.data.tables.get("diagnostics")
    if diagnostics is not None:
        rows = diagnostics[
            (diagnostics["kind"] == "territory")
            & (diagnostics["unit"] == "departement")
            & diagnostics["residents"].notna()
        ]
        if len(rows):
            return rows.sort_values("residents", ascending=False)["code"].tolist()
    if cells is None:
        return []
    fine = cells[cells[C.RESOLUTION] >= DETAIL_RESOLUTION]
    weight = fine.groupby(["departement_code", C.RESOLUTION])[_weight(cells)].sum()
    return weight.groupby(level=0).max().sort_values(ascending=False).index.tolist()


def change_label(ctx: Context, change: float, pct: float) -> str:
    return (
        f"{number(change, ctx.lang, signed=True)} "
        f"({number(pct, ctx.lang, signed=True, digits=1)} %)"
    )


def _plot_cells(ctx: Context, cells: gpd.GeoDataFrame, ax) -> None:
    """Change in % when there is a baseline, else the residents count."""
    if "residents_change_pct" in cells:
        maps.plot_change(
            cells, "residents_change_pct", ax=ax, legend_title=ctx.t("legend_change") + " (%)"
        )
    else:
        maps.plot_counts(cells, C.RESIDENTS, ax=ax, legend_title=ctx.t("legend_residents"))


def _map_names(ctx: Context, cells: pd.DataFrame) -> tuple[str, str, str]:
    """(file stem prefix, national title, département title template key)."""
    if "residents_change_pct" in cells:
        return (
            "residents_change",
            ctx.t("map_change", month=ctx.month, baseline=ctx.baseline),
            ("map_change_dep"),
        )
    return "residents", ctx.t("map_residents", month=ctx.month), "map_residents_dep"


def national_map(ctx: Context, published: pd.DataFrame, maps_dir: Path) -> MapFile:
    """Hexagons of the coarsest published resolution over metropolitan France: the change
    of residents (``published`` from inputs.residents_change) or their count."""
    all_cells = with_departement(maps.hexagons(published), ctx)
    res = int(published[C.RESOLUTION].min())
    cells = all_cells[all_cells[C.RESOLUTION] == res]
    ax = maps.new_map((9.5, 8.5))
    bounds = ctx.departements.total_bounds
    maps.plot_outlines(
        ctx.outlines(bounds),
        ax=ax,
        highlight=present_departements(ctx, all_cells),
        label="departement_name",
    )
    _plot_cells(ctx, cells, ax)
    maps.set_extent(ax, bounds, pad=0.02)
    if "residents_change" in cells:
        top = cells.loc[cells["residents_change"].abs().sort_values(ascending=False).index]
        for _, row in top.head(LABELLED_CELLS).iterrows():
            pt = row.geometry.centroid
            ax.annotate(
                change_label(ctx, row["residents_change"], row["residents_change_pct"]),
                (pt.x, pt.y),
                xytext=(-70, -14),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=8,
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#888"},
                arrowprops={"arrowstyle": "-", "color": "#555555", "linewidth": 0.7},
                zorder=9,
            )
    stem, title, _ = _map_names(ctx, cells)
    notes = [hex_note(ctx, res, "residents_change" in cells), ctx.t("residents_def")]
    return finish(ctx, ax, title, notes, maps_dir / f"{stem}_france")


def _weight(cells: pd.DataFrame) -> str:
    """Residents of the baseline month when there is one (where people lived), else now."""
    return "residents_baseline" if "residents_baseline" in cells else C.RESIDENTS


def departement_resolution(cells: pd.DataFrame) -> int:
    """Finest resolution covering DEPARTEMENT_COVERAGE of the best-covered resolution."""
    cover = cells.groupby(C.RESOLUTION)[_weight(cells)].sum()
    good = cover[cover >= DEPARTEMENT_COVERAGE * cover.max()]
    return int(good.index.max())


def departement_map(
    ctx: Context, cells: gpd.GeoDataFrame, code: str, communes: gpd.GeoDataFrame, maps_dir: Path
) -> MapFile | None:
    """Hexagons of one département at the finest well-covered resolution, with communes.

    cells: hexagons (maps.hexagons) with their ``departement_code`` (with_departement)."""
    cells = cells[cells["departement_code"] == code]
    if cells.empty:
        return None
    res = departement_resolution(cells)
    cells = cells[cells[C.RESOLUTION] == res]
    dep = ctx.departements[ctx.departements["departement_code"] == code]
    name = dep["departement_name"].iloc[0]
    bounds = pd.concat([dep.geometry, cells.geometry]).total_bounds
    ax = maps.new_map((9.0, 8.0))
    maps.plot_outlines(ctx.outlines(bounds), ax=ax, highlight=[code])
    com = communes[communes["departement_code"] == code]
    width = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    # commune outlines over the hexagons: the places a planner knows
    com.boundary.simplify(width / 2000).plot(
        ax=ax, color="#555555", linewidth=0.2, alpha=0.5, zorder=4
    )
    _plot_cells(ctx, cells, ax)
    maps.set_extent(ax, bounds, pad=0.05)
    big = com.nlargest(COMMUNE_LABELS, "population")
    pts = big.geometry.representative_point()
    maps.label_points(ax, pts.x, pts.y, [short_name(n) for n in big["commune_name"]], fontsize=7.5)
    stem, _, key = _map_names(ctx, cells)
    title = ctx.t(key, name=name, code=code, month=ctx.month, baseline=ctx.baseline)
    notes = [hex_note(ctx, res, "residents_change" in cells), ctx.t("residents_def")]
    return finish(ctx, ax, title, notes, maps_dir / f"{stem}_{code}", "departement")


def _commune_changes(diagnostics: pd.DataFrame | None) -> pd.DataFrame:
    if diagnostics is None:
        return pd.DataFrame(columns=["code", "departement_code"])
    return diagnostics[
        (diagnostics["kind"] == "territory")
        & (diagnostics["unit"] == "commune")
        & diagnostics["residents_change_pct"].notna()
    ]


def departement_communes_map(
    ctx: Context, rows: pd.DataFrame, code: str, communes: gpd.GeoDataFrame, maps_dir: Path
) -> MapFile | None:
    """Communes of one département coloured by their change in residents (diagnostics
    table); communes without a published change stay grey."""
    com = communes[communes["departement_code"] == code]
    published = com.merge(
        rows[["code", "residents_change", "residents_change_pct"]],
        left_on="commune_code",
        right_on="code",
        how="inner",
    )
    if published.empty:
        return None
    dep = ctx.departements[ctx.departements["departement_code"] == code]
    bounds = dep.total_bounds
    width = max(bounds[2] - bounds[0], bounds[3] - bounds[1])
    ax = maps.new_map((9.0, 8.0))
    maps.plot_outlines(ctx.outlines(bounds), ax=ax, highlight=[code])
    # commune outlines over the hexagons: the places a planner knows
    com.boundary.simplify(width / 2000).plot(
        ax=ax, color="#555555", linewidth=0.2, alpha=0.5, zorder=4
    )
    maps.plot_change(
        published, "residents_change_pct", ax=ax, legend_title=ctx.t("legend_change") + " (%)"
    )
    maps.set_extent(ax, bounds, pad=0.05)
    big = published.sort_values("residents_change", key=abs, ascending=False)
    pts = big.geometry.representative_point()
    texts = [
        f"{short_name(n)}\n{number(p, ctx.lang, signed=True, digits=1)} %"
        for n, p in zip(big["commune_name"], big["residents_change_pct"], strict=True)
    ]
    maps.label_points(ax, pts.x, pts.y, texts, fontsize=7)
    title = ctx.t(
        "map_change_dep", name=dep["departement_name"].iloc[0], code=code, month=ctx.month,
        baseline=ctx.baseline,
    )  # fmt: skip
    notes = [ctx.t("communes_note"), ctx.t("residents_def")]
    return finish(ctx, ax, title, notes, maps_dir / f"residents_change_{code}", "departement")


def short_name(commune: str) -> str:
    """Shorten arrondissements: "Paris 17e Arrondissement" -> "17e"; others unchanged."""
    m = re.match(r"^(?:Paris|Lyon|Marseille) (\d+(?:er|e))\s+Arrondissement$", commune)
    return m.group(1) if m else commune


def departements_change_map(
    ctx: Context, diagnostics: pd.DataFrame, maps_dir: Path
) -> MapFile | None:
    """Départements coloured by their change in residents (diagnostics table)."""
    rows = diagnostics[
        (diagnostics["kind"] == "territory")
        & (diagnostics["unit"] == "departement")
        & diagnostics["residents_change_pct"].notna()
    ]
    if rows.empty:
        return None
    deps = ctx.departements.merge(
        rows[["code", "residents_change", "residents_change_pct"]],
        left_on="departement_code",
        right_on="code",
        how="inner",
    )
    bounds = ctx.departements.total_bounds
    ax = maps.new_map((9.5, 8.5))
    maps.plot_outlines(ctx.outlines(bounds), ax=ax)
    deps = deps.assign(geometry=deps.geometry.simplify(500).values)
    maps.plot_change(
        deps, "residents_change_pct", ax=ax, legend_title=ctx.t("legend_change") + " (%)"
    )
    maps.set_extent(ax, bounds, pad=0.02)
    # largest changes named first; a neighbour too close is left to the legend colours
    deps = deps.loc[deps["residents_change"].abs().sort_values(ascending=False).index]
    pts = deps.geometry.representative_point()
    texts = [
        f"{name}\n{change_label(ctx, c, pct)}"
        for name, c, pct in zip(
            deps["departement_name"],
            deps["residents_change"],
            deps["residents_change_pct"],
            strict=True,
        )
    ]
    maps.label_points(ax, pts.x, pts.y, texts, min_distance=(bounds[2] - bounds[0]) / 14)
    title = ctx.t("map_change_deps", month=ctx.month, baseline=ctx.baseline)
    notes = [ctx.t("deps_note"), ctx.t("residents_def")]
    return finish(ctx, ax, title, notes, maps_dir / "residents_change_departements")


def build_maps(
    ctx: Context, maps_dir: Path, departements: list[str] | None
) -> tuple[list[MapFile], list[str]]:
    """Every map of the month; returns the maps and notes on maps that could not be drawn.

    departements: codes given their own map (None = every département with published cells).
    """
    from mobiterra.geo import communes as load_communes

    made: list[MapFile | None] = []
    notes: list[str] = []
    data = ctx.data
    diagnostics = data.tables.get("diagnostics")
    change = change_cells(data)
    if change is None and data.tables.get("residents") is not None:
        change = data.tables["residents"]  # no baseline: residents maps
        notes.append(ctx.t("no_baseline" if data.baseline_month else "no_baseline_month"))
    if change is not None and not change.empty:
        made.append(national_map(ctx, change, maps_dir))
    if diagnostics is not None:
        made.append(departements_change_map(ctx, diagnostics, maps_dir))

    flows, flow_notes = flow_figures.flow_maps(ctx, maps_dir)
    made += flows
    notes += flow_notes

    commune_rows = _commune_changes(diagnostics)
    if change_cells(data) is None and len(commune_rows):
        # no baseline folder beside the month: the diagnostics table's communes show the
        # change in each département instead of hexagons of this month's residents
        wanted = present_departements(ctx, None) if departements is None else departements
        wanted = [d for d in wanted if d in set(commune_rows["departement_code"])]
        com = load_communes(wanted).to_crs(maps.LAMBERT93) if wanted else None
        for code in sorted(wanted):
            made.append(departement_communes_map(ctx, commune_rows, code, com, maps_dir))
        return [m for m in made if m is not None], notes

    if change is not None and not change.empty:
        cells = with_departement(maps.hexagons(change), ctx)
        present = set(cells["departement_code"].dropna())
        wanted = present_departements(ctx, cells) if departements is None else departements
        wanted = [d for d in wanted if d in present]
        if wanted:
            com = load_communes(wanted).to_crs(maps.LAMBERT93)
            for code in sorted(wanted):
                made.append(departement_map(ctx, cells, code, com, maps_dir))
    return [m for m in made if m is not None], notes


def extremes(ctx: Context) -> list[dict]:
    """The hexagons (coarsest published resolution) with the largest loss and gain of
    residents, named by the département of their centre — headline figures."""
    change = change_cells(ctx.data)
    if change is None or change.empty:
        return []
    res = int(change[C.RESOLUTION].min())
    cells = with_departement(maps.hexagons(change[change[C.RESOLUTION] == res]), ctx)
    names = ctx.departements.set_index("departement_code")["departement_name"]
    out = []
    for key, row in (
        ("top_loss", cells.nsmallest(1, "residents_change")),
        ("top_gain", cells.nlargest(1, "residents_change")),
    ):
        if row.empty:
            continue
        r = row.iloc[0]
        if (key == "top_loss") != (r["residents_change"] < 0):
            continue  # no loss (or no gain) at all
        out.append(
            {
                "key": key,
                "change": float(r["residents_change"]),
                "pct": float(r["residents_change_pct"]),
                "place": names.get(r["departement_code"], ""),
                "cell": r[C.H3_CELL],
                "resolution": res,
            }
        )
    return out
