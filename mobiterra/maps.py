"""Maps for planners: hexagon choropleths and flow maps, drawn offline with matplotlib.

Every function takes data and an optional ``ax`` and returns the ``ax`` (the geopandas
convention). Maps are drawn in Lambert-93 (EPSG:2154, the French official projection), so
distances are metres and the scale bar is true; no basemap service is used — the context is
the département outlines of mobiterra.geo (INSEE, IGN).

The numbers drawn are the published ones (or differences of two published ones): a
suppressed cell or flow is simply absent, never estimated.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle  # noqa: E402
from pyproj import Transformer  # noqa: E402

from mobiterra.geo.grid import cells_geodataframe  # noqa: E402

LAMBERT93 = "EPSG:2154"
# Classes of a change in % (Flux Vision / INSEE maps use a handful of symmetric classes;
# ±2 % is "stable" at the sample's sizes, where one user is 1-5 % of a cell).
CHANGE_BINS = (-math.inf, -10.0, -5.0, -2.0, 2.0, 5.0, 10.0, math.inf)
CHANGE_CMAP = "RdBu"  # red = loss, blue = gain; light in the middle (stable)
# Classes of a count of users (published counts start at k).
COUNT_BINS = (0, 50, 100, 250, 500, 1_000, math.inf)
COUNT_CMAP = "YlGnBu"
FLOW_COLOR = "#1f4e79"
OUTLINE_COLOR = "#8c8c8c"
LAND_COLOR = "#f2f2ef"
_HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]
_TO_L93 = Transformer.from_crs("EPSG:4326", LAMBERT93, always_xy=True)


def new_map(figsize: tuple[float, float] = (9.0, 8.0)) -> plt.Axes:
    """An empty map axes (no ticks, equal aspect)."""
    # no layout engine: constrained layout drops legends outside the axes from the saved box
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_axis_off()
    ax.set_aspect("equal")
    fig.patch.set_facecolor("white")
    return ax


def hexagons(df: pd.DataFrame, cell: str = "h3_cell") -> gpd.GeoDataFrame:
    """``df`` with its H3 cells as hexagon polygons, in Lambert-93."""
    polys = cells_geodataframe(df[cell]).to_crs(LAMBERT93)
    return gpd.GeoDataFrame(
        df.reset_index(drop=True), geometry=polys.geometry.values, crs=LAMBERT93
    )


def class_labels(bins: Sequence[float], unit: str = "%", *, signed: bool = True) -> list[str]:
    """Readable labels of classes: "< −10 %", "−10 … −5 %", ..., "≥ +10 %"."""

    def fmt(x: float) -> str:
        if not signed:
            return f"{x:,.0f}".replace(",", "\u202f")
        return f"{x:+g}".replace("-", "−") if x else "0"

    unit = f" {unit}" if unit else ""
    labels = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        if math.isinf(lo):
            labels.append(f"< {fmt(hi)}{unit}")
        elif math.isinf(hi):
            labels.append(f"≥ {fmt(lo)}{unit}")
        else:
            labels.append(f"{fmt(lo)} … {fmt(hi)}{unit}")
    return labels


def class_colors(n: int, cmap: str = CHANGE_CMAP, span: tuple[float, float] = (0.08, 0.92)) -> list:
    return [plt.get_cmap(cmap)(v) for v in np.linspace(*span, n)]


def plot_classes(
    gdf: gpd.GeoDataFrame,
    value: str,
    bins: Sequence[float],
    colors: Sequence,
    *,
    ax: plt.Axes | None = None,
    legend_title: str | None = None,
    labels: Sequence[str] | None = None,
) -> plt.Axes:
    """Classed choropleth: polygons of ``gdf`` (Lambert-93) coloured by the class of
    ``value`` among ``bins``; legend (largest class on top) right of the map."""
    ax = ax or new_map()
    inner = np.asarray(bins[1:-1], float)
    classes = np.searchsorted(inner, gdf[value].to_numpy(float), side="right")
    if len(gdf):
        gdf.plot(
            ax=ax,
            color=[colors[c] for c in classes],
            edgecolor="#4d4d4d",
            linewidth=0.4,
            zorder=3,
        )
    if legend_title is not None:
        handles = [
            Patch(facecolor=c, edgecolor="#4d4d4d", linewidth=0.4, label=lbl)
            for c, lbl in zip(colors[::-1], (labels or class_labels(bins))[::-1], strict=True)
        ]
        add_legend(
            ax, handles=handles, title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )
    return ax


def plot_change(
    gdf: gpd.GeoDataFrame,
    value: str,
    *,
    ax: plt.Axes | None = None,
    bins: Sequence[float] = CHANGE_BINS,
    cmap: str = CHANGE_CMAP,
    legend_title: str | None = None,
    unit: str = "%",
) -> plt.Axes:
    """Classed choropleth of a change (diverging colours, light around 0: stable).

    gdf: polygons (hexagons or territories) in Lambert-93 with a ``value`` column.
    legend_title: title of the class legend, drawn right of the map; None = no legend.
    """
    colors = class_colors(len(bins) - 1, cmap)
    return plot_classes(
        gdf, value, bins, colors, ax=ax, legend_title=legend_title, labels=class_labels(bins, unit)
    )


def plot_counts(
    gdf: gpd.GeoDataFrame,
    value: str,
    *,
    ax: plt.Axes | None = None,
    bins: Sequence[float] = COUNT_BINS,
    cmap: str = COUNT_CMAP,
    legend_title: str | None = None,
) -> plt.Axes:
    """Classed choropleth of a count (sequential colours); a published count is >= k."""
    colors = class_colors(len(bins) - 1, cmap, (0.2, 0.95))
    return plot_classes(
        gdf,
        value,
        bins,
        colors,
        ax=ax,
        legend_title=legend_title,
        labels=class_labels(bins, "", signed=False),
    )


def add_legend(ax: plt.Axes, **kw) -> plt.Axes:
    """A legend right of the map; a map may have several (classes, flow widths)."""
    previous = ax.get_legend()
    ax.legend(frameon=False, fontsize=9, title_fontsize=9, alignment="left", **kw)
    if previous is not None:
        # add_artist clips to the axes: unclipped, the saved figure keeps it whole
        previous.set_clip_on(False)
        ax.add_artist(previous)
    return ax


def plot_outlines(
    outlines: gpd.GeoDataFrame,
    *,
    ax: plt.Axes | None = None,
    highlight: Sequence[str] = (),
    label: str | None = None,
    code: str = "departement_code",
) -> plt.Axes:
    """Territory outlines as context: land in light grey, ``highlight`` codes outlined
    darker and, with ``label`` (a name column), named at a point inside them."""
    ax = ax or new_map()
    outlines = outlines.to_crs(LAMBERT93)
    outlines.plot(ax=ax, color=LAND_COLOR, edgecolor="white", linewidth=0.8, zorder=1)
    outlines.boundary.plot(ax=ax, color=OUTLINE_COLOR, linewidth=0.3, zorder=2)
    hot = outlines[outlines[code].isin(list(highlight))]
    if len(hot):
        hot.boundary.plot(ax=ax, color="#333333", linewidth=0.9, zorder=4)
        if label:
            # in the order of ``highlight`` (most important first); crowded ones skipped
            hot = hot.set_index(code).loc[[c for c in highlight if c in set(hot[code])]]
            pts = hot.geometry.representative_point()
            bounds = outlines.total_bounds
            label_points(
                ax,
                pts.x,
                pts.y,
                hot[label],
                min_distance=(bounds[2] - bounds[0]) / 25,
                fontsize=7.5,
            )
    return ax


def label_points(
    ax: plt.Axes,
    xs: Sequence[float],
    ys: Sequence[float],
    texts: Sequence[str],
    *,
    min_distance: float | None = None,
    fontsize: float = 8,
    **kw,
) -> plt.Axes:
    """Name places, in the given order (most important first), skipping a label closer than
    ``min_distance`` (map units; default 1/12 of the view width) to one already placed."""
    if min_distance is None:
        x0, x1 = ax.get_xlim()
        min_distance = (x1 - x0) / 12
    placed: list[tuple[float, float]] = []
    for x, y, text in zip(xs, ys, texts, strict=True):
        if any(math.hypot(x - px, y - py) < min_distance for px, py in placed):
            continue
        placed.append((x, y))
        ax.annotate(
            text,
            (x, y),
            ha="center",
            va="center",
            fontsize=fontsize,
            color="#222222",
            path_effects=_HALO,
            zorder=8,
            **kw,
        )
    return ax


def to_lambert(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _TO_L93.transform(np.asarray(lon, float), np.asarray(lat, float))
    return np.asarray(x), np.asarray(y)


def flow_width(values: np.ndarray, vmax: float, max_width: float = 9.0) -> np.ndarray:
    """Line width in points, proportional to the volume (the largest flow = max_width)."""
    return 0.8 + (max_width - 0.8) * np.asarray(values, float) / max(vmax, 1.0)


def plot_flows(
    flows: pd.DataFrame,
    value: str,
    *,
    ax: plt.Axes | None = None,
    max_flows: int = 20,
    color: str = FLOW_COLOR,
    legend_title: str | None = None,
    curvature: float = 0.25,
    label_values: bool = True,
    max_labels: int = 8,
) -> plt.Axes:
    """The largest flows as curved arrows, width by volume, with a width legend and (with
    ``label_values``) the values of the ``max_labels`` largest written along their arcs.

    flows: ``origin_lon, origin_lat, destination_lon, destination_lat`` (WGS84) and the
    ``value`` column; flows from a place to itself are not drawn.
    """
    ax = ax or new_map()
    moves = flows[
        (flows["origin_lon"] != flows["destination_lon"])
        | (flows["origin_lat"] != flows["destination_lat"])
    ]
    top = moves.nlargest(max_flows, value).sort_values(value)  # largest drawn last, on top
    vmax = float(top[value].max()) if len(top) else 1.0
    ox, oy = to_lambert(top["origin_lon"], top["origin_lat"])
    dx, dy = to_lambert(top["destination_lon"], top["destination_lat"])
    widths = flow_width(top[value].to_numpy(), vmax)
    for x0, y0, x1, y1, w in zip(ox, oy, dx, dy, widths, strict=True):
        ax.add_patch(
            FancyArrowPatch(
                (x0, y0),
                (x1, y1),
                connectionstyle=f"arc3,rad={curvature}",
                arrowstyle="-|>",
                mutation_scale=6 + 2.2 * w,
                linewidth=w,
                color=color,
                alpha=0.75,
                shrinkA=2,
                shrinkB=2,
                zorder=5,
            )
        )
    if label_values and len(top):
        # the value beside each arc, past its middle (the arc3 control point is at
        # chord middle + curvature x the chord turned a quarter)
        cx = (ox + dx) / 2 + curvature * (dy - oy)
        cy = (oy + dy) / 2 - curvature * (dx - ox)
        t = 0.6
        lx = (1 - t) ** 2 * ox + 2 * (1 - t) * t * cx + t**2 * dx
        ly = (1 - t) ** 2 * oy + 2 * (1 - t) * t * cy + t**2 * dy
        # the largest first; none on top of another (crowded local flows)
        chord = float(np.hypot(dx - ox, dy - oy).max())
        order = np.argsort(-top[value].to_numpy())[:max_labels]
        label_points(
            ax,
            lx[order],
            ly[order],
            [f"{v:,.0f}".replace(",", "\u202f") for v in top[value].to_numpy()[order]],
            min_distance=chord / 5,
            fontsize=8,
            fontweight="bold",
        )
    if len(top):
        ax.scatter(np.r_[ox, dx], np.r_[oy, dy], s=10, color="#222222", zorder=6)
        # keep the arrows inside the view even when the outlines are not drawn
        ax.update_datalim(np.c_[np.r_[ox, dx], np.r_[oy, dy]])
        ax.autoscale_view()
    if legend_title is not None and len(top):
        refs = _nice_refs(float(top[value].min()), vmax)
        handles = [
            Line2D(
                [],
                [],
                color=color,
                alpha=0.75,
                linewidth=flow_width([v], vmax)[0],
                label=f"{v:,.0f}".replace(",", " "),
            )
            for v in refs
        ]
        add_legend(
            ax,
            handles=handles,
            title=legend_title,
            loc="lower left",
            bbox_to_anchor=(1.01, 0.0),
            handlelength=3.5,
        )
    return ax


def _nice_refs(vmin: float, vmax: float) -> list[float]:
    """Two or three round values spanning the drawn flows, for the width legend."""

    def nice(v: float) -> float:
        if v <= 0:
            return 0.0
        mag = 10 ** math.floor(math.log10(v))
        return max(x * mag for x in (1, 2, 5, 10) if x * mag <= v)

    if vmax < 3 * vmin:  # close values: show the real smallest and largest
        return sorted({round(vmin), round(vmax)})
    refs = sorted({nice(vmin), nice((vmin + vmax) / 2), nice(vmax)} - {0.0})
    return refs or [vmax]


def flow_bounds(flows: pd.DataFrame, curvature: float = 0.25) -> tuple[float, ...]:
    """Lambert-93 bounds of flows drawn as arcs: both ends and each arc's farthest point
    (a quadratic curve bends by curvature/2 of its chord, as matplotlib's ``arc3``)."""
    ox, oy = to_lambert(flows["origin_lon"], flows["origin_lat"])
    dx, dy = to_lambert(flows["destination_lon"], flows["destination_lat"])
    mx = (ox + dx) / 2 + curvature / 2 * (dy - oy)
    my = (oy + dy) / 2 - curvature / 2 * (dx - ox)
    xs, ys = np.r_[ox, dx, mx], np.r_[oy, dy, my]
    return (xs.min(), ys.min(), xs.max(), ys.max())


def frame(bounds: Sequence[float], min_size: float = 0.0, ratio: float = 1.0) -> tuple[float, ...]:
    """Widen ``bounds`` to at least ``min_size`` and to a width/height near ``ratio``
    (a strip of a map is hard to read)."""
    xmin, ymin, xmax, ymax = bounds
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    w, h = max(xmax - xmin, min_size), max(ymax - ymin, min_size)
    w, h = max(w, h * ratio), max(h, w / ratio)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def set_extent(ax: plt.Axes, bounds: Sequence[float], pad: float = 0.04) -> plt.Axes:
    """Frame the map on (xmin, ymin, xmax, ymax) in Lambert-93, padded."""
    xmin, ymin, xmax, ymax = bounds
    dx, dy = (xmax - xmin) * pad + 1_000, (ymax - ymin) * pad + 1_000
    ax.set_xlim(xmin - dx, xmax + dx)
    ax.set_ylim(ymin - dy, ymax + dy)
    return ax


def add_scale_bar(ax: plt.Axes, length_m: float | None = None) -> plt.Axes:
    """A scale bar in the lower left (axes in metres, i.e. Lambert-93)."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    if length_m is None:
        target = (x1 - x0) / 5
        mag = 10 ** math.floor(math.log10(target))
        length_m = max(m * mag for m in (1, 2, 5) if m * mag <= target)
    x, y = x0 + 0.04 * (x1 - x0), y0 + 0.04 * (y1 - y0)
    h = 0.008 * (y1 - y0)
    ax.add_patch(Rectangle((x, y), length_m, h, facecolor="#222222", edgecolor="white", zorder=7))
    km = length_m / 1000
    ax.annotate(
        f"{km:g} km",
        (x + length_m / 2, y + 1.8 * h),
        ha="center",
        va="bottom",
        fontsize=8,
        path_effects=_HALO,
        zorder=7,
    )
    return ax


def add_caption(ax: plt.Axes, text: str, width: int = 150) -> plt.Axes:
    """Caption under the map (source, k and the suppression rule), wrapped at ``width``
    characters (matplotlib's own wrapping re-measures the text many times: slow)."""
    ax.annotate(
        textwrap.fill(text, width),
        (0.0, -0.01),
        xycoords="axes fraction",
        ha="left",
        va="top",
        fontsize=7.5,
        color="#444444",
    )
    return ax


def add_note(ax: plt.Axes, text: str) -> plt.Axes:
    """A message in the middle of an empty map (e.g. no flow published at this k)."""
    ax.annotate(
        text,
        (0.5, 0.5),
        xycoords="axes fraction",
        ha="center",
        va="center",
        fontsize=11,
        color="#333333",
        bbox={"boxstyle": "round,pad=0.6", "facecolor": "white", "edgecolor": "#999999"},
        zorder=8,
    )
    return ax


def save_map(ax: plt.Axes, stem: Path) -> list[Path]:
    """Write ``stem``.png (150 dpi) and ``stem``.svg; close the figure."""
    fig = ax.figure
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", facecolor="white")
    # SVG: text stays text (searchable, editable in a presentation tool)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(paths[1], bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return paths
