# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Exploring a month
#
# One monthly run of mobiterra turns antenna events into a handful of Parquet tables on
# the H3 hexagonal grid. This notebook opens one month — April 2020 of the bundled
# synthetic sample, the first month of the lockdown — and looks at:
#
# 1. **the manifest**: what went in, what was rejected, how long each stage took;
# 2. **data quality**: the quarantine of rejected rows;
# 3. **residents**: where subscribers usually spend the night, read with *dask*;
# 4. **present population by hour**: who is where, hour by hour;
# 5. **suppression**: what the privacy gate hid, table by table and resolution by
#    resolution;
# 6. the maps and report page the same run made for planners.
#
# Everything published is a count of **distinct users** per hexagon. No number rests on
# fewer than *k* users (k = 20 by default): a hexagon with fewer users is *suppressed*
# (left out), and sometimes a few more are left out so that nobody can recover a hidden
# count by subtracting published ones. You only need pandas to follow; the pipeline itself
# runs on Spark, but its outputs are ordinary Parquet files.
#
# The first cell finds the outputs of `make run` (folder `$MOBITERRA_OUT`, default `out/`)
# and, on a fresh clone, runs the pipeline on the sample first (a few minutes).

# %%
import dask.dataframe as dd
import h3
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image

import sample_run  # notebooks/sample_run.py: finds a run's outputs, makes them if missing
from mobiterra.geo import departements
from mobiterra.geo.grid import cells_geodataframe

# figures inline, whatever MPLBACKEND says (make exports Agg; mobiterra.maps selects it)
# %matplotlib inline

pd.set_option("display.width", 120)
plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})

month_dir = sample_run.month_dir()
sorted(p.name for p in month_dir.iterdir())

# %% [markdown]
# ## 1. The manifest
#
# `manifest.json` is the run's receipt. Every input row lands in exactly one bucket, so
# `rows_read = accepted + out of period + duplicates + rejected` — the manifest states
# the invariant and whether it holds. The sample file holds February *and* April, so for
# the April run about half the rows are "out of period" (they are February's).

# %%
manifest = sample_run.read_json(month_dir, "manifest.json")
buckets = pd.Series(
    {
        "accepted": manifest["rows_accepted"],
        "out of period": manifest["rows_out_of_period"],
        "duplicate": manifest["rows_duplicate"],
        **{f"rejected: {r}": n for r, n in manifest["rows_rejected"].items()},
    },
    name="rows",
)
print(f"rows read {manifest['rows_read']:,}; invariant holds: {manifest['invariant_holds']}")
print(f"  {manifest['invariant']}")
print(
    f"users seen {manifest['users']:,}, with a usual residence {manifest['users_with_home']:,}; "
    f"antenna cells usable {manifest['cells_usable']:,} of {manifest['cells_read']:,}"
)
buckets.to_frame().assign(share=lambda d: (d["rows"] / manifest["rows_read"]).round(4))

# %%
durations = pd.Series(manifest["durations_s"], name="seconds").sort_values()
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2), width_ratios=[1.3, 1])
shown = buckets[buckets > 0].sort_values()
shown.plot.barh(ax=ax1, color="#1f4e79", logx=True)
for y, n in enumerate(shown):
    ax1.annotate(f" {n:,}", (n, y), va="center", fontsize=9)
ax1.set_title(f"Where the {manifest['rows_read']:,} input rows went")
ax1.set_xlabel("rows (log scale)")
durations.plot.barh(ax=ax2, color="#7f7f7f")
ax2.set_title(f"Stage durations (total {durations.sum():.0f} s)")
ax2.set_xlabel("seconds")
fig.tight_layout()

# %% [markdown]
# ## 2. Data quality: the quarantine
#
# Rows that cannot be used — no user id, an unparseable time, an unknown antenna cell, a
# cell with coordinates out of range — never crash a run and are never dropped silently:
# they go to `quarantine/` with a `reason` (the user id is left out of the quarantine on
# purpose). Antenna cells that fail their own checks go to `quarantine/cells`.

# %%
quarantine = pd.read_parquet(month_dir / "quarantine" / "events")
bad_cells = pd.read_parquet(month_dir / "quarantine" / "cells")
print(f"quarantined events: {len(quarantine):,}; quarantined antenna cells: {len(bad_cells):,}")
if len(quarantine):
    display(quarantine["reason"].value_counts().to_frame("rows"))
else:
    print(
        "The synthetic sample is clean, so the quarantine is empty; tests/test_run.py plants "
        "one bad row of each kind and checks each lands here with its reason."
    )
quarantine.dtypes.to_frame("dtype")

# %% [markdown]
# ## 3. Residents, read with dask
#
# `residents/` holds, for each H3 cell at resolutions 4 to 8, the number of distinct
# users whose *usual residence* (the place seen on most nights, 22:00–06:00) is there.
# The same people are counted at every resolution: a resolution-8 hexagon (≈ 0.7 km²) is
# inside one resolution-7 hexagon (≈ 5 km²), and so on up to resolution 4 (≈ 1,770 km²).
#
# The tables are Parquet *datasets* (folders of part files, as Spark writes them). pandas
# reads them whole; **dask** reads them lazily, in partitions, with the pandas API — the
# same code scales to a national table that does not fit in memory. (In Spark it would be
# `spark.read.parquet(path).groupBy("resolution").agg(...)`.)

# %%
residents_dd = dd.read_parquet(month_dir / "residents")
print(f"{residents_dd.npartitions} partition(s); columns: {list(residents_dd.columns)}")
per_resolution = (
    residents_dd.groupby("resolution")["residents"].agg(["count", "sum", "min", "max"]).compute()
)
per_resolution.columns = ["cells published", "residents", "smallest", "largest"]
residents = residents_dd.compute()  # small: a pandas DataFrame from here on
per_resolution

# %% [markdown]
# `residents_est` expands the subscriber counts to the whole population. The operator
# sees only its own subscribers (and this sample only a small draw of them), so each
# département gets a factor = INSEE residents / subscribers detected living there, in the
# run's `expansion/` table; k always applies to the raw counts, never to the estimates.

# %%
expansion = sample_run.read_table(month_dir, "expansion")
if expansion is not None:
    calibrated = expansion[expansion["status"] == "calibrated"]
    print(
        f"{len(calibrated)} départements calibrated (enough residents detected), "
        f"{len(expansion) - len(calibrated)} not (no factor: their estimates stay null)"
    )
    display(calibrated)
    print(residents.groupby("resolution")[["residents", "residents_est"]].sum())

# %% [markdown]
# Every published count is at least k. The sums shrink at finer resolutions: more of the
# small hexagons fall under k and are suppressed (section 5 measures how much).
#
# A map: residents per hexagon at resolution 7 in Paris and at resolution 6 in the
# Nièvre, one of the rural départements of the sample. `cells_geodataframe` turns H3
# cells into polygons; the département outlines come from `mobiterra.geo` (INSEE, IGN).

# %%
outlines = departements()


def residents_map(ax, resolution, departement_code, title):
    """Published residents at one resolution, drawn over a département's outline."""
    dep = outlines[outlines["departement_code"] == departement_code]
    cells = residents[residents["resolution"] == resolution]
    hexes = cells_geodataframe(cells["h3_cell"]).assign(residents=cells["residents"].to_numpy())
    inside = hexes[hexes.intersects(dep.union_all())]
    outlines.plot(ax=ax, color="#f2f2ef", edgecolor="#bbbbbb", linewidth=0.6)
    inside.plot(
        ax=ax,
        column="residents",
        cmap="viridis",
        legend=True,
        edgecolor="white",
        linewidth=0.3,
        legend_kwds={"label": "residents (subscribers)", "shrink": 0.7},
    )
    dep.boundary.plot(ax=ax, color="#333333", linewidth=0.8)
    xmin, ymin, xmax, ymax = dep.total_bounds
    pad = 0.08 * max(xmax - xmin, ymax - ymin)
    ax.set_xlim(xmin - pad, xmax + pad)
    ax.set_ylim(ymin - pad, ymax + pad)
    ax.set_axis_off()
    ax.set_title(f"{title}: {len(inside)} hexagons at resolution {resolution}")


fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
residents_map(axes[0], 7, "75", "Paris")
residents_map(axes[1], 6, "58", "Nièvre")
fig.suptitle(f"Published residents, {manifest['month']} (k = {manifest['k']})")
plt.show()

# %% [markdown]
# ## 4. Present population by hour
#
# `present_population/` counts the distinct users present in a hexagon during each
# period: every hour (`period = "hour"`), every day and the night / daytime / evening of
# each day. Presence is interpolated from *stays* (a user sitting in a place between two
# events is present in every hour in between), not only from users who happened to make
# a call in that hour. `period_start` is a UTC timestamp; hours of day are read in
# Europe/Paris local time.
#
# The simulator knows where everyone truly was: `data_samples/truth/presence` has the
# true present users per département and local hour. We compare it with the published
# hourly counts at the coarsest resolution, where suppression hides least.

# %%
presence = sample_run.read_table(month_dir, "present_population")
truth_presence = pd.read_parquet(sample_run.TRUTH / "presence.parquet")

# %%
if presence is not None:
    hourly = presence[presence["period"] == "hour"].copy()
    coarsest = hourly["resolution"].min()
    hourly = hourly[hourly["resolution"] == coarsest]
    utc = hourly["period_start"]  # UTC instants (Parquet may or may not tag them as UTC)
    utc = utc.dt.tz_convert("UTC") if utc.dt.tz else utc.dt.tz_localize("UTC")
    hourly["hour_local"] = utc.dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    published_hour = hourly.groupby("hour_local")["users"].sum()
    in_month = truth_presence["hour_local"].dt.strftime("%Y-%m") == manifest["month"]
    truth_hour = truth_presence[in_month].groupby("hour_local")["users"].sum()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), width_ratios=[2, 1])
    truth_hour.plot(ax=ax1, color="#999999", lw=1, label="truth: users present (all places)")
    published_hour.plot(ax=ax1, color="#1f4e79", lw=1, label=f"published, resolution {coarsest}")
    ax1.set_ylim(0, 1.1 * truth_hour.max())
    ax1.set_title("Present users per hour, all hexagons summed")
    ax1.set_xlabel("")
    ax1.legend(loc="lower center", fontsize=8)

    # A typical day in the busiest published hexagon
    top_cell = hourly.groupby("h3_cell")["users"].sum().idxmax()
    one = hourly[hourly["h3_cell"] == top_cell]
    weekday = (one["hour_local"].dt.dayofweek < 5).map({True: "weekdays", False: "weekends"})
    profile = one.groupby([weekday, one["hour_local"].dt.hour])["users"].mean().unstack(0)
    profile.plot(ax=ax2, marker=".", color=["#d95f02", "#1f4e79"])
    ax2.legend(title=None, fontsize=8)
    paris = h3.latlng_to_cell(48.8566, 2.3522, int(coarsest)) == top_cell
    where = "the one holding central Paris" if paris else top_cell
    ax2.set_title(f"Busiest hexagon ({where}):\nmean users present per hour", fontsize=10)
    ax2.set_xlabel("local hour")
    ax2.set_ylabel("users present")
    fig.tight_layout()
    ratio = published_hour.sum() / truth_hour.sum()
    print(f"published / true user-hours over the month at resolution {coarsest}: {ratio:.1%}")

# %% [markdown]
# The published total follows the true one at the coarsest resolution, a few percent
# below: hexagons and hours suppressed under k, and time a phone is silent for longer
# than the stay rules accept (presence is only interpolated inside a stay), are missing.
# At the month's first and last hours the stays are cut by the month's edges. On
# weekdays both curves dip at the commuting hours — a user on the move is between two
# places — the published one deeper, since a phone seen only in passing makes no stay;
# weekends, in the lockdown, are flat.

# %% [markdown]
# ## 5. What the gate hid
#
# Two kinds of suppression:
#
# - **primary**: a row resting on fewer than k users;
# - **secondary**: a row that is large enough, but would let someone recover a hidden row
#   by subtraction (a published parent hexagon minus its published children, or a total
#   minus its parts, must be 0 or at least k).
#
# The manifest accounts for both in every table. User counts are sums over rows, so a
# user counts once per resolution (and per period for presence).

# %%
stats = pd.DataFrame(manifest["tables"]).T
cols = [
    "rows_published", "rows_suppressed_primary", "rows_suppressed_secondary",
    "user_count_published", "user_count_suppressed",
]  # fmt: skip
stats = stats[[c for c in cols if c in stats.columns]].astype("int64")
stats["share of users hidden"] = (
    stats["user_count_suppressed"]
    / (stats["user_count_published"] + stats["user_count_suppressed"])
).round(3)
stats

# %% [markdown]
# Per resolution, for residents: everyone with a usual residence is counted once at each
# resolution, so the share hidden is `1 - published residents / users with a home`. The
# simulator's truth gives the same figure from the other side (`validation.json`, written
# by the run when it is given `--truth`).

# %%
hidden = 1 - per_resolution["residents"] / manifest["users_with_home"]
validation = sample_run.read_json(month_dir, "validation.json")
table = hidden.to_frame("share hidden (manifest)")
if validation is not None:
    by_res = validation["suppression"]["share_not_covered_by_resolution"]
    table["share hidden (truth)"] = pd.Series({int(r): v for r, v in by_res.items()})
area_km2 = {r: h3.average_hexagon_area(r, unit="km^2") for r in table.index}
table["hexagon area (km²)"] = pd.Series(area_km2).round(1)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar(table.index.astype(str), 100 * table["share hidden (manifest)"], color="#b2182b")
for r, v in table["share hidden (manifest)"].items():
    ax.annotate(f"{v:.0%}", (str(r), 100 * v), ha="center", va="bottom", fontsize=9)
ax.set_xlabel("H3 resolution (finer →)")
ax.set_ylabel("% of residents not published")
ax.set_title(f"Residents hidden by the gate (k = {manifest['k']}), {manifest['month']}")
fig.tight_layout()
table

# %% [markdown]
# The trade-off in one picture: at resolution 4 almost everyone is published; at
# resolution 8 (neighbourhood scale) most residents live in hexagons with fewer than
# k subscribers of the sample and are hidden. With a full operator base (≈ 35 % of the
# population, not this sample's fraction of a percent) the same k hides far less.
#
# Where exactly? The simulator knows every true home. Drawn at resolution 8 in central
# Paris: hexagons where the published table has a count, and hexagons where people truly
# live but nothing is published.

# %%
homes = pd.read_parquet(sample_run.TRUTH / "homes.parquet")
homes = homes[(homes["month"] == manifest["month"]) & homes["in_territory"]]
true8 = homes.groupby("home_h3").size().rename("true_residents").reset_index()
pub8 = residents[residents["resolution"] == 8].set_index("h3_cell")["residents"]
true8["published"] = true8["home_h3"].isin(pub8.index)
paris = homes[homes["departement_code"] == "75"]["home_h3"].unique()
view = true8[true8["home_h3"].isin(paris)]
hexes = cells_geodataframe(view["home_h3"]).assign(
    published=view["published"].to_numpy(), true_residents=view["true_residents"].to_numpy()
)

fig, ax = plt.subplots(figsize=(8, 6.5))
outlines[outlines["departement_code"] == "75"].boundary.plot(ax=ax, color="#333333", lw=0.8)
hexes[~hexes["published"]].plot(ax=ax, color="#dddddd", edgecolor="white", linewidth=0.3)
hexes[hexes["published"]].plot(ax=ax, color="#1f4e79", edgecolor="white", linewidth=0.3)
ax.set_axis_off()
share = view.loc[view["published"], "true_residents"].sum() / view["true_residents"].sum()
ax.set_title(
    f"Paris, resolution 8: {view['published'].sum()} of {len(view)} inhabited hexagons "
    f"published ({share:.0%} of true residents)\nblue = published, grey = hidden (< k or "
    "secondary)",
    fontsize=10,
)
fig.tight_layout()

# %% [markdown]
# ## 6. The planners' side of the same month
#
# The run also draws maps (`maps/`, PNG and SVG), writes exports (`exports/`: CSV,
# GeoJSON, GeoPackage) and a static page, `report/index.html`, linking them — all made
# from the published tables only, so they show exactly what this notebook read.

# %%
maps_dir = month_dir / "maps"
pngs = sorted(maps_dir.glob("*.png")) if maps_dir.exists() else []
print(f"{len(pngs)} maps in {maps_dir}; report page: {month_dir / 'report' / 'index.html'}")
# the département map first when there is one (names are the report's: maps/<what>.png)
first = sorted(pngs, key=lambda f: f.stem != "residents_change_departements")[:1]
for png in first:
    print(png.name)
    display(Image(filename=png, width=700))
if not pngs:
    print("note: no maps in this run (made by the report stage; `make run` refreshes it)")

# %% [markdown]
# **Takeaways.** The manifest reconciles every input row; the quarantine keeps the bad
# ones with a reason; residents and present population read as plain Parquet with pandas
# or dask; and the finer the grid, the more the gate hides at a given k.
# Notebook 02 follows the lockdown exodus, notebook 03 the flows and the choice of k.
