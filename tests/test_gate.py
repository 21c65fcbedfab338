"""The publication gate: hand-made cases, Spark wiring, noise and property tests."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from jobs import gate, noise
from jobs.adaptive import adaptive_flows
from jobs.suppression import PRIMARY, SECONDARY, MarginTotals, decide
from mobiterra import attacks, schemas
from mobiterra import columns as C

K = 20
PARENT = h3.str_to_int(h3.latlng_to_cell(48.8566, 2.3522, 7))
KIDS = sorted(h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(PARENT), 8))


def _residents(parent: int, kids: list[int]) -> pd.DataFrame:
    rows = [(7, PARENT, parent)] + [(8, c, v) for c, v in zip(KIDS, kids, strict=False)]
    return pd.DataFrame(rows, columns=[C.RESOLUTION, C.H3_CELL, C.RESIDENTS])


def _decide(df, **kw):
    return decide(df, k=K, cells=[C.H3_CELL], users=C.RESIDENTS, **kw).tolist()


def test_smallest_sibling_hides_a_primary_suppression():
    # 100 = 70 + 25 + 5: the 5 goes (primary); 100 - 70 - 25 = 5 would give it back,
    # so the smallest published sibling (25) goes too.
    got = _decide(_residents(100, [70, 25, 5]))
    assert got == [None, None, SECONDARY, PRIMARY]


def test_no_secondary_when_the_hidden_part_reaches_k():
    assert _decide(_residents(100, [60, 15, 5, 20])) == [None, None, PRIMARY, PRIMARY, None]


def test_fully_covered_child_does_not_help_go_deeper():
    # res 6 -> 7 -> 8: at res 7 the parent X has a child A (fully covered by two published
    # children) and a hidden child of 5. Suppressing A alone adds nothing to the hidden
    # part; the gate must end with parent - maximal published descendants >= k.
    top = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(PARENT), 6))
    sib = sorted(h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(top), 7))
    other = next(c for c in sib if c != PARENT)
    rows = [(6, top, 105), (7, PARENT, 100), (7, other, 5)]
    rows += [(8, KIDS[0], 50), (8, KIDS[1], 50)]
    df = pd.DataFrame(rows, columns=[C.RESOLUTION, C.H3_CELL, C.RESIDENTS])
    status = decide(df, k=K, cells=[C.H3_CELL], users=C.RESIDENTS)
    pub = df[status.isna()]
    assert attacks.hierarchy_leaks(pub, "residents", K).empty
    assert pub[C.RESIDENTS].sum() > 0 and status.iloc[0] is None


def test_trips_and_estimates_below_k_suppress_the_row():
    df = _residents(100, [70, 30]).assign(est=[200.0, 150.0, 10.0])
    assert _decide(df, counts=["est"])[2] == PRIMARY
    df = df.assign(est=[np.nan] * 3)  # no population reference: not a value
    assert _decide(df, counts=["est"]) == [None, None, None]


def test_margin_hides_flows_into_a_secondarily_suppressed_cell():
    res = _residents(100, [70, 25, 5])
    status = decide(res, k=K, cells=[C.H3_CELL], users=C.RESIDENTS)
    totals = res.assign(cell=res[C.H3_CELL], value=res[C.RESIDENTS], published=status.isna())
    origin = h3.str_to_int(h3.latlng_to_cell(47.798, 3.567, 8))
    # 25 users moved into KIDS[1] (secondarily suppressed); 100 - 70 - 25 = 5 otherwise
    shift = pd.DataFrame(
        [(8, origin, KIDS[1], 25), (8, origin, KIDS[0], 70)],
        columns=[C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.USERS],
    )
    cells = [C.ORIGIN_CELL, C.DESTINATION_CELL]
    got = decide(shift, k=K, cells=cells, users=C.USERS, margins=[MarginTotals(totals, cells[1])])
    assert got.tolist() == [SECONDARY, None]


def test_decision_ignores_row_order():
    df = _residents(300, [70, 25, 5, 40, 60, 19, 81])
    a = decide(df, k=K, cells=[C.H3_CELL], users=C.RESIDENTS)
    shuffled = df.sample(frac=1, random_state=3)
    b = decide(shuffled, k=K, cells=[C.H3_CELL], users=C.RESIDENTS)
    assert a.tolist() == b.reindex(df.index).tolist()


# --- Spark wiring ---------------------------------------------------------------------


def test_apply_publishes_declared_schema_and_marks_every_row(spark):
    counts_df = spark.createDataFrame(_residents(100, [70, 25, 5])).withColumn(
        C.RESIDENTS_EST, F.col(C.RESIDENTS) * 2.6
    )
    published_df, marked_df = gate.apply(counts_df, gate.RESIDENTS, K)
    declared = [(f.name, f.dataType) for f in schemas.RESIDENTS]
    assert [(f.name, f.dataType) for f in published_df.schema] == declared
    rows = published_df.collect()
    assert [(r[C.H3_CELL], r[C.RESIDENTS], r[C.RESIDENTS_EST]) for r in rows] == [
        (h3.int_to_str(PARENT), 100, 260),
        (h3.int_to_str(KIDS[0]), 70, 182),
    ]
    stats = gate.suppression_stats(marked_df, gate.RESIDENTS)
    assert stats["rows_published"] == 2
    assert stats["rows_suppressed_primary"] == 1 and stats["rows_suppressed_secondary"] == 1
    assert stats["user_count_suppressed_secondary"] == 25


def test_apply_decides_each_period_apart(spark):
    from datetime import datetime

    pdf = _residents(100, [70, 25, 5]).rename(columns={C.RESIDENTS: C.USERS})
    a = pdf.assign(**{C.PERIOD_START: datetime(2020, 3, 2, 9), C.PERIOD: "hour"})
    b = pdf.assign(**{C.PERIOD_START: datetime(2020, 3, 2, 10), C.PERIOD: "hour"})
    b.loc[3, C.USERS] = 30  # in this hour nothing is small
    counts_df = spark.createDataFrame(pd.concat([a, b]))
    published_df, _ = gate.apply(counts_df, gate.PRESENT_POPULATION, K)
    got = published_df.groupBy(C.PERIOD_START).count().orderBy(C.PERIOD_START).collect()
    assert [r["count"] for r in got] == [2, 4]


def test_apply_names_missing_columns(spark):
    df = spark.createDataFrame([(8, 1)], "resolution int, h3_cell long")
    with pytest.raises(ValueError, match=r"lack \['residents'\].*got columns"):
        gate.apply(df, gate.RESIDENTS, K)


# --- noise ------------------------------------------------------------------------------


def test_bound_contributions_keeps_at_most_c_rows_per_user(spark):
    df = spark.createDataFrame([(f"u{i % 3}", i) for i in range(30)], "user_key string, x int")
    bounded = noise.bound_contributions(df, "user_key", 4, seed=7)
    assert max(r["count"] for r in bounded.groupBy("user_key").count().collect()) == 4
    again = noise.bound_contributions(df, "user_key", 4, seed=7)
    assert sorted(bounded.collect()) == sorted(again.collect())


def test_noise_is_seeded_laplace_and_thresholded_by_the_gate(spark):
    cells = [h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(PARENT), 10)]
    pdf = pd.DataFrame({C.RESOLUTION: 10, C.H3_CELL: cells, C.RESIDENTS: 1000})
    counts_df = spark.createDataFrame(pdf)
    noisy = noise.with_noise(
        counts_df, gate.RESIDENTS, 0.44, "laplace", seed="s", max_contributions=1
    )
    values = np.array([r[C.RESIDENTS] for r in noisy.collect()], dtype=float)
    again = [
        r[C.RESIDENTS]
        for r in noise.with_noise(counts_df, gate.RESIDENTS, 0.44, "laplace", "s").collect()
    ]
    assert values.tolist() == again  # deterministic with the seed
    # Laplace(b = 1 / 0.44): mean absolute deviation b
    assert abs(np.mean(np.abs(values - 1000)) - 1 / 0.44) < 0.5
    gauss = noise.with_noise(counts_df, gate.RESIDENTS, 0.44, "gaussian", seed="s", delta=1e-6)
    sd = np.std([r[C.RESIDENTS] for r in gauss.collect()])
    assert (
        0.7 * noise.noise_scale("gaussian", 0.44, 1, 1e-6)
        < sd
        < 1.3 * noise.noise_scale("gaussian", 0.44, 1, 1e-6)
    )
    small = spark.createDataFrame(pdf.assign(**{C.RESIDENTS: 20}))
    noisy_small = noise.with_noise(small, gate.RESIDENTS, 0.44, "laplace", seed="s")
    published_df, _ = gate.apply(noisy_small, gate.RESIDENTS, K)
    assert published_df.filter(F.col(C.RESIDENTS) < K).count() == 0
    assert 0 < published_df.count() < len(cells)  # noise decided, not the raw 20


# --- adaptive resolution ----------------------------------------------------------------


def test_adaptive_layer_shows_a_flow_below_k_at_every_fine_pair():
    # 120 people Paris -> Yonne, spread over 8 hexagon pairs of 15: published at res 7.
    yonne = h3.str_to_int(h3.latlng_to_cell(47.798, 3.567, 7))
    ykids = sorted(h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(yonne), 8))
    rows = [(7, PARENT, yonne, 120)] + [(8, KIDS[i], ykids[i], 15) for i in range(7)]
    rows.append((8, KIDS[0], ykids[6], 15))
    cols = [C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.USERS]
    df = pd.DataFrame(rows, columns=cols)
    status = decide(df, k=K, cells=cols[1:3], users=C.USERS)
    layer = adaptive_flows(df[status.isna()], tuple(cols[1:3]), (C.USERS,))
    assert layer.to_dict("records") == [
        {C.RESOLUTION: 7, C.ORIGIN_CELL: PARENT, C.DESTINATION_CELL: yonne, C.USERS: 120}
    ]


# --- properties ---------------------------------------------------------------------------

TOP = h3.str_to_int(h3.latlng_to_cell(48.8566, 2.3522, 6))
LEAVES = sorted(
    h3.str_to_int(c) for c in h3.cell_to_children(h3.int_to_str(TOP), 8)
)  # 49 res-8 cells


def _tree(leaf_counts: dict[int, int]) -> pd.DataFrame:
    rows = []
    for r in (6, 7, 8):
        agg: dict[int, int] = {}
        for i, v in leaf_counts.items():
            p = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(LEAVES[i]), r))
            agg[p] = agg.get(p, 0) + v
        rows += [(r, c, v) for c, v in agg.items() if v > 0]
    return pd.DataFrame(rows, columns=[C.RESOLUTION, C.H3_CELL, C.RESIDENTS])


skewed = st.one_of(st.integers(1, 19), st.integers(20, 60), st.integers(1, 400))
leaf_maps = st.dictionaries(st.integers(0, 48), skewed, min_size=1, max_size=30)


@settings(deadline=None, max_examples=150)
@given(leaf_maps, st.sampled_from([5, 10, 20]))
def test_property_no_small_value_and_no_differencing(leaf_counts, k):
    df = _tree(leaf_counts)
    status = decide(df, k=k, cells=[C.H3_CELL], users=C.RESIDENTS)
    pub = df[status.isna()]
    assert attacks.small_values(pub, "residents", k).empty
    assert attacks.hierarchy_leaks(pub, "residents", k, deep=True).empty
    # suppression never increases totals, never alters a value
    totals = df.groupby(C.RESOLUTION)[C.RESIDENTS].sum()
    shown = pub.groupby(C.RESOLUTION)[C.RESIDENTS].sum().reindex(totals.index, fill_value=0)
    assert (shown <= totals).all()
    assert (pub[C.RESIDENTS] == df.loc[pub.index, C.RESIDENTS]).all()
    # the adaptive layer is disjoint: it adds up to the top total when that is published
    if status.iloc[0] is None:
        layer = adaptive_flows(pub, (C.H3_CELL,), (C.RESIDENTS,))
        assert layer[C.RESIDENTS].sum() == df.iloc[0][C.RESIDENTS]
        assert (layer[C.RESIDENTS] >= k).all()


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 48), st.integers(0, 48)), min_size=1, max_size=400))
def test_property_distinct_users_over_overlapping_cells(user_cells):
    # each user is present in one or two cells in the hour: parents <= sum of children
    rows = []
    for r in (6, 7, 8):
        seen: dict[int, set] = {}
        for u, (a, b) in enumerate(user_cells):
            for i in {a, b}:
                p = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(LEAVES[i]), r))
                seen.setdefault(p, set()).add(u)
        rows += [(r, c, len(s)) for c, s in seen.items()]
    df = pd.DataFrame(rows, columns=[C.RESOLUTION, C.H3_CELL, C.USERS])
    status = decide(df, k=K, cells=[C.H3_CELL], users=C.USERS)
    pub = df[status.isna()]
    assert attacks.small_values(pub, "present_population", K).empty
    assert attacks.hierarchy_leaks(pub, "present_population", K, deep=True).empty


@pytest.mark.parametrize("res", [np.int32(5), np.int64(7), 8])
def test_numpy_parents_match_h3(res):
    from jobs.suppression import h3_parent_np
    from mobiterra.h3tree import parent_np

    cells = np.array(LEAVES[:5], dtype=np.int64)
    expected = [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), int(res))) for c in cells]
    assert parent_np(cells, res).tolist() == expected
    assert h3_parent_np(cells, np.full(5, res, dtype=np.int32)).tolist() == expected


def test_apply_matches_decide_on_every_row_of_every_period(spark):
    """apply() leaves rows under k out of Python and decides buckets of periods per call:
    the marks must equal decide() on the whole table."""
    import synthetic_counts as S

    counts = S.count_presence(S.homes(3000, seed=5), seed=5)
    _, marked_df = gate.apply(spark.createDataFrame(counts), gate.PRESENT_POPULATION, K)
    counts[C.PERIOD_START] = counts[C.PERIOD_START].astype("datetime64[ns]")
    keys = [C.RESOLUTION, C.H3_CELL, C.PERIOD_START]
    got = marked_df.toPandas().set_index(keys)[gate.SUPPRESSION].sort_index()
    rounded = counts.assign(**{C.USERS_EST: np.floor(counts[C.USERS_EST] + 0.5)})  # HALF_UP
    expected = decide(
        rounded, k=K, cells=[C.H3_CELL], users=C.USERS, counts=[C.USERS_EST],
        group=[C.PERIOD_START, C.PERIOD],
    )  # fmt: skip
    expected = pd.Series(expected.to_numpy(), index=pd.MultiIndex.from_frame(counts[keys]))
    assert (counts[C.USERS] < K).sum() > len(counts) / 2  # most rows skip Python
    assert (expected == SECONDARY).any()
    assert got.fillna("published").equals(expected.sort_index().fillna("published"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["hour", "day", None]), st.integers(0, 3)), max_size=40))
def test_group_ids_split_rows_as_their_period_values_do(rows):
    from jobs.suppression import _group_ids

    df = pd.DataFrame(rows, columns=["period", "period_start"])
    ids = _group_ids(df, ["period", "period_start"])
    assert len(ids) == len(df)
    same_values = df.astype(str).agg("|".join, axis=1).to_numpy()
    for i in range(len(df)):  # equal ids exactly where the (period, start) values are equal
        assert ((ids == ids[i]) == (same_values == same_values[i])).all()
    assert (_group_ids(df, []) == 0).all()
