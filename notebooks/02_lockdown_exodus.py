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
# # 02 · The lockdown exodus
#
# When France locked down on 17 March 2020, about 11 % of Parisians left Paris (INSEE
# estimated ≈ 450,000 people), many for a family home or a secondary residence in small
# towns and the countryside: Yonne, Nièvre, Lot, Gers or Cantal gained 5 to 7 % residents.
#
# The bundled sample is a synthetic France built to replay that: subscribers of one
# operator in Paris, Lyon (Rhône) and five rural départements, in February (before) and
# April 2020 (during the lockdown). Because the data are simulated, we know the **truth**
# (`data_samples/truth/`: every subscriber's real home each month, every planted move),
# so every estimate below sits beside the number it should find.
#
# The run compared April with February (`--baseline-month 2020-02`). We look at:
#
# 1. what truly happened in the simulation;
# 2. residents per département, estimated from the H3 tables, against the truth;
# 3. the change in residents of Paris and of the small-town départements;
# 4. the residence shift: who moved where;
# 5. the "toward small towns" indicator.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import sample_run  # notebooks/sample_run.py: finds a run's outputs, makes them if missing
from mobiterra import degurba, maps, validate
from mobiterra.geo import departements

# figures inline, whatever MPLBACKEND says (make exports Agg; mobiterra.maps selects it)
# %matplotlib inline

pd.set_option("display.width", 120)
plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False})

month_dir = sample_run.month_dir()
manifest = sample_run.read_json(month_dir, "manifest.json")
MONTH, BASELINE = manifest["month"], manifest["baseline_month"]
outlines = departements()
names = outlines.set_index("departement_code")["departement_name"]

# %% [markdown]
# ## 1. What truly happened
#
# `truth/homes` gives each simulated subscriber's home per month (the place of most
# nights, as the pipeline defines it) and whether it is inside the simulated territory;
# `truth/moves` lists the planted relocations.

# %%
homes = pd.read_parquet(sample_run.TRUTH / "homes.parquet")
inside = homes[homes["in_territory"]]
truth = inside.groupby(["departement_code", "month"]).size().unstack("month")
truth = truth[[BASELINE, MONTH]].rename(columns={BASELINE: "truth_before", MONTH: "truth_now"})
truth["truth_change_pct"] = (100 * (truth["truth_now"] / truth["truth_before"] - 1)).round(1)
truth.insert(0, "name", names.reindex(truth.index).to_numpy())
truth

# %%
moves = pd.read_parquet(sample_run.TRUTH / "moves.parquet")
dest = moves.assign(
    destination=np.where(
        moves["to_in_territory"],
        moves["to_departement_code"].map(lambda d: f"{d} {names.get(d, '')}"),
        "outside the sample",
    )
)["destination"].value_counts()
fig, ax = plt.subplots(figsize=(7, 3))
dest.sort_values().plot.barh(ax=ax, color="#1f4e79")
ax.set_title(f"Where the {len(moves)} planted Paris movers went (truth)")
ax.set_xlabel("subscribers")
fig.tight_layout()

# %% [markdown]
# Movers leaving for départements outside the sample (Ardèche, Orne, …) simply stop being
# seen by the network of the sample: Paris loses them, nobody gains them.
#
# ## 2. Residents per département: estimate against truth
#
# The pipeline publishes residents per **H3 hexagon**, not per département. To compare
# with the truth, `mobiterra.geo.attribution` splits each published hexagon between the
# départements it overlaps, in proportion to their expected subscribers (INSEE population
# of each resolution-8 cell, times the sample's sampling fraction), and uses each coarse
# hexagon only for what its published children do not already cover — so nothing is
# counted twice and suppressed detail is recovered from coarser rows.
#
# `mobiterra.validate.validate` does exactly this and writes `validation.json` beside the
# tables (a run given `--truth` already did; we call it when the file is missing).

# %%
validation = sample_run.read_json(month_dir, "validation.json")
if validation is None:
    validation = validate.validate(sample_run.TRUTH, month_dir, MONTH, BASELINE)
levels = pd.DataFrame(validation["residents_by_departement"]).set_index("departement_code")
levels.insert(0, "name", names.reindex(levels.index).to_numpy())
print("all départements within 5 %:", validation["checks"]["residents_within_5pct"])
levels

# %%
fig, ax = plt.subplots(figsize=(9, 3.5))
x = np.arange(len(levels))
ax.bar(x - 0.2, levels["truth"], 0.4, label="truth", color="#bbbbbb")
ax.bar(x + 0.2, levels["published"], 0.4, label="estimate from published H3 cells", color="#1f4e79")
for i, err in enumerate(levels["rel_error"]):
    ax.annotate(f"{err:+.1%}", (i + 0.2, levels["published"].iloc[i]), ha="center",
                va="bottom", fontsize=8)  # fmt: skip
ax.set_xticks(x, [f"{c}\n{n}" for c, n in zip(levels.index, levels["name"], strict=True)])
ax.set_ylabel("residents (subscribers)")
ax.set_title(f"Residents per département, {MONTH}: estimate vs truth")
ax.legend(frameon=False)
fig.tight_layout()

# %% [markdown]
# ## 3. Paris and the small-town départements: change in residents
#
# Comparing two months per hexagon would lose most of the rural hexagons to suppression.
# The `diagnostics` table instead counts residents per **territory** (commune, EPCI,
# département, density class) from the users' homes, and puts those territorial counts
# through the gate (jobs/diagnostics.py documents its columns). For each département it
# gives `residents_baseline` (February), `residents` (April) and their change.

# %%
diagnostics = sample_run.read_table(month_dir, "diagnostics")
dep_rows = None
if diagnostics is not None:
    territory = diagnostics[diagnostics["kind"] == "territory"]
    dep_rows = territory[territory["unit"] == "departement"].set_index("code")
    cols = ["residents_baseline", "residents", "residents_change", "residents_change_pct",
            "movers_in", "movers_out", "net_shift"]  # fmt: skip
    dep_rows = dep_rows[cols].join(truth, how="right")
    display(dep_rows)

# %% [markdown]
# A null (`<NA>`) is a count the gate suppressed (or could not publish without letting
# someone recover a suppressed one by subtraction). The truth is complete.

# %%
if dep_rows is not None:
    comparable = dep_rows.dropna(subset=["residents_change_pct"])
    fig, ax = plt.subplots(figsize=(9, 3.5))
    x = np.arange(len(dep_rows))
    ax.bar(x - 0.2, dep_rows["truth_change_pct"], 0.4, label="truth", color="#bbbbbb")
    est = dep_rows["residents_change_pct"].astype("float")
    ax.bar(x + 0.2, est.fillna(0), 0.4, label="published (diagnostics)", color="#1f4e79")
    for i, v in enumerate(est):
        if np.isnan(v):
            ax.annotate("suppressed", (i + 0.2, 0), ha="center", va="bottom", fontsize=7,
                        rotation=90)  # fmt: skip
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_xticks(x, [f"{c}\n{n}" for c, n in zip(dep_rows.index, dep_rows["name"], strict=True)])
    ax.set_ylabel(f"residents, {MONTH} vs {BASELINE} (%)")
    ax.set_title("Change in residents per département: published vs truth")
    ax.legend(frameon=False)
    fig.tight_layout()
    print(f"{len(comparable)} of {len(dep_rows)} départements have a published change")

# %% [markdown]
# On a map: the départements of the sample coloured by their published change (the
# diverging classes of the planners' maps, `mobiterra.maps.plot_change`).

# %%
if dep_rows is not None:
    shown = outlines.merge(
        dep_rows[["residents_change_pct", "truth_change_pct"]].astype("float"),
        left_on="departement_code", right_index=True,
    ).dropna(subset=["residents_change_pct"])  # fmt: skip
    if len(shown):
        ax = maps.new_map((8, 7.5))
        maps.plot_outlines(outlines, ax=ax)
        shown = shown.to_crs(maps.LAMBERT93)
        maps.plot_change(shown, "residents_change_pct", ax=ax,
                         legend_title=f"residents {MONTH}\nvs {BASELINE}")  # fmt: skip
        pts = shown.geometry.representative_point()
        labels = [
            f"{n}\n{est:+.1f} % (truth {t:+.1f} %)"
            for n, est, t in zip(shown["departement_name"], shown["residents_change_pct"],
                                 shown["truth_change_pct"], strict=True)
        ]  # fmt: skip
        maps.label_points(ax, pts.x, pts.y, labels, min_distance=0, fontsize=8)
        ax.set_title("Change in residents by département (published, truth in brackets)")
    else:
        print("note: no département change is published in this run's diagnostics")

# %% [markdown]
# Down to communes: the diagnostics rank the communes with the largest published gains and
# losses of residents (`rank_gain`, `rank_loss`; Paris counted by arrondissement), here
# beside the true change of each.

# %%
if diagnostics is not None and {"rank_gain", "rank_loss"} <= set(diagnostics.columns):
    com = diagnostics[(diagnostics["kind"] == "territory") & (diagnostics["unit"] == "commune")]
    ranked = com[com["rank_gain"].notna() | com["rank_loss"].notna()]
    true_com = inside.groupby(["home_commune_code", "month"]).size().unstack("month")
    true_com = true_com.reindex(columns=[BASELINE, MONTH]).fillna(0)
    ranked = ranked.assign(
        truth_change=ranked["code"].map(true_com[MONTH] - true_com[BASELINE]),
    ).sort_values("residents_change")
    show = ["code", "name", "residents_baseline", "residents", "residents_change", "truth_change"]
    display(ranked[show])

# %% [markdown]
# ## 4. The residence shift: who moved where
#
# The residence shift pairs each user's February home with their April home. Per
# hexagon (`residence_shift/`), flows between two *different* hexagons are small — the
# 60 Paris movers to the Nièvre spread over dozens of origin and destination hexagons —
# so the gate hides almost all of them and publishes mostly the people who stayed:

# %%
shift = sample_run.read_table(month_dir, "residence_shift")
if shift is not None:
    moved = shift["origin_cell"] != shift["destination_cell"]
    summary = (
        shift.assign(moved=moved).groupby(["resolution", "moved"])["users"].agg(["count", "sum"])
    )
    display(summary.unstack("moved", fill_value=0))

# %% [markdown]
# Aggregated by département first, the flows are large enough to publish. The
# diagnostics table carries them (`kind = "flow"`), and the validation scores the planted
# ones (`published`: the territorial table when it has them, else the H3 attribution).

# %%
planted = pd.DataFrame((validation.get("residence_shift") or {}).get("planted", []))
if len(planted):
    planted["destination_name"] = planted["destination"].map(names)
    display(planted[["origin", "destination", "destination_name", "truth", "published",
                     "rel_error"]])  # fmt: skip

flows = None
if diagnostics is not None:
    flows = diagnostics[(diagnostics["kind"] == "flow") & (diagnostics["unit"] == "departement")]
    pairs = (
        inside[inside["month"].isin([BASELINE, MONTH])]
        .pivot_table(index="user_id", columns="month", values="departement_code", aggfunc="first")
        .dropna()
    )
    truth_flows = pairs.groupby([BASELINE, MONTH]).size().rename("truth")
    flows = flows.merge(truth_flows, left_on=["origin_code", "destination_code"],
                        right_index=True, how="left")  # fmt: skip
    display(flows[["name", "origin_code", "destination_code", "users", "truth"]])

# %%
if flows is not None and len(moving := flows[flows["origin_code"] != flows["destination_code"]]):
    centre = outlines.set_index("departement_code").geometry.representative_point()
    drawn = moving.assign(
        origin_lon=moving["origin_code"].map(centre.x),
        origin_lat=moving["origin_code"].map(centre.y),
        destination_lon=moving["destination_code"].map(centre.x),
        destination_lat=moving["destination_code"].map(centre.y),
    )
    ax = maps.new_map((8, 7.5))
    maps.plot_outlines(outlines, ax=ax, highlight=list(truth.index), label="departement_name")
    maps.plot_flows(drawn, "users", ax=ax, legend_title="movers (published)")
    ax.set_title(f"Residence shift between départements, {BASELINE} → {MONTH}")
else:
    print("note: no flow between two départements is published in this run's diagnostics")

# %% [markdown]
# ## 5. The "toward small towns" indicator
#
# The headline indicator of the exodus: the change in the **share of residents living in
# small towns and rural communes** (DEGURBA "rural" communes, and "towns" under 10,000
# inhabitants: `mobiterra.degurba.is_small_town_or_rural`), in percentage points.
# The diagnostics table publishes it as the `small_towns` row (`share_change_pp`, and
# `net_shift` = movers in − movers out). The truth uses the same commune classes on the
# true homes.

# %%
communes = degurba.commune_classes().set_index("commune_code")
small = inside.assign(small=inside["home_commune_code"].map(communes["small_town_or_rural"]))
truth_share = 100 * small.groupby("month")["small"].mean()
truth_pp = truth_share[MONTH] - truth_share[BASELINE]
print(f"truth: {truth_share[BASELINE]:.2f} % → {truth_share[MONTH]:.2f} % of residents "
      f"in small towns and rural communes ({truth_pp:+.2f} pp)")  # fmt: skip

indicator = pd.DataFrame(columns=["unit", "share_change_pp"])  # stays empty without diagnostics
if diagnostics is not None:
    classes = diagnostics[(diagnostics["kind"] == "territory")
                          & diagnostics["unit"].isin(["small_towns", "density_class"])]  # fmt: skip
    indicator = classes[["unit", "code", "name", "share_baseline_pct", "share_pct",
                         "share_change_pp", "net_shift"]]  # fmt: skip
    display(indicator)

# %%
published_pp = indicator.loc[indicator["unit"] == "small_towns", "share_change_pp"].dropna()
fig, ax = plt.subplots(figsize=(6, 3))
bars = {"truth": truth_pp}
if len(published_pp):
    bars["published"] = float(published_pp.iloc[0])
else:
    print("note: the small_towns share change is not published in this run's diagnostics")
ax.barh(list(bars), list(bars.values()), color=["#bbbbbb", "#1f4e79"][: len(bars)])
for i, v in enumerate(bars.values()):
    ax.annotate(f" {v:+.2f} pp", (v, i), va="center")
ax.axvline(0, color="#333333", lw=0.8)
ax.set_xlabel("change in share of residents (percentage points)")
ax.set_title(f'"Toward small towns", {BASELINE} → {MONTH}')
fig.tight_layout()

# %% [markdown]
# **Takeaways.** Published H3 counts, attributed to départements, land within a few
# percent of the true residents. Flows between individual hexagons are mostly too small
# to publish, which is why the exodus is read from territorial aggregates — the
# diagnostics table — where the planted moves out of Paris and the gain of the small-town
# départements show up, beside the simulator's truth.
