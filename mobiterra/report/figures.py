"""The month's maps: what is drawn, at which resolution, with which caption.

mobiterra.maps draws; this module chooses the data (published tables only), the frame and
the words, and writes ``maps/<name>.png`` and ``.svg``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import h3
import pandas as pd

from mobiterra import columns as C
from mobiterra import maps
from mobiterra.report import inputs
from mobiterra.report.labels import TEXT, month_label, number

# A département map uses the finest resolution still covering this share of the residents
# that its coarsest published resolution covers (finer = more detail, fewer cells published).
DEPARTEMENT_COVERAGE = 0.75
# Flow maps are framed on their arrows, never tighter than this (metres, Lambert-93).
MIN_FRAME_M = 80_000
# Hexagons whose change is labelled on the national map (largest absolute changes).
LABELLED_CELLS = 3
# Hexagons this fine (<= 36 km²) lie mostly in the département of their centre.
DETAIL_RESOLUTION = 6
# Largest communes named on a département map (fewer when they would overlap).
COMMUNE_LABELS = 8


@dataclass
class MapFile:
    name: str  # file stem under maps/
    title: str
    note: str  # what is drawn (resolution, source table)
    caption: str  # note + k and the suppression rule + source, as printed under the map
    files: list[Path]
    scope: str = "france"  # or "departement"


@dataclass
class Context:
    data: inputs.MonthOutputs
    lang: str
    source: str
    max_flows: int
    departements: gpd.GeoDataFrame  # outlines, Lambert-93

    def outlines(self, bounds) -> gpd.GeoDataFrame:
        """Département outlines around ``bounds`` (Lambert-93), simplified to the scale: a
        national map does not need 10 m vertices (and its SVG stays small)."""
        xmin, ymin, xmax, ymax = bounds
        width = max(xmax - xmin, ymax - ymin)
        box = (xmin - width, ymin - width, xmax + width, ymax + width)
        geom = self.departements.geometry.clip_by_rect(*box).simplify(width / 2000)
        out = self.departements.assign(geometry=geom.values)
        return out[~out.geometry.is_empty]

    @functools.cached_property
    def commune_points(self) -> gpd.GeoDataFrame:
        """Communes as points (Lambert-93) with population and département."""
        from mobiterra.geo import communes

        com = communes()
        x, y = maps.to_lambert(com["rep_lon"], com["rep_lat"])
        return gpd.GeoDataFrame(
            com[["commune_code", "departement_code", "population"]],
            geometry=gpd.points_from_xy(x, y),
            crs=maps.LAMBERT93,
        )

    def t(self, key: str, **kw) -> str:
        return TEXT[self.lang][key].format(**kw)

    @property
    def month(self) -> str:
        return month_label(self.data.month, self.lang)

    @property
    def baseline(self) -> str:
        return month_label(self.data.baseline_month, self.lang)

    def caption(self, *notes: str) -> str:
        k = self.data.k
        parts = [*notes, self.t("suppression_rule", k=k), f"Source : {self.source}."]
        if self.lang == "en":
            parts[-1] = f"Source: {self.source}."
        return " ".join(p for p in parts if p)


def _finish(
    ctx: Context, ax, title: str, notes: list[str], stem: Path, scope: str = "france"
) -> MapFile:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    maps.add_scale_bar(ax)
    caption = ctx.caption(*notes)
    maps.add_caption(ax, caption)
    return MapFile(stem.name, title, " ".join(notes), caption, maps.save_map(ax, stem), scope)


def hex_note(ctx: Context, res: int, both_months: bool = True) -> str:
    area = number(h3.average_hexagon_area(res, "km^2"), ctx.lang, digits=0 if res < 7 else 1)
    return ctx.t("hex_note" if both_months else "hex_note_one", res=res, area=area)


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


def present_departements(ctx: Context, cells: gpd.GeoDataFrame) -> list[str]:
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
    return _finish(ctx, ax, title, notes, maps_dir / f"{stem}_france")


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
    com.boundary.simplify(width / 2000).plot(ax=ax, color="#b5b5b5", linewidth=0.25, zorder=2)
    _plot_cells(ctx, cells, ax)
    maps.set_extent(ax, bounds, pad=0.05)
    big = com.nlargest(COMMUNE_LABELS, "population")
    pts = big.geometry.representative_point()
    maps.label_points(ax, pts.x, pts.y, [short_name(n) for n in big["commune_name"]], fontsize=7.5)
    stem, _, key = _map_names(ctx, cells)
    title = ctx.t(key, name=name, code=code, month=ctx.month, baseline=ctx.baseline)
    notes = [hex_note(ctx, res, "residents_change" in cells), ctx.t("residents_def")]
    return _finish(ctx, ax, title, notes, maps_dir / f"{stem}_{code}", "departement")


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
    maps.label_points(ax, pts.x, pts.y, texts, min_distance=0, fontsize=7.5)
    title = ctx.t("map_change_deps", month=ctx.month, baseline=ctx.baseline)
    notes = [ctx.t("deps_note"), ctx.t("residents_def")]
    return _finish(ctx, ax, title, notes, maps_dir / "residents_change_departements")


def departement_flows(ctx: Context, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """Published residence-shift flows between départements, with their centres."""
    rows = diagnostics[
        (diagnostics["kind"] == "flow")
        & (diagnostics["unit"] == "departement")
        & diagnostics["users"].notna()
        & (diagnostics["origin_code"] != diagnostics["destination_code"])
    ]
    pts = ctx.departements.set_index("departement_code").geometry.representative_point()
    pts = gpd.GeoSeries(pts, crs=maps.LAMBERT93).to_crs("EPSG:4326")
    rows = rows[rows["origin_code"].isin(pts.index) & rows["destination_code"].isin(pts.index)]
    o, d = pts.loc[rows["origin_code"]], pts.loc[rows["destination_code"]]
    return rows.assign(
        origin_lon=o.x.to_numpy(),
        origin_lat=o.y.to_numpy(),
        destination_lon=d.x.to_numpy(),
        destination_lat=d.y.to_numpy(),
    )


def flow_map(
    ctx: Context, flows: pd.DataFrame, value: str, title: str, note: str, legend: str, stem: Path
) -> MapFile | None:
    """Curved arrows of the largest flows, framed on them, over the département outlines
    (the départements at the ends named, for flows between départements)."""
    if flows.empty:
        return None
    top = flows.nlargest(ctx.max_flows, value)
    bounds = maps.frame(maps.flow_bounds(top), MIN_FRAME_M, ratio=1.0)
    ax = maps.new_map((9.5, 8.5))
    ends = []
    if "origin_code" in top:
        ends = list(dict.fromkeys([*top["origin_code"], *top["destination_code"]]))
    maps.plot_outlines(ctx.outlines(bounds), ax=ax, highlight=ends, label="departement_name")
    maps.plot_flows(top, value, ax=ax, max_flows=ctx.max_flows, legend_title=legend)
    maps.set_extent(ax, bounds, pad=0.08)
    return _finish(ctx, ax, title, [note], stem)


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
        notes.append(ctx.t("no_baseline"))
    if change is not None and not change.empty:
        made.append(national_map(ctx, change, maps_dir))
    if diagnostics is not None:
        made.append(departements_change_map(ctx, diagnostics, maps_dir))

    # residence shift: département flows (diagnostics) when published, else H3 flows
    shift_title = ctx.t("map_shift_flows", month=ctx.month, baseline=ctx.baseline)
    flows = departement_flows(ctx, diagnostics) if diagnostics is not None else pd.DataFrame()
    note = ctx.t("flows_dep_note")
    if flows.empty and "residence_shift" in data.tables:
        flows = inputs.cell_flows(data.tables["residence_shift"], C.USERS)
        res = inputs.flow_resolution(data.tables["residence_shift"])
        note = ctx.t("flows_hex_note", res=res)
    if not flows.empty:
        made.append(
            flow_map(
                ctx,
                flows,
                C.USERS,
                shift_title,
                note,
                ctx.t("legend_users"),
                maps_dir / "residence_shift_flows",
            )
        )
    elif data.baseline_month is not None:
        notes.append(ctx.t("no_flow", k=data.k))

    for table, value, title_key, legend_key in (
        ("od_trips", C.TRIPS, "map_od_flows", "legend_trips"),
        ("od_home_work", C.USERS, "map_home_work", "legend_users"),
    ):
        if table not in data.tables:
            continue
        od, period = inputs.od_for_map(data.tables[table])
        od_flows = inputs.cell_flows(od, value)
        if od_flows.empty:
            continue
        res = int(od_flows[C.RESOLUTION].iloc[0])
        period_note = "" if period == "month" else ctx.t("od_period_sum", period=period)
        made.append(
            flow_map(
                ctx,
                od_flows,
                value,
                ctx.t(title_key, month=ctx.month),
                ctx.t("od_note", res=res, period_note=period_note),
                ctx.t(legend_key),
                maps_dir / f"{table}_flows",
            )
        )

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
