"""The publication gate for territorial counts (communes, EPCI, départements, classes).

Territories are not an H3 hierarchy: a département is not a sum of H3 cells, communes of
one EPCI are spread over several density classes, and all of them are published beside the
H3 tables. So the rule of jobs.suppression ("parent minus published children is 0 or >= k")
is replaced here by its general form, checked exactly with linear algebra:

*No linear combination of published numbers may give the count of a group of users in
[1, k).*

Model. The users are split into **atoms** (one row per home cell, or per pair of home cells
for the residence shift), each with its user count. A published number is the user count of
a **set** of atoms: a candidate territorial set (kind + code, e.g. ``departement 89``), or a
**fixed** set already published elsewhere (a residents total of the same month that the
residence-shift sets are gated against). Atoms in exactly the same published sets form a
**block**; every published number is a sum of blocks, so everything an attacker can compute
by adding and subtracting published numbers is ``x · v`` for some ``x`` in the row space of
the set x block incidence matrix ``A``. A group of users counted in [1, k) is a union of
blocks each below k ("small"). A family of published sets is **safe** when no non-zero
vector of the row space is supported on small blocks only — equivalently ``rank(A) ==
rank(A restricted to the large blocks)`` — which is exact for sums and differences of any
length ("département − Σ published communes", chains through EPCIs and classes). With
fixed sets, the subspace of such vectors may not grow beyond what the fixed sets alone
span (what the other release already gives away is not this table's doing). The rule is
a little stricter than the sentence above (it also refuses a published difference of two
small groups); inference from inequalities (bounds) is not covered.

H3 tables published beside (``covers``): every candidate set minus the published H3 cells
lying entirely inside it must be 0 or >= k (else the set is not published), and no set
failing that rule may follow from the published sets. Chains through H3 cells that
straddle territories are not audited (measured and discussed in docs/privacy.md).
Totals of another release (``totals``: the baseline month's residents for the shift): a
total minus the published candidate sets inside it must be 0 or >= k (direct rule).

Algorithm: primary suppression (sets below k) and the direct rule against the covers; then
sets are **added** one kind at a time, most protected kinds first (France, départements,
classes, then EPCIs and communes), biggest first, by bisection: a batch is published if the
family stays safe, else it is split. Safety is monotone (fewer published sets never expose
more), so the result is a maximal safe family for that order. Each check peels pivots that
cannot expose anything (a published set that is one large block; a large block in one set)
and runs an SVD on the rest: on the sample (a few hundred blocks) a month takes a few
seconds (62 checks); at full scale most communes are published and peel away, but this
is not benchmarked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIMARY = "primary"
SECONDARY = "secondary"
_RANK_TOL = 1e-12  # relative, as numpy's matrix_rank (eps x size) with some slack


@dataclass(frozen=True)
class SetKind:
    """A family of candidate sets: the atoms' ``column`` holds each atom's set code (NA:
    the atom is in no set of this kind). ``protect`` multiplies the cost of suppressing a
    set of this kind (``inf``: never suppressed, e.g. the national total)."""

    name: str
    column: str
    protect: float = 1.0


@dataclass
class FixedSets:
    """Sets published by another table: ``codes`` (one int64 per atom, -1 = none) and the
    codes that are published. Never suppressed here; they only constrain the candidates."""

    name: str
    codes: np.ndarray
    published: np.ndarray

    def published_mask(self) -> np.ndarray:
        return (self.codes >= 0) & np.isin(self.codes, self.published)


@dataclass
class Decision:
    """Status of every candidate set: ``sets`` has ``kind, code, users, status`` (status
    None = published, "primary", "secondary"); ``rounds``: safety checks run;
    ``cover_suppressed``: sets the direct rule against the cover tables kept out."""

    sets: pd.DataFrame
    rounds: int = 0
    cover_suppressed: int = 0


def _encode(atoms: pd.DataFrame, kinds: list[SetKind]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per kind: int codes per atom (-1 = none) and the original code of each int."""
    codes = np.full((len(atoms), len(kinds)), -1, dtype=np.int64)
    labels = []
    for j, kind in enumerate(kinds):
        col = atoms[kind.column]
        ints, uniq = pd.factorize(col, sort=True)
        codes[:, j] = ints
        labels.append(np.asarray(uniq, dtype=object))
    return codes, labels


def _peel(rows: dict[int, set[int]], large: np.ndarray) -> dict[int, set[int]]:
    """Remove pivots through which no exposure can go (see the module docstring).

    A row that is a single large column, or a large column in a single row, adds one to the
    rank of both A and A_large: drop that row and that column (subtracting the row from the
    others). Returns the remaining rows; their columns are the blocks left to examine."""
    rows = {r: set(c) for r, c in rows.items()}
    col_rows: dict[int, set[int]] = {}
    for r, cols in rows.items():
        for c in cols:
            col_rows.setdefault(c, set()).add(r)
    stack_r, stack_c = list(rows), list(col_rows)
    while stack_r or stack_c:
        if stack_r:
            r = stack_r.pop()
            cols = rows.get(r)
            if cols is None:
                continue
            if not cols:
                del rows[r]
            elif len(cols) == 1 and large[next(iter(cols))]:
                (c,) = cols
                del rows[r]
                for r2 in col_rows.pop(c, set()) - {r}:
                    rows[r2].discard(c)
                    stack_r.append(r2)
            continue
        c = stack_c.pop()
        rs = col_rows.get(c)
        if rs is None:
            continue
        if not rs:
            del col_rows[c]
        elif len(rs) == 1 and large[c]:
            (r,) = rs
            del col_rows[c]
            for c2 in rows.pop(r, set()) - {c}:
                col_rows[c2].discard(r)
                stack_c.append(c2)
    return rows


def small_dimension(rows: dict[int, set[int]], values: np.ndarray, k: int) -> int:
    """Dimension of the published combinations that vanish on every large block (value >= k):
    0 means no sum or difference of published numbers isolates any group of small blocks.

    ``rows`` maps each published set to its blocks; ``values`` are the blocks' users."""
    large = values >= k
    rows = _peel(rows, large)
    cols = sorted({c for cs in rows.values() for c in cs})
    if not cols or all(large[c] for c in cols):
        return 0
    pos = {c: i for i, c in enumerate(cols)}
    a = np.zeros((len(rows), len(cols)))
    for i, cs in enumerate(rows.values()):
        a[i, [pos[c] for c in cs]] = 1.0
    is_large = np.array([large[c] for c in cols])
    return _rank(a) - _rank(a[:, is_large])


def _rank(a: np.ndarray) -> int:
    if a.size == 0:
        return 0
    sv = np.linalg.svd(a, compute_uv=False)
    return int((sv > _RANK_TOL * max(a.shape) * sv[0]).sum()) if len(sv) and sv[0] > 0 else 0


def _blocks(
    users: np.ndarray, codes: np.ndarray, pub: list[np.ndarray], fixed: list[FixedSets]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signature of each block, block of each atom, users per block)."""
    cols = []
    for j in range(codes.shape[1]):
        on = codes[:, j] >= 0
        if len(pub[j]):
            on &= pub[j][np.maximum(codes[:, j], 0)]
        cols.append(np.where(on, codes[:, j], -1))
    cols += [np.where(f.published_mask(), f.codes, -1) for f in fixed]
    sig = np.column_stack(cols) if cols else np.zeros((len(users), 0), dtype=np.int64)
    uniq, inverse = unique_rows(sig)
    return uniq, inverse, np.bincount(inverse, weights=users, minlength=len(uniq))


def unique_rows(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(sig, axis=0, return_inverse=True)`` of an int matrix, by factorizing
    one column at a time (hashing) and sorting only the distinct rows: np.unique's
    row-wise sort of every atom was 3 s of the 8 s diagnostics stage at 10 M events."""
    n, m = sig.shape
    if n == 0 or m == 0:
        return np.unique(sig, axis=0, return_inverse=True)[0], np.zeros(n, dtype=np.int64)
    group = np.zeros(n, dtype=np.int64)
    for j in range(m):
        col, _ = pd.factorize(sig[:, j])
        group, _ = pd.factorize(group * (col.max() + 1) + col)
    first = np.zeros(group.max() + 1, dtype=np.int64)
    first[group[::-1]] = np.arange(n - 1, -1, -1)  # first row of each group
    reps = sig[first]
    order = np.lexsort(reps.T[::-1])  # lexicographic, first column first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return reps[order], rank[group]


def _rows(
    sig: np.ndarray, keys: list | None = None, columns: range | None = None
) -> dict[int, set[int]]:
    """Published set -> its blocks, from the block signatures (one id per column and code).

    ``keys``, when given, receives the (column, code) of each row in order; ``columns``
    restricts to some signature columns (e.g. the fixed sets only)."""
    rows: dict[int, set[int]] = {}
    for j in columns if columns is not None else range(sig.shape[1]):
        has = np.flatnonzero(sig[:, j] >= 0)
        if not len(has):
            continue
        groups = pd.Series(has).groupby(sig[has, j]).indices
        for code, idx in groups.items():
            rows[len(rows)] = set(has[idx].tolist())
            if keys is not None:
                keys.append((j, int(code)))
    return rows


def cover_residuals(
    w: np.ndarray, codes: np.ndarray, labels: list, covers: list[FixedSets]
) -> list[np.ndarray]:
    """Per kind and code: users of the set under no published cover cell lying entirely
    inside it (the set minus its maximal published parts among ``covers``)."""
    out = []
    for j in range(codes.shape[1]):
        cj = codes[:, j]
        covered = np.zeros(len(w), dtype=bool)
        for f in covers:
            has = f.codes >= 0
            if not has.any():
                continue
            g = pd.DataFrame({"cell": f.codes[has], "key": cj[has]}).groupby("cell")["key"]
            lo, hi = g.transform("min").to_numpy(), g.transform("max").to_numpy()
            inside = np.zeros(len(w), dtype=bool)
            inside[has] = (lo == hi) & (lo >= 0)
            covered |= f.published_mask() & inside
        on = cj >= 0
        out.append(np.bincount(cj[on], weights=(w * ~covered)[on], minlength=len(labels[j])))
    return out


def decide(
    atoms: pd.DataFrame,
    kinds: list[SetKind],
    k: int,
    *,
    users: str = "users",
    fixed: list[FixedSets] = (),
    covers: list[FixedSets] = (),
    totals: list[FixedSets] = (),
) -> Decision:
    """Publish or suppress every candidate set of ``kinds`` over ``atoms``.

    ``atoms``: one row per atom with the user count ``users`` and one code column per kind.
    ``fixed``: sets already published by other tables, audited exactly with the candidates
    (territorial totals of another month, say). ``covers``: H3 cells published by another
    table; a candidate set minus the published cover cells lying entirely inside it must
    not be in [1, k), and no such set may follow from the published ones (the direct
    rule; chains through cells straddling territories are not audited, docs/privacy.md).
    ``totals``: published totals of another release that candidate sets lie inside (the
    baseline month's residents for the residence shift): a total minus the published
    candidate sets inside it must not be in [1, k) (direct rule, as jobs.gate's margins).
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    w = atoms[users].to_numpy(dtype=np.float64)
    codes, labels = _encode(atoms, kinds)
    values = [
        np.bincount(codes[codes[:, j] >= 0, j], weights=w[codes[:, j] >= 0], minlength=len(lab))
        for j, lab in enumerate(labels)
    ]
    status = [np.where(v < k, PRIMARY, None).astype(object) for v in values]
    residual = cover_residuals(w, codes, labels, list(covers))
    against_cover = []  # sets the direct rule forbids: never published, never derivable
    for j in range(len(kinds)):
        bad = (status[j] == None) & (residual[j] >= 1) & (residual[j] < k)  # noqa: E711
        status[j][bad] = SECONDARY
        against_cover += [(j, int(c)) for c in np.flatnonzero(bad)]
    audit = _Audit(w, codes, list(fixed), k, against_cover, list(totals))
    pub = [np.zeros(len(lab), dtype=bool) for lab in labels]
    # most protected kinds first, then the biggest sets: a set that would expose a small
    # group given what is already published is left out (and every set after it is
    # checked with it left out)
    order = sorted(range(len(kinds)), key=lambda j: (-kinds[j].protect, j))
    for j in order:
        todo = [c for c in np.argsort(-values[j], kind="stable") if status[j][c] is None]
        audit.add(pub, j, todo)
    for j in range(len(kinds)):
        status[j][(status[j] == None) & ~pub[j]] = SECONDARY  # noqa: E711
    frames = [
        pd.DataFrame(
            {
                "kind": kd.name,
                "code": labels[j],
                "users": values[j].astype(np.int64),
                "status": status[j],
            }
        )  # fmt: skip
        for j, kd in enumerate(kinds)
    ]
    return Decision(
        sets=pd.concat(frames, ignore_index=True),
        rounds=audit.checks,
        cover_suppressed=len(against_cover),
    )


class _Audit:
    """Whether a family of published sets is safe; adds candidates by bisection."""

    def __init__(self, w, codes, fixed, k, hidden, totals=()):
        self.w, self.codes, self.fixed, self.k, self.hidden = w, codes, fixed, k, hidden
        self.totals = list(totals)
        self.checks = 0
        # per total layer and kind: the total holding each candidate set entirely, or -1
        self.holder = []
        for f in self.totals:
            per_kind = []
            for j in range(codes.shape[1]):
                on = (codes[:, j] >= 0) & (f.codes >= 0)
                n = int(codes[:, j].max()) + 1 if len(codes) else 0
                lo = np.full(n, np.iinfo(np.int64).max)
                hi = np.full(n, -1)
                np.minimum.at(lo, codes[on, j], f.codes[on])
                np.maximum.at(hi, codes[on, j], f.codes[on])
                # a set with an atom outside every total (-1) is in no total
                outside = np.zeros(n, dtype=bool)
                off = (codes[:, j] >= 0) & (f.codes < 0)
                outside[codes[off, j]] = True
                per_kind.append(np.where((lo == hi) & ~outside, hi, -1))
            self.holder.append(per_kind)

    def totals_safe(self, pub: list[np.ndarray]) -> bool:
        """Each published total minus the published candidate sets inside it: 0 or >= k."""
        for f, per_kind in zip(self.totals, self.holder, strict=True):
            covered = np.zeros(len(self.w), dtype=bool)
            for j, holder in enumerate(per_kind):
                cj = self.codes[:, j]
                on = cj >= 0
                ok = np.zeros(len(self.w), dtype=bool)
                ok[on] = pub[j][cj[on]] & (holder[cj[on]] >= 0)
                covered |= ok
            has = f.published_mask()
            if not has.any():
                continue
            resid = np.bincount(f.codes[has], weights=(self.w * ~covered)[has])
            if np.any((resid >= 1) & (resid < self.k)):
                return False
        return True

    def safe(self, pub: list[np.ndarray]) -> bool:
        """No combination isolating small groups beyond those the fixed sets alone give
        (same blocks), and no set the direct rule forbids follows from the published."""
        self.checks += 1
        if not self.totals_safe(pub):
            return False
        sig, inverse, bval = _blocks(self.w, self.codes, pub, self.fixed)
        n = self.codes.shape[1]
        everything = small_dimension(_rows(sig), bval, self.k)
        if everything:
            fixed_only = small_dimension(_rows(sig, columns=range(n, sig.shape[1])), bval, self.k)
            if everything > fixed_only:
                return False
        return not any(self._given(sig, inverse, j, code) for j, code in self.hidden)

    def _given(self, sig, inverse, j, code) -> bool:
        """Whether the hidden set (j, code) is a combination of the published sets."""
        inside = np.bincount(inverse, weights=self.codes[:, j] == code, minlength=len(sig))
        total = np.bincount(inverse, minlength=len(sig))
        if np.any((inside > 0) & (inside < total)):
            return False  # it cuts a block: no published combination gives it
        rows = _rows(sig)
        a = np.zeros((len(rows), len(sig)))
        for i, cols in enumerate(rows.values()):
            a[i, list(cols)] = 1.0
        x = (inside > 0).astype(float)
        if not len(rows):
            return False
        y, *_ = np.linalg.lstsq(a.T, x, rcond=None)
        return bool(np.abs(a.T @ y - x).max() < 1e-6)

    def add(self, pub: list[np.ndarray], j: int, todo: list[int]) -> None:
        """Publish as many of ``todo`` (codes of kind j) as is safe, in order."""
        if not todo:
            return
        pub[j][todo] = True
        if self.safe(pub):
            return
        pub[j][todo] = False
        if len(todo) == 1:
            return
        half = (len(todo) + 1) // 2
        self.add(pub, j, todo[:half])
        self.add(pub, j, todo[half:])
