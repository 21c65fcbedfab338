"""Flow maps: residence moves between départements (or hexagons) and trip flows.

Only published flows are drawn: the diagnostics table's département flows, else the
coarsest H3 resolution of a flow table that has flows between two different cells.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from mobiterra import columns as C
from mobiterra import maps
from mobiterra.report import inputs
from mobiterra.report.context import Context, MapFile, finish, hex_area

# Flow maps are framed on their arrows, at least 1.5 times the longest wide and never
# tighter than this (metres, Lambert-93).
MIN_FRAME_M = 10_000


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
    (the départements at the ends named; between hexagons, the hexagons outlined)."""
    if flows.empty:
        return None
    top = flows.nlargest(ctx.max_flows, value)
    ox, oy = maps.to_lambert(top["origin_lon"], top["origin_lat"])
    dx, dy = maps.to_lambert(top["destination_lon"], top["destination_lat"])
    longest = float(np.hypot(dx - ox, dy - oy).max())
    hexes = None
    extent = maps.flow_bounds(top)
    if C.ORIGIN_CELL in top:  # the hexagons the arrows join, as the zones they stand for
        cells = pd.unique(top[[C.ORIGIN_CELL, C.DESTINATION_CELL]].to_numpy().ravel())
        hexes = maps.hexagons(pd.DataFrame({C.H3_CELL: cells}))
        hb = hexes.total_bounds
        extent = (min(extent[0], hb[0]), min(extent[1], hb[1]),
                  max(extent[2], hb[2]), max(extent[3], hb[3]))  # fmt: skip
    bounds = maps.frame(extent, max(1.5 * longest, MIN_FRAME_M), ratio=1.0)
    ax = maps.new_map((9.5, 8.5))
    if "origin_code" in top:
        ends = list(dict.fromkeys([*top["origin_code"], *top["destination_code"]]))
    else:
        ends = end_departements(ctx, top)
    maps.plot_outlines(ctx.outlines(bounds), ax=ax, highlight=ends, label="departement_name")
    if hexes is not None:
        hexes.plot(
            ax=ax,
            facecolor="none",
            edgecolor=maps.FLOW_COLOR,
            linewidth=0.8,
            linestyle="--",
            alpha=0.6,
            zorder=3,
        )
    maps.plot_flows(top, value, ax=ax, max_flows=ctx.max_flows, legend_title=legend)
    maps.set_extent(ax, bounds, pad=0.03)
    return finish(ctx, ax, title, [note], stem)


def end_departements(ctx: Context, flows: pd.DataFrame) -> list[str]:
    """Départements holding the ends of the flows, by total volume (largest first)."""
    x, y = maps.to_lambert(
        pd.concat([flows["origin_lon"], flows["destination_lon"]]),
        pd.concat([flows["origin_lat"], flows["destination_lat"]]),
    )
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=maps.LAMBERT93)
    hit = gpd.sjoin(pts, ctx.departements[["departement_code", "geometry"]], how="inner")
    return hit["departement_code"].value_counts().index.tolist()


def flow_maps(ctx: Context, maps_dir: Path) -> tuple[list[MapFile], list[str]]:
    """The residence-shift flow map and the OD flow maps; notes on those not drawn."""
    made: list[MapFile | None] = []
    notes: list[str] = []
    data = ctx.data
    diagnostics = data.tables.get("diagnostics")
    # residence shift: département flows (diagnostics) when published, else H3 flows
    shift_title = ctx.t("map_shift_flows", month=ctx.month, baseline=ctx.baseline)
    flows = departement_flows(ctx, diagnostics) if diagnostics is not None else pd.DataFrame()
    note = ctx.t("flows_dep_note")
    if flows.empty and "residence_shift" in data.tables:
        res = inputs.flow_resolution(data.tables["residence_shift"])
        flows = inputs.cell_flows(data.tables["residence_shift"], C.USERS, res)
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
        res = inputs.flow_resolution(od, value)
        od_flows = inputs.cell_flows(od, value, res)
        if od_flows.empty:
            continue
        period_note = "" if period == "month" else ctx.t("od_period_sum", period=period)
        made.append(
            flow_map(
                ctx,
                od_flows,
                value,
                ctx.t(title_key, month=ctx.month),
                ctx.t("od_note", res=res, area=hex_area(ctx, res), period_note=period_note),
                ctx.t(legend_key),
                maps_dir / f"{table}_flows",
            )
        )
    return [m for m in made if m is not None], notes
