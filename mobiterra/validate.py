"""Scoring a run's published tables against the simulator's ground truth.

``mobiterra validate --truth T --out O --month M`` compares ``O/M/residents`` (and
``residence_shift``, ``diagnostics`` when present) with ``T`` (written by ``mobiterra
simulate``) and writes ``O/M/validation.json``.

Published cells are attributed to départements without looking at the truth
(:mod:`mobiterra.geo.attribution`); the only simulation metadata used is each
département's sampling fraction (``truth/users``), since samples may be drawn unevenly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h3
import numpy as np
import pandas as pd

from mobiterra.config import PrivacyParams
from mobiterra.geo.attribution import (
    GRID_RESOLUTION,
    flows_by_departement,
    h3_parent,
    published_by_departement,
)
from mobiterra.geo.grid import h3_to_int
from mobiterra.validate_mobility import mobility_scores

# Acceptance thresholds of issue 3 ("Done when").
RESIDENTS_TOLERANCE = 0.05
RESIDENTS_MIN_SUBSCRIBERS = 200
FLOW_TOLERANCE = 0.10
# H3 cells scored at resolution 6 need this many true residents.
CELL_RESOLUTION = 6
CELL_MIN_RESIDENTS = 100
# Issue 4: residents per res-6 cell within 10 % of the truth.
CELL_TOLERANCE = 0.10


def _read(path: Path) -> pd.DataFrame | None:
    if path.exists() or path.with_suffix(".parquet").exists():
        return pd.read_parquet(path if path.exists() else path.with_suffix(".parquet"))
    return None


def _rel(published: float, truth: float) -> float | None:
    return None if truth == 0 else round((published - truth) / truth, 4)


def _diagnostics_by_departement(diag: pd.DataFrame | None) -> pd.Series | None:
    """Residents per département from a ``diagnostics`` table, if it has that unit."""
    if diag is None:
        return None
    unit = next(
        (c for c in ("unit", "unit_type", "territory_unit", "level") if c in diag.columns), None
    )
    code = next(
        (
            c
            for c in ("code", "unit_code", "territory_code", "departement_code")
            if c in diag.columns
        ),
        None,
    )
    value = next(
        (c for c in ("residents", "residents_month", "residents_after") if c in diag.columns), None
    )
    if unit is None or code is None or value is None:
        return None
    rows = diag[diag[unit].astype(str).str.lower().str.startswith("d")]
    return rows.groupby(rows[code].astype(str))[value].sum() if len(rows) else None


def validate(
    truth_dir: str | Path,
    run_dir_month: str | Path,
    month: str,
    baseline_month: str | None = None,
    events: str | Path | None = None,
    privacy: dict | None = None,
) -> dict:
    """Score one published month against the truth; writes ``validation.json`` there.

    ``privacy``: the run's ``{"k", "noise"}`` (default: from the month's manifest; a run
    scoring itself passes it, its manifest comes later); planted flows of fewer than k
    true users can never be published and are reported but not checked.

    ``events``: the simulated events (default: ``events`` beside the truth folder), used
    only to find which true stays and trips the network could observe (daily OD)."""
    truth, run = Path(truth_dir), Path(run_dir_month)
    homes = _read(truth / "homes")
    if homes is None:
        raise FileNotFoundError(
            f"{truth}/homes(.parquet) not found: is {truth} a simulator truth folder?"
        )
    residents_df = _read(run / "residents")
    if residents_df is None:
        raise FileNotFoundError(f"{run}/residents not found: expected a published month folder")
    months = sorted(homes["month"].unique())
    if month not in months:
        raise ValueError(f"month {month} not in the truth (it has {months})")
    now = homes[(homes["month"] == month) & homes["in_territory"]]
    territory = sorted(now["departement_code"].unique())
    truth_dep = now.groupby("departement_code").size()

    weights = _sampling_weights(truth, homes, territory)
    pub_dep = published_by_departement(residents_df, "residents", weights)
    deps = []
    for d in territory:
        t, p = int(truth_dep.get(d, 0)), float(pub_dep.get(d, 0.0))
        deps.append(
            {"departement_code": d, "truth": t, "published": round(p, 1), "rel_error": _rel(p, t)}
        )
    diag = _diagnostics_by_departement(_read(run / "diagnostics"))
    diag_rows = None
    if diag is not None:
        diag_rows = [
            {
                "departement_code": d,
                "truth": int(truth_dep.get(d, 0)),
                "published": float(diag.get(d, 0)),
                "rel_error": _rel(float(diag.get(d, 0)), int(truth_dep.get(d, 0))),
            }
            for d in territory
        ]

    # H3 cells at resolution 6 with enough true residents
    home6 = pd.Series(h3_parent(h3_to_int(now["home_h3"]), CELL_RESOLUTION)).value_counts()
    big = home6[home6 >= CELL_MIN_RESIDENTS]
    pub6 = residents_df[residents_df["resolution"] == CELL_RESOLUTION]
    pub6 = pd.Series(pub6["residents"].to_numpy(), index=h3_to_int(pub6["h3_cell"]))
    errs = np.array([(pub6.get(c, 0) - t) / t for c, t in big.items()])
    cells = {
        "resolution": CELL_RESOLUTION,
        "min_truth_residents": CELL_MIN_RESIDENTS,
        "cells": len(big),
        "published": int(big.index.isin(pub6.index).sum()),
        "within_10pct": int((np.abs(errs) <= CELL_TOLERANCE).sum()),  # issue 4's target
        "median_abs_rel_error": round(float(np.median(np.abs(errs))), 4) if len(errs) else None,
        "p90_abs_rel_error": round(float(np.quantile(np.abs(errs), 0.9)), 4) if len(errs) else None,
    }

    coarsest = residents_df["resolution"].min()
    covered = residents_df.loc[residents_df["resolution"] == coarsest, "residents"].sum()
    by_res = residents_df.groupby("resolution")["residents"].sum()
    suppression = {
        "truth_residents": len(now),
        "share_not_covered": round(1 - covered / len(now), 4) if len(now) else None,
        "share_not_covered_by_resolution": {
            int(r): round(1 - v / len(now), 4) for r, v in by_res.items()
        },
    }

    privacy = privacy or _privacy_of(run)
    k = (privacy or {}).get("k") or PrivacyParams().k
    flows = _score_flows(truth, homes, run, month, baseline_month, weights)
    checked_flows = [f for f in (flows or {}).get("planted", []) if f["truth"] >= k]
    events = Path(events) if events is not None else None
    mobility, mobility_checks = mobility_scores(truth, run, month, homes, weights, events)
    big_deps = [r for r in deps if r["truth"] >= RESIDENTS_MIN_SUBSCRIBERS]
    result = {
        "month": month,
        "territory": territory,
        # what the scores measure: k alone, or k after noise (its utility)
        "privacy": privacy,
        "residents_by_departement": deps,
        "residents_by_departement_diagnostics": diag_rows,
        "residents_h3": cells,
        "suppression": suppression,
        "residence_shift": flows,
        **mobility,
        "checks": {
            "residents_within_5pct": bool(big_deps)
            and all(
                r["rel_error"] is not None and abs(r["rel_error"]) <= RESIDENTS_TOLERANCE
                for r in big_deps
            ),
            "residents_within_3pct": bool(big_deps)  # issue 4's target
            and all(r["rel_error"] is not None and abs(r["rel_error"]) <= 0.03 for r in big_deps),
            "planted_flows_within_10pct": None
            if not checked_flows
            else all(
                f["rel_error"] is not None and abs(f["rel_error"]) <= FLOW_TOLERANCE
                for f in checked_flows
            ),
            **mobility_checks,
        },
    }
    (run / "validation.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _privacy_of(run: Path) -> dict | None:
    """k and the noise settings of the run, from its manifest (None without one)."""
    path = run / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    return {"k": manifest.get("k"), "noise": manifest.get("noise")}


def _score_flows(
    truth: Path,
    homes: pd.DataFrame,
    run: Path,
    month: str,
    baseline: str | None,
    weights: dict[str, float],
) -> dict | None:
    shift = _read(run / "residence_shift")
    earlier = sorted(m for m in homes["month"].unique() if m < month)
    baseline = baseline or (earlier[-1] if earlier else None)
    diag = _diagnostics_flows(_read(run / "diagnostics"))
    if (shift is None and diag is None) or baseline is None:
        return None
    before = homes[(homes["month"] == baseline) & homes["in_territory"]][
        ["user_id", "departement_code"]
    ]
    after = homes[(homes["month"] == month) & homes["in_territory"]][
        ["user_id", "departement_code"]
    ]
    pairs = before.merge(after, on="user_id", suffixes=("_o", "_d"))
    truth_flows = pairs.groupby(["departement_code_o", "departement_code_d"]).size()
    territory = list(weights)
    pub = flows_by_departement(shift, weights) if shift is not None else pd.Series(dtype=float)
    moves = _read(truth / "moves")
    planted_pairs = set()
    if moves is not None and len(moves):
        mv = moves[moves["to_in_territory"] & moves["to_departement_code"].isin(territory)]
        planted_pairs = set(
            zip(mv["from_departement_code"], mv["to_departement_code"], strict=True)
        )
    planted = []
    for o, d in sorted(planted_pairs):
        t, p = int(truth_flows.get((o, d), 0)), float(pub.get((o, d), 0.0))
        row = {"origin": o, "destination": d, "truth": t, "published_h3": round(p, 1)}
        row["rel_error_h3"] = _rel(p, t)
        if diag is not None:
            q = float(diag.get((o, d), 0.0))
            row |= {"published_diagnostics": q, "rel_error_diagnostics": _rel(q, t)}
        # the département-level table when there is one (H3 flows are cut by k per cell)
        row["published"] = row.get("published_diagnostics", row["published_h3"])
        row["rel_error"] = row.get("rel_error_diagnostics", row["rel_error_h3"])
        planted.append(row)  # the check skips flows of fewer than k true users
    return {
        "baseline_month": baseline,
        "planted": planted,
        "truth_total": int(truth_flows.sum()),
        "published_total": round(float(pub.sum()), 1),
    }


def _sampling_weights(truth: Path, homes: pd.DataFrame, territory: list[str]) -> dict[str, float]:
    """Each département's sampling fraction in the simulation (uniform when unknown): the
    published cells are split between départements in proportion to expected subscribers."""
    users = _read(truth / "users")
    if users is None or "sampling_fraction" not in users.columns:
        return dict.fromkeys(territory, 1.0)
    main = homes[homes["place"] == "home"] if "place" in homes.columns else homes
    frac = main.merge(users, on="user_id").groupby("departement_code")["sampling_fraction"]
    frac = frac.median()
    return {d: float(frac.get(d, frac.median())) for d in territory}


def _diagnostics_flows(diag: pd.DataFrame | None) -> pd.Series | None:
    """(origin, destination) département flows from a ``diagnostics`` table, if it has them."""
    if diag is None:
        return None
    origin = next((c for c in ("origin_code", "origin_departement", "origin") if c in diag), None)
    dest = next(
        (c for c in ("destination_code", "destination_departement", "destination") if c in diag),
        None,
    )
    value = next((c for c in ("users", "shift_users", "movers") if c in diag), None)
    if origin is None or dest is None or value is None:
        return None
    rows = diag[diag[origin].notna() & diag[dest].notna()]
    return rows.groupby([rows[origin].astype(str), rows[dest].astype(str)])[value].sum()


def presence_from_stays(stays: pd.DataFrame, resolution: int = GRID_RESOLUTION) -> pd.DataFrame:
    """True present users per H3 cell and local hour (at the middle of the hour) from the
    truth ``stays`` table: columns ``h3_cell, hour_local, users``."""
    start = stays["start"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    end = stays["end"].dt.tz_convert("Europe/Paris").dt.tz_localize(None)
    first = (start - pd.Timedelta(minutes=30)).dt.ceil("h")
    n = (
        ((end - pd.Timedelta(minutes=30) - first) / pd.Timedelta(hours=1))
        .apply(np.ceil)
        .clip(lower=0)
        .astype(int)
    )
    idx = np.repeat(np.arange(len(stays)), n.to_numpy())
    offset = np.arange(len(idx)) - np.repeat(np.cumsum(n.to_numpy()) - n.to_numpy(), n.to_numpy())
    hour = first.to_numpy()[idx] + offset * np.timedelta64(1, "h")
    cells = stays["h3_cell"].to_numpy()[idx]
    if resolution != GRID_RESOLUTION:
        cells = np.array([h3.cell_to_parent(c, resolution) for c in cells], dtype=object)
    df = pd.DataFrame(
        {"h3_cell": cells, "hour_local": hour, "user_id": stays["user_id"].to_numpy()[idx]}
    )
    return df.groupby(["h3_cell", "hour_local"])["user_id"].nunique().rename("users").reset_index()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``validate`` subcommand."""
    p = subparsers.add_parser(
        "validate", help="score a run's published month against the simulator's truth"
    )
    p.add_argument("--truth", required=True, help="truth folder written by mobiterra simulate")
    p.add_argument("--out", required=True, help="run output folder (holding YYYY-MM/)")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument(
        "--baseline-month", default=None, help="YYYY-MM (default: the truth's previous month)"
    )
    p.add_argument(
        "--events",
        default=None,
        help="the simulated events (default: events/ beside --truth): observable trips",
    )
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``validate``, print a short table; exit 0 (scores are reported, not enforced)."""
    result = validate(
        args.truth, Path(args.out) / args.month, args.month, args.baseline_month, args.events
    )
    print(f"validation of {args.month} -> {Path(args.out) / args.month / 'validation.json'}")
    print(f"{'département':<12}{'truth':>9}{'published':>11}{'rel.err':>9}")
    for r in result["residents_by_departement"]:
        err = "" if r["rel_error"] is None else f"{r['rel_error']:+.1%}"
        print(f"{r['departement_code']:<12}{r['truth']:>9}{r['published']:>11.0f}{err:>9}")
    for f in (result["residence_shift"] or {}).get("planted", []):
        err = "" if f["rel_error"] is None else f"{f['rel_error']:+.1%}"
        label = f"flow {f['origin']}->{f['destination']}"
        print(f"{label:<12}{f['truth']:>9}{f['published']:>11.0f}{err:>9}")
    for r in result["night_presence"].get("by_departement", []):
        err = "" if r["rel_error"] is None else f"{r['rel_error']:+.1%}"
        label = f"night {r['departement_code']}"
        print(f"{label:<12}{r['truth']:>9.0f}{r['published']:>11.0f}{err:>9}")
    for r in result["expansion"].get("by_departement", []):
        err = "" if r["rel_error_truth"] is None else f"{r['rel_error_truth']:+.1%}"
        label = f"est. {r['departement_code']}"
        print(f"{label:<12}{r['truth_population']:>9}{r['estimated']:>11}{err:>9}")
        if r.get("published_departement") is not None and r["reference_moved"] is not None:
            err = f"{r['rel_error_published_reference_moved']:+.1%}"
            label = f"dep.est {r['departement_code']}"
            print(f"{label:<12}{r['reference_moved']:>9}{r['published_departement']:>11}{err:>9}")

    od = result["daily_od"]
    if od.get("flows"):
        within, median = od["flows_within_10pct"], od["median_abs_rel_error"]
        print(f"daily OD flows >= {od['min_truth_users']} users: {within}/{od['flows']} within")
        print(f"  10 %, median |error| {median:.1%}")
        dep = od.get("departements", {})
        if dep.get("flows"):
            print(f"  od_departements: {dep['flows_within_10pct']}/{dep['flows']} within 10 %,")
            print(f"  median |error| {dep['median_abs_rel_error']:.1%}")
    uncovered = result["suppression"]["share_not_covered"]
    print(f"share of truth residents not covered (suppressed): {uncovered}")
    print("checks:", json.dumps(result["checks"]))
    return 0
