"""Territorial units of the diagnostics as sets of users, and their gating.

Users are grouped into atoms: one per home cell for a month's residents, one per pair
(baseline home cell, home cell) for the residence shift, ``-1`` standing for "no home that
month". Each atom carries the code of every unit holding it (commune, EPCI, département,
density class, small-towns group, France); jobs.territorial_gate decides which units'
counts may be published. The table itself is assembled in jobs.diagnostics.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import territorial_gate as tg
from jobs.suppression import h3_parent_np
from mobiterra import columns as C
from mobiterra import degurba
from mobiterra.geo.grid import h3_to_int

USERS = C.USERS

FRANCE_CODE = "FR"
BLOCK_NONE = -1  # no home that month (atoms table)
# Territorial units of the residents gate, with the cost multiplier of suppressing one of
# their sets (jobs.territorial_gate.SetKind.protect): the gate hides communes and EPCIs
# before it touches a département or a class, and the national total only as a last resort.
RESIDENT_UNITS = {
    "france": math.inf,
    "departement": 20.0,
    "density_class": 20.0,
    "small_towns": 20.0,
    "epci": 1.0,
    "commune": 1.0,
}
# Units of the residence shift (flows, movers in and out): département flows are the ones
# planners (and the validation) read, then the small-towns group (the headline indicator),
# then the density classes.
SHIFT_UNITS = {"departement": 3.0, "small_towns": 2.0, "density_class": 1.0}
# Residents totals the shift is gated against (margins): the shift's own units and France.
MARGIN_UNITS = ("france", "departement", "density_class", "small_towns")
BASE = "b"  # atoms: baseline home cell (int64, BLOCK_NONE without one)
CURRENT = "c"  # atoms: this month's home cell


def pair_counts(homes_df: DataFrame, baseline_homes_df: DataFrame | None) -> DataFrame:
    """Users per (baseline home cell, home cell), -1 for "no home that month".

    One row per pair of finest-resolution cells: small (at most the number of users)."""
    now_df = homes_df.select(C.USER_KEY, F.col(C.HOME_H3).alias(CURRENT))
    if baseline_homes_df is None:
        joined_df = now_df.withColumn(BASE, F.lit(None).cast("long"))
    else:
        before_df = baseline_homes_df.select(C.USER_KEY, F.col(C.HOME_H3).alias(BASE))
        joined_df = now_df.join(before_df, on=C.USER_KEY, how="full")
    return (
        joined_df.select(
            F.coalesce(F.col(BASE), F.lit(BLOCK_NONE)).alias(BASE),
            F.coalesce(F.col(CURRENT), F.lit(BLOCK_NONE)).alias(CURRENT),
        )
        .groupBy(BASE, CURRENT)
        .agg(F.count(F.lit(1)).alias(USERS))
    )


def unit_codes(cells: np.ndarray, cell_commune: pd.Series, communes: pd.DataFrame) -> pd.DataFrame:
    """The code of every territorial unit holding each home cell (NA: in none).

    ``cell_commune``: commune code per cell (mobiterra.degurba.commune_of_cells);
    ``communes``: mobiterra.degurba.commune_classes, indexed by ``commune_code``. A cell
    whose commune is not in the table (overseas) is only in ``france``."""
    com = cell_commune.reindex(cells).to_numpy(dtype=object)
    known = pd.Series(com).isin(communes.index).to_numpy()
    attrs = communes.reindex(np.where(known, com, None))
    small = attrs["small_town_or_rural"].eq(True).to_numpy()
    return pd.DataFrame(
        {
            "france": FRANCE_CODE,
            "departement": attrs["departement_code"].to_numpy(dtype=object),
            "epci": attrs["epci_code"].to_numpy(dtype=object),
            "commune": np.where(known, com, None),
            "density_class": attrs["density_class"].to_numpy(dtype=object),
            "size_class": attrs["size_class"].to_numpy(dtype=object),
            "small_towns": np.where(small, degurba.SMALL_TOWNS, None),
        }
    )


def _h3_fixed(name: str, cells: np.ndarray, published: pd.DataFrame, col: str) -> list:
    """Published H3 cells of a residents table as fixed sets over atoms (one per resolution)."""
    out = []
    for res, rows in published.groupby(C.RESOLUTION):
        ids = h3_to_int(rows[col])
        codes = np.where(cells >= 0, h3_parent_np(np.maximum(cells, 0), int(res)), -1)
        out.append(tg.FixedSets(f"{name}@{res}", codes.astype(np.int64), ids))
    return out


def _h3_pair_fixed(b: np.ndarray, c: np.ndarray, published: pd.DataFrame) -> list:
    """Published residence-shift flows as fixed sets over (baseline, current) atoms."""
    out = []
    both = (b >= 0) & (c >= 0)
    for res, rows in published.groupby(C.RESOLUTION):
        o = np.where(both, h3_parent_np(np.maximum(b, 0), int(res)), -1)
        d = np.where(both, h3_parent_np(np.maximum(c, 0), int(res)), -1)
        pub = pd.DataFrame(
            {"o": h3_to_int(rows[C.ORIGIN_CELL]), "d": h3_to_int(rows[C.DESTINATION_CELL])}
        )
        keys = pd.MultiIndex.from_arrays([o, d])
        codes = np.where(both, pd.factorize(keys)[0], -1)
        published_codes = codes[keys.isin(pd.MultiIndex.from_frame(pub)) & both]
        out.append(tg.FixedSets(f"residence_shift@{res}", codes, np.unique(published_codes)))
    return out


def _margin_fixed(units: pd.DataFrame, side: str, decision: tg.Decision) -> list:
    """Published residents totals (one month) as fixed sets over pair atoms."""
    out = []
    for unit in MARGIN_UNITS:
        sets = decision.sets[decision.sets["kind"] == f"residents:{unit}"]
        published = set(sets.loc[sets["status"].isna(), "code"])
        codes, uniq = pd.factorize(units[f"{side}_{unit}"], sort=True)
        pub = np.flatnonzero(np.isin(np.asarray(uniq, dtype=object), list(published)))
        out.append(tg.FixedSets(f"{side}:{unit}", codes.astype(np.int64), pub))
    return out


def decide_residents(
    cells_users: pd.DataFrame,
    cell_commune: pd.Series,
    communes: pd.DataFrame,
    k: int,
    h3_residents: pd.DataFrame | None,
) -> tg.Decision:
    """Gate the residents of every territory for one month.

    ``cells_users``: ``cell`` (int64 home cell), ``users``; ``h3_residents``: the published
    H3 ``residents`` table of that month (its cells are fixed sets the territories must not
    be differenced against), or None."""
    cells = cells_users["cell"].to_numpy(dtype=np.int64)
    atoms = unit_codes(cells, cell_commune, communes).assign(users=cells_users[USERS].to_numpy())
    kinds = [tg.SetKind(f"residents:{u}", u, p) for u, p in RESIDENT_UNITS.items()]
    covers = [] if h3_residents is None else _h3_fixed("residents", cells, h3_residents, C.H3_CELL)
    return tg.decide(atoms, kinds, k, covers=covers)


def shift_atoms(
    pairs: pd.DataFrame, cell_commune: pd.Series, communes: pd.DataFrame
) -> pd.DataFrame:
    """Pair atoms with the unit codes of both homes and the codes of the shift sets."""
    b = pairs[BASE].to_numpy(dtype=np.int64)
    c = pairs[CURRENT].to_numpy(dtype=np.int64)
    ub = unit_codes(b, cell_commune, communes)
    uc = unit_codes(c, cell_commune, communes)
    ub.loc[b < 0, :] = None  # no home in the baseline month: in no baseline territory
    uc.loc[c < 0, :] = None
    atoms = pd.concat([ub.add_prefix("b_"), uc.add_prefix("c_")], axis=1)
    atoms[USERS] = pairs[USERS].to_numpy()
    for unit in SHIFT_UNITS:
        o, d = atoms[f"b_{unit}"], atoms[f"c_{unit}"]
        if unit == "small_towns":  # a group and the rest: in and out only
            moved = (b >= 0) & (c >= 0) & (o.isna() != d.isna())
            atoms[f"in:{unit}"] = np.where(moved & d.notna(), degurba.SMALL_TOWNS, None)
            atoms[f"out:{unit}"] = np.where(moved & o.notna(), degurba.SMALL_TOWNS, None)
            continue
        moved = o.notna() & d.notna() & (o != d)
        atoms[f"flow:{unit}"] = np.where(moved, o.astype(str) + ">" + d.astype(str), None)
        atoms[f"in:{unit}"] = np.where(moved, d, None)
        atoms[f"out:{unit}"] = np.where(moved, o, None)
    return atoms


def decide_shift(
    atoms: pd.DataFrame,
    k: int,
    residents: tg.Decision,
    baseline_residents: tg.Decision,
    h3_shift: pd.DataFrame | None,
    b: np.ndarray,
    c: np.ndarray,
) -> tg.Decision:
    """Gate the residence-shift sets (flows, movers in / out) against the published residents
    totals of both months and the published H3 residence-shift flows."""
    kinds = []
    for unit, protect in SHIFT_UNITS.items():
        names = ("in", "out") if unit == "small_towns" else ("flow", "in", "out")
        kinds += [tg.SetKind(f"{n}:{unit}", f"{n}:{unit}", protect) for n in names]
    # This month's totals are audited exactly with the shift; the baseline month is another
    # release: its totals minus the flows out of them must not be in [1, k) (direct rule),
    # and month-over-month differences are changes (docs/privacy.md "Two monthly releases").
    fixed = _margin_fixed(atoms, "c", residents)
    totals = _margin_fixed(atoms, "b", baseline_residents)
    covers = [] if h3_shift is None else _h3_pair_fixed(b, c, h3_shift)
    return tg.decide(atoms, kinds, k, fixed=fixed, covers=covers, totals=totals)


def cells_users(pairs: pd.DataFrame, side: str) -> pd.DataFrame:
    """Users per home cell of one side of the pairs (``cell``, ``users``)."""
    rows = pairs[pairs[side] >= 0]
    return rows.groupby(side, as_index=False)[USERS].sum().rename(columns={side: "cell"})
