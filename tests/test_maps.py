"""mobiterra.maps: artists, not pixels (Agg backend)."""

from __future__ import annotations

import math

import h3
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import FancyArrowPatch, Rectangle

from mobiterra import maps

PARIS = h3.latlng_to_cell(48.8566, 2.3522, 5)
AUXERRE = h3.latlng_to_cell(47.7986, 3.5673, 5)
CAHORS = h3.latlng_to_cell(44.4475, 1.4419, 5)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _change() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "resolution": [5, 5, 5],
            "h3_cell": [PARIS, AUXERRE, CAHORS],
            "residents_change_pct": [-11.0, 7.0, 0.5],
        }
    )


def test_class_labels_read_like_a_legend():
    assert maps.class_labels(maps.CHANGE_BINS) == [
        "< −10 %",
        "−10 … −5 %",
        "−5 … −2 %",
        "−2 … +2 %",
        "+2 … +5 %",
        "+5 … +10 %",
        "≥ +10 %",
    ]
    assert maps.class_labels((0, 50, math.inf), "", signed=False) == ["0 … 50", "≥ 50"]


def test_hexagons_are_lambert93_polygons_of_the_cells():
    cells = maps.hexagons(_change())
    assert cells.crs.to_epsg() == 2154
    assert len(cells) == 3 and (cells.geom_type == "Polygon").all()
    # a resolution-5 hexagon is ~253 km²
    assert cells.area.between(200e6, 320e6).all()
    # Paris: Lambert-93 x ~652 km, y ~6862 km
    c = cells.geometry.iloc[0].centroid
    assert abs(c.x - 652_000) < 15_000 and abs(c.y - 6_862_000) < 15_000


def test_change_colours_follow_the_classes_and_the_legend_lists_them():
    ax = maps.plot_change(maps.hexagons(_change()), "residents_change_pct", legend_title="Δ")
    assert ax.get_legend().get_title().get_text() == "Δ"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "≥ +10 %" and labels[-1] == "< −10 %"  # gains on top
    faces = ax.collections[0].get_facecolors()
    colors = maps.class_colors(len(maps.CHANGE_BINS) - 1)
    np.testing.assert_allclose(faces[0], colors[0])  # -11 %: darkest red class
    np.testing.assert_allclose(faces[1], colors[5])  # +7 %: "+5 … +10"
    np.testing.assert_allclose(faces[2], colors[3])  # +0.5 %: stable class


def test_counts_use_sequential_classes():
    df = _change().assign(residents=[3000, 60, 20])
    ax = maps.plot_counts(maps.hexagons(df), "residents", legend_title="n")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-1] == "0 … 50" and labels[0].startswith("≥ 1")


def _flows() -> pd.DataFrame:
    rows = [(PARIS, AUXERRE, 60), (PARIS, CAHORS, 40), (AUXERRE, PARIS, 25), (PARIS, PARIS, 999)]
    df = pd.DataFrame(rows, columns=["origin_cell", "destination_cell", "users"])
    for end in ("origin", "destination"):
        ll = np.array([h3.cell_to_latlng(c) for c in df[f"{end}_cell"]])
        df[f"{end}_lat"], df[f"{end}_lon"] = ll[:, 0], ll[:, 1]
    return df


def test_flows_are_curved_arrows_widest_for_the_largest_without_self_flows():
    ax = maps.plot_flows(_flows(), "users", legend_title="Usagers")
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 3  # the Paris -> Paris stayers are not a flow
    widths = sorted(a.get_linewidth() for a in arrows)
    assert widths[-1] == pytest.approx(9.0)  # the largest flow (60) has the maximum width
    assert widths[0] < widths[1] < widths[2]
    assert all(a.get_connectionstyle().rad == pytest.approx(0.25) for a in arrows)  # curved
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend and all(t.replace(" ", "").isdigit() for t in legend)


def test_flows_keep_only_the_largest():
    ax = maps.plot_flows(_flows(), "users", max_flows=2)
    assert len([p for p in ax.patches if isinstance(p, FancyArrowPatch)]) == 2


def test_scale_bar_is_a_round_length_in_km():
    ax = maps.new_map()
    maps.set_extent(ax, (600_000, 6_800_000, 700_000, 6_900_000), pad=0)
    maps.add_scale_bar(ax)
    bar = [p for p in ax.patches if isinstance(p, Rectangle)][-1]
    assert bar.get_width() == 20_000  # a fifth of ~102 km, rounded down to 1-2-5
    assert any(t.get_text() == "20 km" for t in ax.texts)


def test_labels_too_close_to_a_placed_one_are_skipped():
    ax = maps.new_map()
    maps.set_extent(ax, (0, 0, 1000, 1000), pad=0)
    maps.label_points(ax, [100, 110, 600], [100, 100, 600], ["a", "b", "c"], min_distance=50)
    assert [t.get_text() for t in ax.texts] == ["a", "c"]


def test_save_map_writes_png_and_svg_with_the_caption_as_text(tmp_path):
    ax = maps.plot_change(maps.hexagons(_change()), "residents_change_pct", legend_title="Δ")
    maps.add_caption(ax, "k = 20 · Source : mobiterra synthetic / INSEE, IGN")
    png, svg = maps.save_map(ax, tmp_path / "m")
    image = mpimg.imread(png)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert "k = 20" in svg.read_text() and "INSEE, IGN" in svg.read_text()
