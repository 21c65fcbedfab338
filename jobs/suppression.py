"""Primary and secondary (complementary) cell suppression of one count table, in pandas.

Why pandas on one worker, not joins in Spark: secondary suppression is a fixpoint over a
tree (every resolution's cell is the parent of the next one's cells; a flow's parent is
the pair of parents), each round needing the covers of whole subtrees. In Spark that is a
chain of joins per round with a growing lineage; in numpy it is a few ``bincount`` calls
over arrays of at most a few million rows. The gate calls :func:`decide` through
``applyInPandas`` grouped by the period key (trees of different periods are
independent), so presence per hour spreads over the cluster and nothing is collected on
the driver. The result only depends on the rows, never on their order (rows are sorted
first), so it is deterministic.

The rule (DESIGN.md "No differencing leaks"), for counts that add up over a tree:
for every published node X, the residual ``X - sum of its maximal published
descendants`` (the part of X nobody can attribute to a published finer row) is 0 or >= k,
and so is ``X - sum of its published children``. Any difference an attacker forms from X
and disjoint published descendants is a sum of such residuals of published nodes, each 0
or >= k, so it is 0 or >= k too. Margins (a total of another table vs. the parts of this
one, e.g. residents of a cell vs. the residence-shift flows into it) are extra parents of
the parts and obey the same rule; parts of an unpublished total are suppressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PRIMARY = "primary"
SECONDARY = "secondary"
# Rules of the gate; tests switch one off to show the matching attack then succeeds.
RULE_PRIMARY = "primary"  # rows below k
RULE_SECONDARY = "secondary"  # parent vs. children across resolutions
RULE_MARGINS = "margins"  # totals of another table vs. parts of this one
RULE_SCHEMA = "schema"  # only declared output columns leave
ALL_RULES = frozenset({RULE_PRIMARY, RULE_SECONDARY, RULE_MARGINS, RULE_SCHEMA})

_RES_SHIFT = 52
_KEEP = np.int64(~(0xF << _RES_SHIFT))
_MAX_ROUNDS = 10_000


def h3_parent_np(cells: np.ndarray, res: np.ndarray | int) -> np.ndarray:
    """Parent of int64 H3 cells at ``res`` (same bit arithmetic as h3cols.h3_parent)."""
    res = np.asarray(res, dtype=np.int64)
    digits = np.left_shift(np.int64(1), 3 * (15 - res)) - 1
    return (np.asarray(cells, dtype=np.int64) & _KEEP) | np.left_shift(res, _RES_SHIFT) | digits


@dataclass(frozen=True)
class MarginTotals:
    """Published totals of another table that the parts of this table add up to (<=).

    ``totals`` has ``resolution``, ``cell`` (int64 H3) and ``value`` and ``published``;
    each part row whose ``on`` column is that cell (at the same resolution, restricted to
    rows matching ``where``) is one of its parts.
    """

    totals: pd.DataFrame
    on: str
    where: dict = field(default_factory=dict)


@dataclass
class _Tree:
    n: int
    level: np.ndarray  # index into the sorted resolutions
    parent: np.ndarray  # row index of the parent (next coarser resolution), -1 if none
    anc: np.ndarray  # (n, levels): ancestor at each coarser level, itself at its own
    val: np.ndarray  # (n, columns) float, NaN = no value
    by_level: list[np.ndarray]


def _lookup(keys: pd.DataFrame, table: pd.DataFrame, on: list[str]) -> np.ndarray:
    """Row position in ``table`` of each row of ``keys`` (-1 when absent)."""
    right = table[on].copy()
    right["_pos"] = np.arange(len(table))
    got = keys[on].merge(right, on=on, how="left")["_pos"]
    return got.fillna(-1).to_numpy(dtype=np.int64)


def _build_tree(df: pd.DataFrame, cells: Sequence[str], values: Sequence[str]) -> _Tree:
    levels = np.sort(df["resolution"].unique())
    n = len(df)
    level = np.searchsorted(levels, df["resolution"].to_numpy())
    keys = pd.DataFrame({"resolution": df["resolution"].to_numpy(), "_grp": df["_grp"]})
    for c in cells:
        keys[c] = df[c].to_numpy(dtype=np.int64)
    up = pd.DataFrame({"_grp": df["_grp"].to_numpy()})
    parent_res = levels[np.maximum(level - 1, 0)]
    up["resolution"] = parent_res
    for c in cells:
        up[c] = h3_parent_np(keys[c].to_numpy(), parent_res)
    parent = _lookup(up, keys, ["resolution", *cells, "_grp"])
    parent[level == 0] = -1
    anc = np.full((n, len(levels)), -1, dtype=np.int64)
    anc[np.arange(n), level] = np.arange(n)
    for lv in range(len(levels) - 1, 0, -1):
        cur = anc[:, lv]
        ok = cur >= 0
        anc[ok, lv - 1] = parent[cur[ok]]
    val = df[list(values)].to_numpy(dtype=np.float64, na_value=np.nan)
    by_level = [np.flatnonzero(level == lv) for lv in range(len(levels))]
    return _Tree(n, level, parent, anc, val, by_level)


def _covers(t: _Tree, pub: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K = sum of maximal published descendants, P1 = sum of published children, and
    the nearest published strict ancestor of every node."""
    valz = np.nan_to_num(t.val)
    kk = np.zeros_like(valz)
    p1 = np.zeros_like(valz)
    for lv in range(len(t.by_level) - 1, 0, -1):
        idx = t.by_level[lv]
        p = t.parent[idx]
        ok = p >= 0
        idx, p = idx[ok], p[ok]
        cover = np.where(pub[idx, None], valz[idx], kk[idx])
        for c in range(valz.shape[1]):
            kk[:, c] += np.bincount(p, weights=cover[:, c], minlength=t.n)
            p1[:, c] += np.bincount(p, weights=valz[idx, c] * pub[idx], minlength=t.n)
    npa = np.full(t.n, -1, dtype=np.int64)
    for lv in range(1, len(t.by_level)):
        idx = t.by_level[lv]
        p = t.parent[idx]
        ok = p >= 0
        npa[idx[ok]] = np.where(pub[p[ok]], p[ok], npa[p[ok]])
    return kk, p1, npa


def _in_band(residual: np.ndarray, k: int) -> np.ndarray:
    return (residual >= 1) & (residual < k)


def _choose(
    t: _Tree,
    pub: np.ndarray,
    kk: np.ndarray,
    npa: np.ndarray,
    root_level: int,
    constraint_of_root: np.ndarray,  # (n,) constraint id of each root node, -1 if none
    one_level: np.ndarray,  # (constraints,) True: the children difference is the leak
    need: np.ndarray,  # (constraints, columns) users still missing to reach k
) -> np.ndarray:
    """One published node to suppress per violated constraint (least damaging first)."""
    valz = np.nan_to_num(t.val)
    top_ok = (npa < 0) | (t.level[np.maximum(npa, 0)] < root_level)
    cand = np.flatnonzero(pub & (t.level >= root_level) & top_ok)
    roots = t.anc[cand, root_level]
    cons = np.where(roots >= 0, constraint_of_root[np.maximum(roots, 0)], -1)
    keep = cons >= 0
    cand, cons = cand[keep], cons[keep]
    # a children difference is fixed by any published child: only children qualify
    keep = ~one_level[cons] | (t.level[cand] == root_level)
    cand, cons = cand[keep], cons[keep]
    gain = valz[cand] - kk[cand]
    fixes = np.all((need[cons] <= 0) | (gain >= need[cons]), axis=1) | one_level[cons]
    users = valz[cand, 0]
    # the smallest published row that fixes the residual alone; else the one adding most
    order = np.lexsort((cand, users, np.where(fixes, users, -gain[:, 0]), ~fixes, cons))
    first = np.r_[True, cons[order][1:] != cons[order][:-1]] if len(order) else order
    return cand[order][first]


def _group_ids(df: pd.DataFrame, group: Sequence[str]) -> np.ndarray:
    """One int64 id per distinct combination of the ``group`` columns (0 without any),
    column by column (a MultiIndex factorize of a million rows took 0.8 s)."""
    ids = np.zeros(len(df), dtype=np.int64)
    for col in group:
        codes, uniques = pd.factorize(df[col], use_na_sentinel=True)
        ids = pd.factorize(ids * (len(uniques) + 1) + (codes + 1))[0].astype(np.int64)
    return ids


def decide(
    df: pd.DataFrame,
    *,
    k: int,
    cells: Sequence[str],
    users: str,
    counts: Sequence[str] = (),
    group: Sequence[str] = (),
    margins: Sequence[MarginTotals] = (),
    rules: frozenset[str] = ALL_RULES,
) -> pd.Series:
    """The suppression of every row: None (published), "primary" or "secondary".

    ``df`` holds every resolution of one table: ``resolution``, the int64 ``cells``
    columns, the ``group`` (period) columns, the distinct-user count ``users`` and other
    ``counts`` (trips, rounded estimates; null = no value) that no difference may expose
    either. Returned in ``df``'s index.
    """
    order = df.sort_values(["resolution", *cells, *group], kind="stable").index
    data = df.loc[order].reset_index(drop=True)
    data["_grp"] = _group_ids(data, group)
    values = [users, *counts]
    t = _build_tree(data, cells, values)
    status = np.full(t.n, None, dtype=object)
    if RULE_PRIMARY in rules:
        low = np.any(np.nan_to_num(t.val, nan=np.inf) < k, axis=1)
        status[low] = PRIMARY
    pub = status == None  # noqa: E711 (elementwise on an object array)

    # margins: per part, the position of its total; parts of unpublished totals go
    mparts = []
    for m in margins if RULE_MARGINS in rules else ():
        sel = np.ones(t.n, dtype=bool)
        for col, value in m.where.items():
            sel &= (data[col] == value).to_numpy()
        keys = pd.DataFrame({"resolution": data["resolution"], "cell": data[m.on]})
        pos = _lookup(keys, m.totals.reset_index(drop=True), ["resolution", "cell"])
        pos[~sel] = -1
        tot_pub = m.totals["published"].to_numpy(dtype=bool)
        orphan = sel & pub & ((pos < 0) | ~tot_pub[np.maximum(pos, 0)])
        status[orphan] = SECONDARY
        pub &= ~orphan
        mparts.append((pos, m.totals["value"].to_numpy(dtype=np.float64), tot_pub))

    for _ in range(_MAX_ROUNDS):
        kk, p1, npa = _covers(t, pub)
        # (root level, constraint of each root, one-level?, need) per kind of constraint
        found = []
        if RULE_SECONDARY in rules:
            has_val = ~np.isnan(t.val)
            # a residual with nothing subtracted is the published value itself: primary's
            # business, so suppressing descendants always ends a violation (no upward
            # propagation is ever needed: with every descendant hidden, residual = value)
            r_star = np.where(has_val & (kk != 0), t.val - kk, 0)
            r_one = np.where(has_val & (p1 != 0), t.val - p1, 0)
            bad1 = _in_band(r_one, k).any(axis=1) & pub
            bad = (bad1 | _in_band(r_star, k).any(axis=1)) & pub
            bad &= t.level < len(t.by_level) - 1  # the finest rows have no children
            if bad.any():
                lv = t.level[bad].max()  # deepest parents first: their fixes may cascade up
                cons = np.flatnonzero(bad & (t.level == lv))
                cid = np.full(t.n, -1, dtype=np.int64)
                cid[cons] = np.arange(len(cons))
                root_c = np.where(t.parent >= 0, cid[np.maximum(t.parent, 0)], -1)
                root_c[t.level != lv + 1] = -1
                resid = np.where(bad1[cons, None], r_one[cons], r_star[cons])
                need = np.where(_in_band(resid, k), k - resid, 0)
                found.append((lv + 1, root_c, bad1[cons], need))
        for pos, tot, tot_pub in mparts:
            valz = np.nan_to_num(t.val[:, 0])
            sel = pos >= 0
            cover = np.where(pub, valz, kk[:, 0])
            km = np.bincount(pos[sel], weights=cover[sel], minlength=len(tot))
            m1 = np.bincount(pos[sel], weights=(valz * pub)[sel], minlength=len(tot))
            bad1 = _in_band(tot - m1, k) & tot_pub & (m1 != 0)
            bad = (bad1 | _in_band(tot - km, k) & (km != 0)) & tot_pub
            if bad.any():
                cons = np.flatnonzero(bad)
                cid = np.full(len(tot), -1, dtype=np.int64)
                cid[cons] = np.arange(len(cons))
                root_c = np.where(pos >= 0, cid[np.maximum(pos, 0)], -1)
                lv = t.level[root_c >= 0].max()  # deepest margins first
                root_c[t.level != lv] = -1
                resid = np.where(bad1[cons], (tot - m1)[cons], (tot - km)[cons])[:, None]
                need = np.zeros((len(cons), t.val.shape[1]))
                need[:, :1] = np.where(_in_band(resid, k), k - resid, 0)
                found.append((lv, root_c, bad1[cons], need))
        if not found:
            break
        # fix the deepest violations first; the rest are rechecked next round
        deepest = max(f[0] for f in found)
        chosen = []
        for root_level, root_c, one, need in found:
            if root_level == deepest:
                chosen.append(_choose(t, pub, kk, npa, root_level, root_c, one, need))
        pick = np.unique(np.concatenate(chosen)) if chosen else np.array([], dtype=np.int64)
        if len(pick) == 0:
            raise RuntimeError("secondary suppression cannot make progress (totals below k?)")
        status[pick] = SECONDARY
        pub[pick] = False
    else:
        raise RuntimeError(f"secondary suppression did not converge in {_MAX_ROUNDS} rounds")
    return pd.Series(status, index=order).reindex(df.index)
