"""What every map of the month shares: the data, the language, the outlines, the caption.

The caption printed under each map states k and the suppression rule and credits the source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import h3

from mobiterra import maps
from mobiterra.report import inputs
from mobiterra.report.labels import TEXT, month_label, number


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


def finish(
    ctx: Context, ax, title: str, notes: list[str], stem: Path, scope: str = "france"
) -> MapFile:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    maps.add_scale_bar(ax)
    caption = ctx.caption(*notes)
    maps.add_caption(ax, caption)
    return MapFile(stem.name, title, " ".join(notes), caption, maps.save_map(ax, stem), scope)


def hex_area(ctx: Context, res: int) -> str:
    """Average hexagon area in km², written the local way."""
    return number(h3.average_hexagon_area(res, "km^2"), ctx.lang, digits=0 if res < 7 else 1)


def hex_note(ctx: Context, res: int, both_months: bool = True) -> str:
    key = "hex_note" if both_months else "hex_note_one"
    return ctx.t(key, res=res, area=hex_area(ctx, res))
