"""The attacker: tries to re-derive suppressed values from published tables.

Written independently of the gate (it only sees what a planner downloads) so the tests
check the gate's promises, not its code. Every function returns the leaks it found as
a DataFrame (empty = nothing found); :func:`attack_month` runs all of them on a month
folder of Parquet tables (``residents/``, ``residence_shift/``, ``present_population/``,
``od_trips/``, ``od_home_work/``, ``od_departements/``), optionally with the baseline
month's folder for cross-release attacks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mobiterra import columns as C
from mobiterra.h3tree import as_int_cells, nearest_ancestor
from mobiterra.h3tree import parent_np as _parent

# table -> (cell columns, count columns an attacker subtracts)
TABLES = {
    "residents": ((C.H3_CELL,), (C.RESIDENTS, C.RESIDENTS_EST)),
    "residence_shift": ((C.ORIGIN_CELL, C.DESTINATION_CELL), (C.USERS,)),
    "present_population": ((C.H3_CELL,), (C.USERS, C.USERS_EST)),
    "od_trips": ((C.ORIGIN_CELL, C.DESTINATION_CELL), (C.USERS, C.TRIPS)),
    "od_home_work": ((C.ORIGIN_CELL, C.DESTINATION_CELL), (C.USERS, C.TRIPS)),
    "od_departements": ((), (C.USERS, C.TRIPS)),  # no H3 cell, no resolution
}
_PERIOD = (C.PERIOD_START, C.PERIOD)


def _shape(df: pd.DataFrame, table: str):
    cells, counts = TABLES[table]
    counts = [c for c in counts if c in df.columns]
    group = [c for c in _PERIOD if c in df.columns]
    return as_int_cells(df, cells), list(cells), counts, group


def small_values(df: pd.DataFrame, table: str, k: int) -> pd.DataFrame:
    """(a) Published counts or estimates in [1, k)."""
    df, _, counts, _ = _shape(df, table)
    values = df[counts].astype(float)
    return df[((values >= 1) & (values < k)).any(axis=1)]


def hierarchy_leaks(df: pd.DataFrame, table: str, k: int, deep: bool = True) -> pd.DataFrame:
    """(b) Differencing across resolutions: for each published parent, parent minus its
    published children (and, with ``deep``, minus its maximal published descendants at
    any finer resolution) in [1, k)."""
    df, cells, counts, group = _shape(df, table)
    df = df.reset_index(drop=True)
    levels = sorted(df[C.RESOLUTION].unique())
    nearest, nearest_res = nearest_ancestor(df, cells, group)
    leaks = []
    for i, r in enumerate(levels[:-1]):
        child_res = levels[i + 1]
        is_child = (df[C.RESOLUTION] == child_res) & (nearest >= 0)
        is_child &= nearest_res == r
        sums = {"children": df[is_child].groupby(nearest[is_child])[counts].sum()}
        if deep:
            mpd = nearest_res == r
            sums["descendants"] = df[mpd].groupby(nearest[mpd])[counts].sum()
        for how, s in sums.items():
            parents = df.loc[s.index]
            diff = parents[counts].astype(float) - s.astype(float)
            hit = ((diff >= 1) & (diff < k)).any(axis=1)
            if hit.any():
                leaks.append(parents[hit].assign(_attack=how, _difference=diff[hit].min(axis=1)))
    return pd.concat(leaks) if leaks else df.iloc[:0]


def margin_leaks(
    totals: pd.DataFrame, total_col: str, parts: pd.DataFrame, on: str, k: int, where=None
) -> pd.DataFrame:
    """(c, d) Differencing across tables: a published total (residents of a cell) minus the
    published parts into it (shift flows), also for a total's unpublished children:
    parent - published children - parts of the unpublished ones."""
    totals = as_int_cells(totals, (C.H3_CELL,))
    parts = as_int_cells(parts, (C.ORIGIN_CELL, C.DESTINATION_CELL))
    for col, value in (where or {}).items():
        parts = parts[parts[col] == value]
    into = parts.groupby([C.RESOLUTION, on])[C.USERS].sum().rename("_parts").reset_index()
    into = into.rename(columns={on: C.H3_CELL})
    t = totals.merge(into, on=[C.RESOLUTION, C.H3_CELL], how="left").fillna({"_parts": 0})
    diff = t[total_col] - t["_parts"]
    leaks = [t[(diff >= 1) & (diff < k) & (t["_parts"] > 0)].assign(_attack="total-parts")]
    levels = sorted(totals[C.RESOLUTION].unique())
    for r, fine in zip(levels[:-1], levels[1:], strict=False):
        # children not in the published totals: the attacker only knows their parts
        kids = into[into[C.RESOLUTION] == fine]
        known = totals[totals[C.RESOLUTION] == fine][[C.H3_CELL, total_col]]
        kids = kids.merge(known, on=C.H3_CELL, how="left")
        hidden = kids[kids[total_col].isna()]
        hidden = hidden.assign(_p=_parent(hidden[C.H3_CELL], r))
        pub = known.assign(_p=_parent(known[C.H3_CELL], r))
        sub = (
            pub.groupby("_p")[total_col]
            .sum()
            .add(hidden.groupby("_p")["_parts"].sum(), fill_value=0)
        )
        par = totals[totals[C.RESOLUTION] == r].set_index(C.H3_CELL)[total_col]
        d = par - sub.reindex(par.index).fillna(0)
        d = d[d.index.isin(hidden["_p"].unique())]
        bad = d[(d >= 1) & (d < k)]
        leaks.append(
            pd.DataFrame({C.RESOLUTION: r, C.H3_CELL: bad.index, "_difference": bad.values}).assign(
                _attack="parent-children-parts"
            )
        )
    return pd.concat(leaks, ignore_index=True)


def departement_leaks(
    od_departements: pd.DataFrame, od_trips: pd.DataFrame, departement_of, k: int
) -> pd.DataFrame:
    """(f) A day's trips between two départements minus that day's od_trips pairs lying in
    them (the maximal ones: no published ancestor pair lying in them too): trips left in
    [1, k) were made by fewer than k users. ``departement_of``: int64 H3 cells -> their
    département codes (public geography; None where unknown)."""
    od = as_int_cells(od_trips[od_trips[C.PERIOD] == "day"], (C.ORIGIN_CELL, C.DESTINATION_CELL))
    od = od.assign(
        _o=list(departement_of(od[C.ORIGIN_CELL].to_numpy())),
        _d=list(departement_of(od[C.DESTINATION_CELL].to_numpy())),
    )
    od = od[od["_o"].notna() & od["_d"].notna()].reset_index(drop=True)
    group = [C.PERIOD_START, C.PERIOD, "_o", "_d"]
    nearest, _ = nearest_ancestor(od, (C.ORIGIN_CELL, C.DESTINATION_CELL), group)
    inside = (
        od[nearest.to_numpy() < 0]
        .groupby(["_o", "_d", C.PERIOD_START])[C.TRIPS]
        .sum()
        .rename("_inside")
        .reset_index()
        .rename(columns={"_o": C.ORIGIN_CODE, "_d": C.DESTINATION_CODE})
    )
    keys = [C.ORIGIN_CODE, C.DESTINATION_CODE]
    inside = inside.astype({k: object for k in keys})  # empty: float columns otherwise
    rows = (
        od_departements.astype({k: object for k in keys})
        .merge(inside, on=[C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START], how="left")
        .fillna({"_inside": 0})
    )
    diff = rows[C.TRIPS] - rows["_inside"]
    # assign before filtering: a Series assigned to an empty frame would bring its index
    return rows.assign(_difference=diff)[(diff >= 1) & (diff < k)]


def departements_by_geography(cells, finest: int = 8) -> list:
    """Département code of each int64 H3 cell lying entirely in one département (every
    descendant at ``finest``, the resolution trips are placed at, in a commune of it;
    the attacker's geography), else None."""
    import h3.api.basic_int as h3i

    from mobiterra import degurba

    uniq = np.unique(np.asarray(cells, dtype=np.int64))
    kids = [
        np.asarray(h3i.cell_to_children(int(c), finest) if h3i.get_resolution(int(c)) < finest
                   else [int(c)], dtype=np.int64)
        for c in uniq
    ]  # fmt: skip
    flat = np.concatenate(kids) if kids else np.zeros(0, dtype=np.int64)
    communes = degurba.commune_classes().set_index("commune_code")["departement_code"]
    dep = degurba.commune_of_cells(flat).reindex(flat).map(communes).to_numpy(dtype=object)
    out, at = {}, 0
    for c, k in zip(uniq, kids, strict=True):
        mine = dep[at : at + len(k)]
        at += len(k)
        first = mine[0] if len(mine) else None
        out[int(c)] = first if first is not None and all(m == first for m in mine) else None
    return [out[int(c)] for c in np.asarray(cells, dtype=np.int64)]


_TOKEN = re.compile(rb"[0-9A-Za-z_-]+")  # the characters ids are made of


def _holds_any(blob: bytes, needles: set[bytes], lengths: list[int]) -> bool:
    """Whether any needle occurs in ``blob`` inside a run of id characters."""
    for token in _TOKEN.findall(blob):
        n = len(token)
        for size in lengths:
            if size > n:
                break
            if any(token[i : i + size] in needles for i in range(n - size + 1)):
                return True
    return False


def _blobs(path: Path) -> list[bytes]:
    """What an attacker reads in a file: a Parquet file's values (its pages are
    compressed, a byte search would miss them), any other file's bytes."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return [
            "\n".join(str(v) for v in col.to_pylist() if v is not None).encode()
            for col in table.columns
        ] + ["\n".join(table.column_names).encode()]
    return [path.read_bytes()]


def id_leaks(folder: Path, ids) -> list[str]:
    """(e) Files under ``folder`` containing any of ``ids`` (raw or keyed): every value of
    Parquet files, the bytes of every other file (CSV, GeoJSON, GeoPackage, SVG, HTML)."""
    needles = {i.encode() for i in ids if i}
    lengths = sorted({len(n) for n in needles})
    found = []
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and any(_holds_any(b, needles, lengths) for b in _blobs(f)):
            found.append(str(f))
    return found


def read_month(month_dir: Path) -> dict[str, pd.DataFrame]:
    """The published tables of a month folder (those present)."""
    out = {}
    for name in TABLES:
        path = Path(month_dir) / name
        if path.exists():
            out[name] = pd.read_parquet(path)
    return out


def attack_month(month_dir: Path, k: int, baseline_dir: Path | None = None) -> dict[str, int]:
    """Run (a)-(f) on a month folder; {attack: leaks found} (all zero = the gate held)."""
    tables = read_month(month_dir)
    found = {}
    for name, df in tables.items():
        found[f"{name}:small_values"] = len(small_values(df, name, k))
        if C.RESOLUTION in df.columns:
            found[f"{name}:hierarchy"] = len(hierarchy_leaks(df, name, k))
    if "od_departements" in tables and "od_trips" in tables:
        found["departements-vs-od-trips"] = len(
            departement_leaks(
                tables["od_departements"], tables["od_trips"], departements_by_geography, k
            )
        )
    if "residents" in tables and "residence_shift" in tables:
        found["residents-vs-shift"] = len(
            margin_leaks(
                tables["residents"], C.RESIDENTS, tables["residence_shift"], C.DESTINATION_CELL, k
            )
        )
    if "residents" in tables and "od_home_work" in tables:
        # each resident has at most one home -> work flow out of their home cell
        found["residents-vs-home-work"] = len(
            margin_leaks(tables["residents"], C.RESIDENTS, tables["od_home_work"], C.ORIGIN_CELL, k)
        )
    if baseline_dir is not None and "residence_shift" in tables:
        base = read_month(baseline_dir).get("residents")
        if base is not None:
            found["baseline-residents-vs-shift"] = len(
                margin_leaks(base, C.RESIDENTS, tables["residence_shift"], C.ORIGIN_CELL, k)
            )
    return found
