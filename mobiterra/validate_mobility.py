"""Scores of the mobility tables and of the expansion against the simulator's truth.

Called by :func:`mobiterra.validate.validate`. Published cells are attributed to
départements as the residents are (mobiterra.geo.attribution: hierarchical pieces, then
shares of expected subscribers); the only simulation metadata used is each
département's sampling fraction. Targets are issue 4's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mobiterra.config import StayParams
from mobiterra.geo.attribution import departement_shares, h3_parent, hierarchical_pieces
from mobiterra.geo.attribution import published_by_departement as by_departement
from mobiterra.geo.grid import h3_to_int
from mobiterra.validate_trips import observable_trips, read_month

NIGHT_TOLERANCE = 0.05
OD_TOLERANCE = 0.10
OD_MIN_USERS = 200  # daily flows scored: at least this many true subscribers
EXPANSION_TOLERANCE = 0.05
TIMEZONE = "Europe/Paris"  # the simulator's local time
NIGHT_HOURS = (22, 6)  # DayPartParams.night


def _read(path: Path) -> pd.DataFrame | None:
    for p in (path, path.with_suffix(".parquet")):
        if p.exists():
            return pd.read_parquet(p)
    return None


def _rel(published: float, truth: float) -> float | None:
    return None if truth == 0 else round((published - truth) / truth, 4)


def _local_day(ts: pd.Series) -> pd.Series:
    ts = ts if ts.dt.tz is not None else ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert(TIMEZONE).dt.strftime("%Y-%m-%d")


def attribute_by_group(
    published: pd.DataFrame, value: str, keys: list[str], group: str, weights: dict[str, float]
) -> pd.DataFrame:
    """Published counts of several periods attributed to départements, per period.

    ``published`` has resolution, int64 ``keys`` (one or two H3 columns), ``group`` and
    ``value``. Pieces are taken per period (what its published rows leave unexplained);
    each piece is split by the shares of its cells (computed once per cell). Returns
    ``group``, one département column per key (``<key>_dep``) and ``value``.
    """
    pieces = [
        hierarchical_pieces(rows, value, keys).assign(**{group: g})
        for g, rows in published.groupby(group)
    ]
    if not pieces:
        return pd.DataFrame(columns=[group, *[f"{k}_dep" for k in keys], value])
    pieces = pd.concat(pieces, ignore_index=True)
    for k in keys:
        shares = [
            departement_shares(np.unique(rows[k]), int(res), weights).assign(resolution=res)
            for res, rows in pieces.groupby("resolution")
        ]
        shares = pd.concat(shares, ignore_index=True).rename(
            columns={"cell": k, "departement_code": f"{k}_dep", "share": f"{k}_share"}
        )
        pieces = pieces.merge(shares, on=["resolution", k], how="inner")
        pieces[value] = pieces[value] * pieces.pop(f"{k}_share")
    deps = [f"{k}_dep" for k in keys]
    return pieces.groupby([group, *deps], as_index=False)[value].sum()


def score_night_presence(truth: Path, run: Path, month: str, weights: dict[str, float]) -> dict:
    """Mean over the month's nights of the users present at night per département.

    Published: ``night`` rows (distinct users present in a cell during the night) of the
    coarsest resolution, attributed and summed over cells: distinct users do not add up
    over cells (a user seen in two hexagons in a night counts in both), and coarse cells
    double count least. Truth (``presence``): users present per hour; a
    night's value is the most users present at any of its hours (22:00-06:00 local).
    """
    pub, true = _read(run / "present_population"), _read(truth / "presence")
    if pub is None or true is None:
        return {"skipped": "no present_population in the run or no presence in the truth"}
    night = pub[(pub["period"] == "night") & (pub["resolution"] == pub["resolution"].min())]
    night = night.assign(
        h3_cell=h3_to_int(night["h3_cell"]), night=_local_day(night["period_start"])
    )
    night = night[night["night"].str.startswith(month)]
    got = attribute_by_group(night, "users", ["h3_cell"], "night", weights)
    published = got.groupby("h3_cell_dep")["users"].sum() / max(night["night"].nunique(), 1)

    start, end = NIGHT_HOURS
    hour = true["hour_local"].dt.hour
    true = true[(hour >= start) | (hour < end)]
    label = (true["hour_local"] - pd.Timedelta(hours=end)).dt.strftime("%Y-%m-%d")
    true = true.assign(night=label)
    true = true[true["night"].str.startswith(month)]
    per_night = true.groupby(["departement_code", "night"])["users"].max()
    expected = per_night.groupby(level=0).mean()
    rows = [
        {
            "departement_code": d,
            "truth": round(float(expected.get(d, 0.0)), 1),
            "published": round(float(published.get(d, 0.0)), 1),
            "rel_error": _rel(float(published.get(d, 0.0)), float(expected.get(d, 0.0))),
        }
        for d in sorted(weights)
    ]
    return {"nights": int(night["night"].nunique()), "by_departement": rows}


def _flows(trips: pd.DataFrame, month: str, territory: set[str]) -> pd.DataFrame:
    """Trips and distinct users per (origin, destination département, local day)."""
    trips = trips.assign(day=_local_day(trips["departure"]))
    trips = trips[
        trips["day"].str.startswith(month)
        & trips["origin_departement"].isin(territory)
        & trips["destination_departement"].isin(territory)
    ]
    return trips.groupby(["origin_departement", "destination_departement", "day"]).agg(
        trips=("user_id", "size"), users=("user_id", "nunique")
    )


def score_daily_od(
    truth: Path,
    run: Path,
    month: str,
    weights: dict[str, float],
    events: Path | None = None,
    stay_params: StayParams | None = None,
) -> dict:
    """Daily trips between départements (diagonal included) for the flows of at least
    OD_MIN_USERS true subscribers in a day. Trips add up over cells; distinct users do
    not, so trips are compared and users only select the flows.

    With the simulated ``events`` (default: beside the truth folder) and truth ``stays``,
    the truth is its observable trips (mobiterra.validate_trips: moves between stays the
    events reveal, under the run's stay parameters); the raw truth trips are reported as
    ``all_truth_trips``. Without them, the raw truth trips are scored."""
    pub, raw = _read(run / "od_trips"), _read(truth / "trips")
    if pub is None or raw is None:
        return {"skipped": "no od_trips in the run or no trips in the truth (--no-truth-stays)"}
    territory = set(weights)
    events = events if events is not None else truth.parent / "events"
    params = stay_params or StayParams()
    observable = (truth / "stays").exists() and (
        events.exists() or events.with_suffix(".parquet").exists()
    )
    all_flows = _flows(raw, month, territory)
    if observable:
        stays, emitted = read_month(truth, events, month)
        seen = observable_trips(
            stays, emitted, params.min_time_stay_s, params.same_place_resolution
        )
        scored = seen
    else:
        scored = raw
    flows = _flows(scored, month, territory)
    truth_trips = int(flows["trips"].sum())
    flows = flows[flows["users"] >= OD_MIN_USERS]
    day = pub[pub["period"] == "day"]
    day = day.assign(
        origin_cell=h3_to_int(day["origin_cell"]),
        destination_cell=h3_to_int(day["destination_cell"]),
        day=_local_day(day["period_start"]),
    )
    got = attribute_by_group(day, "trips", ["origin_cell", "destination_cell"], "day", weights)
    got = got.set_index(["origin_cell_dep", "destination_cell_dep", "day"])["trips"]
    # the "published cells only": the truth's trips whose true (origin,
    # destination, day) lies in a pair the run published at some resolution
    published_cells: dict = {"skipped": "the truth's trips have no origin_h3/destination_h3"}
    if {"origin_h3", "destination_h3"} <= set(scored.columns):
        in_pairs = _flows(scored[in_published_pairs(scored, day)], month, territory)["trips"]
        published_cells = {
            "truth_trips": int(in_pairs.sum()),
            "share_of_truth_trips": round(float(in_pairs.sum()) / truth_trips, 4)
            if truth_trips
            else None,
            **_flow_scores(in_pairs.reindex(flows.index).fillna(0), got),
        }
    return {
        "departements": score_departement_table(run, month, flows["trips"]),
        "truth": "observable_trips" if observable else "all_trips",
        "min_time_stay_s": params.min_time_stay_s,
        "same_place_resolution": params.same_place_resolution,
        "all_truth_trips": int(all_flows["trips"].sum()),
        "truth_trips": truth_trips,  # scored truth's trips, all flows
        "min_truth_users": OD_MIN_USERS,
        **_flow_scores(flows["trips"], got),
        "published_cells": published_cells,
    }


def score_departement_table(run: Path, month: str, truth_trips: pd.Series) -> dict:
    """The same flows scored on ``od_departements`` (daily trips between départements, one
    published number per flow; jobs.od_departements). A flow the table suppressed counts
    as 0 trips; ``flows_published`` says how many were published."""
    table = _read(run / "od_departements")
    if table is None:
        return {"skipped": "no od_departements in the run"}
    table = table.assign(day=_local_day(table["period_start"]))
    table = table[(table["period"] == "day") & table["day"].str.startswith(month)]
    got = table.set_index(["origin_code", "destination_code", "day"])["trips"]
    published = int(truth_trips.index.isin(got.index).sum())
    return {"flows_published": published, **_flow_scores(truth_trips, got.astype(float))}


def in_published_pairs(trips: pd.DataFrame, day: pd.DataFrame) -> np.ndarray:
    """Whether each truth trip's true (origin, destination) hexagons, at some resolution,
    are a pair published for its local day (``day``: od_trips rows of period ``day``, int
    cells, a ``day`` column). Cells suppressed at every resolution are not scored by the
    target's "published cells only"; the score over all trips is reported beside it."""
    covered = np.zeros(len(trips), dtype=bool)
    if trips.empty or day.empty:
        return covered
    o = h3_to_int(trips["origin_h3"])
    d = h3_to_int(trips["destination_h3"])
    when = _local_day(trips["departure"]).to_numpy()
    for res, rows in day.groupby("resolution"):
        keys = pd.MultiIndex.from_arrays(
            [rows["origin_cell"].to_numpy(), rows["destination_cell"].to_numpy(), rows["day"]]
        )
        mine = pd.MultiIndex.from_arrays([h3_parent(o, int(res)), h3_parent(d, int(res)), when])
        covered |= mine.isin(keys)
    return covered


def _flow_scores(truth_trips: pd.Series, got: pd.Series) -> dict:
    """Per (origin, destination, day) flow: published vs truth trips; and per pair, the
    means over days. ``truth_trips`` indexed by (origin, destination, day)."""
    rows = []
    for (o, d, when), t in truth_trips.items():
        p = float(got.get((o, d, when), 0.0))
        rows.append({"origin": o, "destination": d, "day": when, "truth_trips": int(t),
                     "published_trips": round(p, 1), "rel_error": _rel(p, float(t))})  # fmt: skip
    errors = np.array([abs(r["rel_error"]) for r in rows if r["rel_error"] is not None])
    pairs = []
    if rows:
        by_pair = pd.DataFrame(rows).groupby(["origin", "destination"])[
            ["truth_trips", "published_trips"]
        ]
        for (o, d), r in by_pair.mean().iterrows():
            pairs.append({"origin": o, "destination": d, "days": int(by_pair.size()[(o, d)]),
                          "truth_trips_per_day": round(float(r["truth_trips"]), 1),
                          "published_trips_per_day": round(float(r["published_trips"]), 1),
                          "rel_error": _rel(r["published_trips"], r["truth_trips"])})  # fmt: skip
    outside = [r for r in rows if r["rel_error"] is None or abs(r["rel_error"]) > OD_TOLERANCE]
    return {
        "flows": len(rows),
        "flows_within_10pct": int((errors <= OD_TOLERANCE).sum()),
        "flows_outside_10pct": sorted(
            outside, key=lambda r: (r["origin"], r["destination"], r["day"])
        ),  # fmt: skip
        "median_abs_rel_error": round(float(np.median(errors)), 4) if len(errors) else None,
        "p90_abs_rel_error": round(float(np.quantile(errors, 0.9)), 4) if len(errors) else None,
        "max_abs_rel_error": round(float(errors.max()), 4) if len(errors) else None,
        "by_pair": pairs,
    }


def _published_estimates(diag: pd.DataFrame | None) -> dict[str, int]:
    """``residents_est`` of the département rows of a ``diagnostics`` table (published)."""
    if diag is None or "residents_est" not in diag.columns:
        return {}
    rows = diag[(diag["kind"] == "territory") & (diag["unit"] == "departement")]
    rows = rows.dropna(subset=["residents_est"])
    return {str(c): int(v) for c, v in zip(rows["code"], rows["residents_est"], strict=True)}


def score_expansion(
    truth: Path, run: Path, month: str, homes: pd.DataFrame, weights: dict[str, float]
) -> dict:
    """Published factors and expanded residents per département.

    Truth factor: the simulator's expansion factor of the département's residents in the
    calibration month (1 / (market share x sampling fraction)). Expanded residents are
    compared with the reference (INSEE, what calibration reproduces in the calibration
    month), with the reference moved by the truth's change of residents since the
    calibration month (``reference_moved``: a month of relocation is not the census; the
    lockdown took 11 % of Paris's residents), and with the truth's population of the
    month: the sum of the true residents' own factors (a mover keeps the factor of the
    département they were drawn in, which no per-département expansion can know when the
    simulation samples départements unevenly: a Parisian in Nièvre stands for 4 times
    as many people as a Nivernais).

    ``estimated`` sums the published ``residents_est`` (one factor per coarsest-resolution
    tree, for privacy: a tree straddling two départements mixes their factors);
    ``estimated_departement`` is the département's factor times its attributed published
    residents, the département total without that mixing; ``published_departement`` is
    the total the run publishes for it (``diagnostics``' ``residents_est``: its factor
    times its published residents, homes placed by commune).
    """
    table, residents, users = (
        _read(run / "expansion"),
        _read(run / "residents"),
        _read(truth / "users"),
    )
    if table is None or residents is None or users is None or "expansion_factor" not in users:
        return {"skipped": "no expansion table in the run or no expansion factors in the truth"}
    calibration = str(table["calibration_month"].iloc[0]) if len(table) else month
    in_territory = homes[homes["in_territory"]].merge(
        users[["user_id", "expansion_factor"]], on="user_id"
    )
    cal = in_territory[in_territory["month"] == calibration]
    truth_factor = cal.groupby("departement_code")["expansion_factor"].median()
    now = in_territory[in_territory["month"] == month]
    population = now.groupby("departement_code")["expansion_factor"].sum()
    est = residents.dropna(subset=["residents_est"])
    estimated = by_departement(est, "residents_est", weights) if len(est) else pd.Series()
    attributed = by_departement(residents, "residents", weights)
    # the truth's own change of residents since the calibration month: what the census
    # (ordinary times) becomes in a month of relocation, at the département's factor
    true_now = homes[homes["in_territory"] & (homes["month"] == month)]
    true_cal = homes[homes["in_territory"] & (homes["month"] == calibration)]
    change = (
        true_now.groupby("departement_code").size() / true_cal.groupby("departement_code").size()
    )
    table = table.set_index("departement_code")
    published = _published_estimates(_read(run / "diagnostics"))
    rows = []
    for d in sorted(weights):
        factor = table["factor"].get(d, np.nan)
        e = float(estimated.get(d, 0.0))
        ref = float(table["reference_residents"].get(d, 0))
        pop = float(population.get(d, 0.0))
        moved = ref * float(change.get(d, np.nan))
        by_dep = float(attributed.get(d, 0.0)) * (0.0 if pd.isna(factor) else float(factor))
        pub = published.get(d)
        rows.append({"departement_code": d, "factor": None if pd.isna(factor) else factor,
                     "truth_factor": round(float(truth_factor.get(d, np.nan)), 3),
                     "factor_rel_error": None if pd.isna(factor)
                     else _rel(factor, float(truth_factor.get(d, np.nan))),
                     "estimated": round(e), "reference": round(ref),
                     "rel_error_reference": _rel(e, ref), "truth_population": round(pop),
                     "rel_error_truth": _rel(e, pop),
                     "reference_moved": None if np.isnan(moved) else round(moved),
                     "rel_error_reference_moved": None if np.isnan(moved) else _rel(e, moved),
                     "estimated_departement": round(by_dep),
                     "rel_error_departement_reference_moved": None if np.isnan(moved)
                     else _rel(by_dep, moved),
                     "published_departement": pub,
                     "rel_error_published_reference_moved": None
                     if pub is None or np.isnan(moved) else _rel(pub, moved),
                     "rel_error_published_truth": None if pub is None
                     else _rel(pub, pop)})  # fmt: skip
    return {"calibration_month": calibration, "by_departement": rows}


def mobility_scores(
    truth: Path,
    run: Path,
    month: str,
    homes: pd.DataFrame,
    weights: dict[str, float],
    events: Path | None = None,
) -> tuple[dict, dict]:
    """(scores, checks) of present population, daily OD and expansion."""
    night = score_night_presence(truth, run, month, weights)
    od = score_daily_od(truth, run, month, weights, events)
    expansion = score_expansion(truth, run, month, homes, weights)

    def within(rows: list[dict] | None, key: str, tolerance: float) -> bool | None:
        if not rows:
            return None
        return all(r[key] is not None and abs(r[key]) <= tolerance for r in rows)

    exp_rows = expansion.get("by_departement")
    checks = {
        "night_presence_within_5pct": within(night.get("by_departement"), "rel_error",
                                             NIGHT_TOLERANCE),
        "daily_od_within_10pct": None if not od.get("flows")
        else od["flows_within_10pct"] == od["flows"],
        # the reading: the truth's trips in the pairs the run published
        "daily_od_published_cells_within_10pct": None
        if not od.get("published_cells", {}).get("flows")
        else od["published_cells"]["flows_within_10pct"] == od["published_cells"]["flows"],
        # one published number per flow: the od_departements table
        "daily_od_departements_within_10pct": None
        if not od.get("departements", {}).get("flows")
        else od["departements"]["flows_within_10pct"] == od["departements"]["flows"],
        "expansion_within_5pct_of_truth": within(exp_rows, "rel_error_truth",
                                                 EXPANSION_TOLERANCE),
        "expansion_within_5pct_of_reference": within(exp_rows, "rel_error_reference",
                                                     EXPANSION_TOLERANCE),
        "expansion_within_5pct_of_reference_moved": within(
            exp_rows, "rel_error_reference_moved", EXPANSION_TOLERANCE),
        "expansion_departement_within_5pct_of_reference_moved": within(
            exp_rows, "rel_error_departement_reference_moved", EXPANSION_TOLERANCE),
        # the number the run publishes per département (diagnostics' residents_est)
        "expansion_published_departement_within_5pct_of_reference_moved": within(
            exp_rows, "rel_error_published_reference_moved", EXPANSION_TOLERANCE),
    }  # fmt: skip
    scores = {"night_presence": night, "daily_od": od, "expansion": expansion}
    return scores, checks
