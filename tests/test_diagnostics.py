"""Territorial diagnostics and their gate: hand cases, attacks by subtraction, the stage."""

from __future__ import annotations

import itertools
import math

import h3
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import diagnostics as D
from jobs import diagnostics_gate as G
from jobs import territorial_gate as tg
from mobiterra.config import DegurbaParams

K = 20


# --- an attacker independent of the gate's block machinery --------------------------------


def published_matrix(atoms: pd.DataFrame, decision: tg.Decision, kinds, fixed=()) -> np.ndarray:
    """Atom-level incidence of every published number (candidates and fixed sets)."""
    rows = []
    pub = decision.sets[decision.sets["status"].isna()]
    for kind in kinds:
        for code in pub.loc[pub["kind"] == kind.name, "code"]:
            rows.append((atoms[kind.column] == code).to_numpy(dtype=float))
    for f in fixed:
        for code in f.published:
            rows.append((f.codes == code).astype(float))
    return np.array(rows).reshape(len(rows), len(atoms))


def in_span(matrix: np.ndarray, x: np.ndarray) -> bool:
    if matrix.size == 0:
        return False
    r = np.linalg.matrix_rank(matrix)
    return np.linalg.matrix_rank(np.vstack([matrix, x])) == r


def recoverable_small_groups(atoms, decision, kinds, fixed=(), users="users") -> list[tuple]:
    """Every group of atoms with 1..k-1 users whose count follows from the published numbers
    (any linear combination: sums and differences across units), that the fixed tables alone
    do not already give."""
    w = atoms[users].to_numpy()
    everything = published_matrix(atoms, decision, kinds, fixed)
    fixed_only = published_matrix(atoms, decision, [], fixed)
    found = []
    for n in range(1, len(atoms) + 1):
        for group in itertools.combinations(range(len(atoms)), n):
            value = w[list(group)].sum()
            if not 1 <= value < K:
                continue
            x = np.zeros(len(atoms))
            x[list(group)] = 1
            if in_span(everything, x) and not in_span(fixed_only, x):
                found.append(group)
    return found


def naive(atoms: pd.DataFrame, kinds) -> tg.Decision:
    """Primary suppression only: what a gate without differencing rules would publish."""
    sets = []
    for kind in kinds:
        v = atoms.groupby(kind.column)["users"].sum()
        sets.append(
            pd.DataFrame(
                {"kind": kind.name, "code": v.index, "users": v.to_numpy(),
                 "status": np.where(v.to_numpy() < K, tg.PRIMARY, None)}
            )
        )  # fmt: skip
    return tg.Decision(sets=pd.concat(sets, ignore_index=True))


# --- the gate on hand cases ------------------------------------------------------------

GEO = [
    tg.SetKind("commune", "commune"),
    tg.SetKind("departement", "dep", 20),
    tg.SetKind("france", "fr", math.inf),
]


def test_departement_minus_its_published_communes_is_not_a_leak():
    atoms = pd.DataFrame(
        {
            "users": [25, 5, 30, 40, 22],
            "commune": ["a", "b", "c", "d", "e"],
            "dep": ["D", "D", "D", "E", "E"],
            "fr": "FR",
        }
    )
    assert recoverable_small_groups(atoms, naive(atoms, GEO), GEO) == [(1,)]  # D - a - c = 5
    decision = tg.decide(atoms, GEO, K)
    status = decision.sets.set_index("code")["status"]
    assert status["b"] == tg.PRIMARY and status["a"] == tg.SECONDARY  # the smaller sibling
    assert status[["c", "d", "e", "D", "E", "FR"]].isna().all()
    assert recoverable_small_groups(atoms, decision, GEO) == []


def test_crossing_units_epci_across_departements_and_classes():
    # EPCI X spans D and E; class y cuts across both: the naive table leaks through chains
    atoms = pd.DataFrame(
        {
            "users": [30, 4, 26, 3, 35, 28, 7],
            "commune": list("abcdefg"),
            "dep": ["D", "D", "D", "E", "E", "E", "E"],
            "epci": ["X", "X", "Y", "X", "X", "Z", "Z"],
            "cls": ["u", "r", "r", "r", "u", "u", "r"],
            "fr": "FR",
        }
    )
    kinds = [*GEO, tg.SetKind("epci", "epci"), tg.SetKind("class", "cls", 20)]
    assert recoverable_small_groups(atoms, naive(atoms, kinds), kinds)
    decision = tg.decide(atoms, kinds, K)
    assert recoverable_small_groups(atoms, decision, kinds) == []
    pub = decision.sets[decision.sets["status"].isna()]
    # the national and département totals and the classes survive; communes and the EPCI
    # crossing the two départements give way
    assert {"D", "E", "FR", "u", "r"} <= set(pub["code"])
    assert decision.sets.set_index("code").loc["X", "status"] == tg.SECONDARY


def test_h3_cells_straddling_communes_cannot_be_used_to_isolate_users():
    # four home cells; communes A = {0, 1}, B = {2, 3}; published H3: cell 0 alone and a
    # coarse cell {1, 2} straddling the border. A - cell0 = 6 users of cell 1.
    atoms = pd.DataFrame(
        {"users": [30, 6, 25, 30], "commune": ["A", "A", "B", "B"], "dep": "D", "fr": "FR"}
    )
    fixed = [
        tg.FixedSets("h3@8", np.array([10, 11, 12, 13]), np.array([10, 13])),
        tg.FixedSets("h3@7", np.array([70, 70, 70, 71]), np.array([70])),
    ]
    kinds = GEO[:2]
    assert recoverable_small_groups(atoms, naive(atoms, kinds), kinds, fixed)
    decision = tg.decide(atoms, kinds, K, fixed=fixed)
    assert recoverable_small_groups(atoms, decision, kinds, fixed) == []
    assert decision.sets.set_index("code").loc["A", "status"] == tg.SECONDARY


def test_nothing_below_k_and_big_tables_untouched():
    atoms = pd.DataFrame(
        {"users": [100, 200, 300], "commune": ["a", "b", "c"], "dep": ["D", "D", "E"], "fr": "FR"}
    )
    decision = tg.decide(atoms, GEO, K)
    assert decision.sets["status"].isna().all() and decision.rounds == 3  # one per kind
    with pytest.raises(ValueError, match="k must be"):
        tg.decide(atoms, GEO, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(1, 45),  # users
            st.sampled_from("abcd"),  # commune-ish
            st.sampled_from("DE"),  # département-ish
            st.sampled_from("uv"),  # class crossing both
            st.sampled_from([0, 1, 2]),  # an H3 cell crossing all of them
        ),
        min_size=2,
        max_size=8,
    )
)
def test_property_no_small_group_follows_from_the_published_numbers(rows):
    atoms = pd.DataFrame(rows, columns=["users", "commune", "dep", "cls", "h3"])
    # communes nest in départements: make the code carry its département
    atoms["commune"] = atoms["dep"] + atoms["commune"]
    atoms["fr"] = "FR"
    kinds = [*GEO, tg.SetKind("class", "cls", 20)]
    h3_codes = atoms["h3"].to_numpy(dtype=np.int64)
    h3_values = np.bincount(h3_codes, weights=atoms["users"].to_numpy())
    fixed = [tg.FixedSets("h3", h3_codes, np.flatnonzero(h3_values >= K))]
    decision = tg.decide(atoms, kinds, K, fixed=fixed)
    assert recoverable_small_groups(atoms, decision, kinds, fixed) == []
    pub = decision.sets[decision.sets["status"].isna()]
    assert (pub["users"] >= K).all()


# --- the table on hand communes ------------------------------------------------------

COMMUNES = pd.DataFrame(
    {
        "commune_code": ["75101", "75102", "89024", "89001", "89002", "15138"],
        "commune_name": ["Paris 1er", "Paris 2e", "Auxerre", "Village A", "Village B", "Murat"],
        "departement_code": ["75", "75", "89", "89", "89", "15"],
        "departement_name": ["Paris", "Paris", "Yonne", "Yonne", "Yonne", "Cantal"],
        "epci_code": ["200054781", "200054781", "200067114", "200067114", "E2", "E3"],
        "epci_name": ["Grand Paris", "Grand Paris", "Auxerrois", "Auxerrois", "CC 2", "CC 3"],
        "population": [16000, 21000, 34000, 500, 800, 1900],
        "density_class": ["city", "city", "town", "rural", "rural", "rural"],
        "size_class": ["ge_200k", "ge_200k", "10k_50k", "lt_2k", "lt_2k", "lt_2k"],
        "small_town_or_rural": [False, False, False, True, True, True],
    }
).set_index("commune_code")
# one home cell per commune, plus several cells in Paris 1er (ids are arbitrary here)
CELL_COMMUNE = pd.Series(
    ["75101", "75101", "75101", "75102", "89024", "89001", "89002", "15138"],
    index=np.arange(1, 9, dtype=np.int64),
)


def hand_pairs(lost_yonne: int = 25, new_auxerre: int = 22) -> pd.DataFrame:
    """(baseline cell, cell, users): Paris stayers, 30 Parisians to the Yonne villages,
    25 to Cantal, stayers elsewhere, users seen in one month only (new, lost)."""
    rows = [
        (1, 1, 120), (2, 2, 90), (3, 3, 60), (4, 4, 150),  # Paris stayers
        (1, 6, 12), (2, 7, 11), (3, 6, 7),  # Paris -> Yonne villages (30)
        (4, 8, 25),  # Paris 2e -> Murat
        (5, 5, 80), (6, 6, 40), (7, 7, 45), (8, 8, 60),  # stayers elsewhere
        (-1, 5, new_auxerre), (1, -1, 30), (6, -1, lost_yonne),  # new users, lost users
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=[G.BASE, G.CURRENT, D.USERS])


def decide_all(pairs: pd.DataFrame | None = None):
    pairs = hand_pairs() if pairs is None else pairs
    res = G.decide_residents(G.cells_users(pairs, G.CURRENT), CELL_COMMUNE, COMMUNES, K, None)
    base = G.decide_residents(G.cells_users(pairs, G.BASE), CELL_COMMUNE, COMMUNES, K, None)
    atoms = G.shift_atoms(pairs, CELL_COMMUNE, COMMUNES)
    shift = G.decide_shift(
        atoms, K, res, base, None, pairs[G.BASE].to_numpy(), pairs[G.CURRENT].to_numpy()
    )
    return res, base, shift, atoms


def test_departement_flows_and_movers_from_pairs():
    res, base, shift, atoms = decide_all(hand_pairs())
    flows = D.published_counts(shift, "flow:departement")
    assert flows.to_dict() == {"75>89": 30, "75>15": 25}
    assert D.published_counts(shift, "in:departement").to_dict() == {"15": 25, "89": 30}
    assert D.published_counts(shift, "out:departement").to_dict() == {"75": 55}
    assert D.published_counts(res, "residents:departement").to_dict() == {
        "75": 420,
        "89": 217,
        "15": 85,
    }
    for d in (res, base, shift):
        pub = d.sets[d.sets["status"].isna()]
        assert (pub["users"] >= K).all()
    # the attacker on this month's residents: every unit over the 8 home cells
    cu = G.cells_users(hand_pairs(), G.CURRENT)
    cells = G.unit_codes(cu["cell"].to_numpy(), CELL_COMMUNE, COMMUNES).assign(
        users=cu[D.USERS].to_numpy()
    )
    kinds = [tg.SetKind(f"residents:{u}", u) for u in G.RESIDENT_UNITS]
    assert recoverable_small_groups(cells, res, kinds) == []
    # and on the shift, with both months' published totals as margins
    fixed = G._margin_fixed(atoms, "c", res) + G._margin_fixed(atoms, "b", base)
    shift_kinds = [
        tg.SetKind(f"{n}:{u}", f"{n}:{u}")
        for u in G.SHIFT_UNITS
        for n in (("in", "out") if u == "small_towns" else ("flow", "in", "out"))
    ]
    assert recoverable_small_groups(atoms, shift, shift_kinds, fixed) == []


SHIFT_KINDS = [
    tg.SetKind(f"{n}:{u}", f"{n}:{u}")
    for u in G.SHIFT_UNITS
    for n in (("in", "out") if u == "small_towns" else ("flow", "in", "out"))
]


def test_movers_in_that_would_reveal_a_small_flow_are_held_back():
    # 3 users move from Cantal to a Yonne village beside the 30 Parisians: published
    # together, "movers into the Yonne: 33" and "Paris -> Yonne: 30" give the 3 away
    pairs = pd.concat(
        [hand_pairs(), pd.DataFrame({G.BASE: [8], G.CURRENT: [7], G.USERS: [3]})],
        ignore_index=True,
    )
    res, base, shift, atoms = decide_all(pairs)
    fixed = G._margin_fixed(atoms, "c", res)  # this month's totals, audited with the shift
    naive_shift = naive(atoms, SHIFT_KINDS)
    moved = int(np.flatnonzero((pairs[G.BASE] == 8) & (pairs[G.CURRENT] == 7))[0])
    assert (moved,) in recoverable_small_groups(atoms, naive_shift, SHIFT_KINDS, fixed)
    assert recoverable_small_groups(atoms, shift, SHIFT_KINDS, fixed) == []
    assert D.published_counts(shift, "flow:departement").to_dict() == {"75>89": 30, "75>15": 25}
    assert "89" not in D.published_counts(shift, "in:departement")


def test_baseline_total_minus_the_flows_out_of_it_is_not_small():
    # every February resident of Cantal but 5 moved to the Yonne: Cantal's February total
    # (published by that release) minus "Cantal -> Yonne" would give the 5 who stayed
    rows = [(1, 1, 200), (8, 8, 5), (8, 6, 40), (6, 6, 50), (7, 7, 60), (5, 5, 80)]
    pairs = pd.DataFrame(rows, columns=[G.BASE, G.CURRENT, G.USERS])
    res, base, shift, atoms = decide_all(pairs)
    assert D.published_counts(base, "residents:departement")["15"] == 45
    flows = D.published_counts(shift, "flow:departement")
    outs = D.published_counts(shift, "out:departement")
    assert "15>89" not in flows and "15" not in outs
    # the same with 25 stayers: the flow is published
    pairs.loc[pairs[G.BASE].eq(8) & pairs[G.CURRENT].eq(8), G.USERS] = 25
    res, base, shift, atoms = decide_all(pairs)
    assert D.published_counts(shift, "flow:departement").to_dict() == {"15>89": 40}


def test_table_changes_shares_small_towns_and_schema():
    res, base, shift, _ = decide_all(hand_pairs())
    table = D.diagnostics_table(
        "2020-04", "2020-02", res, base, shift, COMMUNES, DegurbaParams(), top=3
    )
    dep = table[(table[D.UNIT] == "departement") & (table[D.KIND] == D.KIND_TERRITORY)]
    paris = dep.set_index(D.CODE).loc["75"]
    assert paris[D.RESIDENTS] == 420 and paris[D.RESIDENTS_BASELINE] == 505
    assert paris[D.RESIDENTS_CHANGE] == -85
    assert paris[D.RESIDENTS_CHANGE_PCT] == pytest.approx(-16.83, abs=0.01)
    assert paris[D.MOVERS_OUT] == 55 and paris[D.NAME] == "Paris"
    small = table[table[D.UNIT] == "small_towns"].iloc[0]
    # small towns (Yonne villages, Murat): 65 + 45 + 60 = 170 of 755 users in February,
    # 59 + 56 + 85 = 200 of 722 in April
    assert small[D.RESIDENTS] == 200 and small[D.RESIDENTS_BASELINE] == 170
    assert small[D.SHARE_CHANGE_PP] == pytest.approx(100 * 200 / 722 - 100 * 170 / 755, abs=1e-3)
    assert small[D.NET_SHIFT] == 55
    flows = table[table[D.KIND] == D.KIND_FLOW].set_index([D.ORIGIN_CODE, D.DESTINATION_CODE])
    assert flows.loc[("75", "89"), D.USERS] == 30
    assert flows.loc[("75", "89"), D.NAME] == "Paris → Yonne"
    ranked = table[table[D.RANK_GAIN].notna()].sort_values(D.RANK_GAIN)
    assert ranked[D.CODE].tolist()[:2] == ["15138", "89024"]  # Murat +25, Auxerre +22
    arrow = D.to_arrow(table)
    assert [f.name for f in arrow.schema] == D.COLUMNS
    assert not any(c.endswith("user_id") or c == "user_key" for c in arrow.schema.names)
    counts = [D.RESIDENTS, D.RESIDENTS_BASELINE, D.MOVERS_IN, D.MOVERS_OUT, D.USERS]
    values = table[counts].stack()
    assert ((values == 0) | (values >= K)).all()


def test_h3_shift_cells_hiding_the_flows_do_not_hide_the_departement_flow():
    pairs = hand_pairs()
    # the H3 residence-shift table publishes only the Paris stayers' cells
    shift_pub = pd.DataFrame(
        {
            "resolution": 8,
            "origin_cell": [h3.int_to_str(int(c)) for c in (1, 2, 3, 4)],
            "destination_cell": [h3.int_to_str(int(c)) for c in (1, 2, 3, 4)],
            "users": [120, 90, 60, 150],
        }
    )
    res, base, _, atoms = decide_all(pairs)
    b, c = pairs[G.BASE].to_numpy(), pairs[G.CURRENT].to_numpy()
    # hand cell ids are not real H3 cells: the resolution parent of a fake id is not
    # meaningful, so give the fixed sets by hand (one per published stayer cell)
    codes = np.where((b == c) & (b >= 1) & (b <= 4), b, -1)
    fixed = [tg.FixedSets("shift@8", codes.astype(np.int64), np.array([1, 2, 3, 4]))]
    kinds = [tg.SetKind(f"{n}:departement", f"{n}:departement", 3) for n in ("flow", "in", "out")]
    decision = tg.decide(atoms, kinds, K, fixed=fixed)
    flows = decision.sets[decision.sets["kind"] == "flow:departement"].set_index("code")
    assert flows.loc["75>89", "status"] is None and flows.loc["75>89", "users"] == 30
    assert shift_pub["users"].min() >= K


def test_pair_counts_with_and_without_baseline(spark):
    from mobiterra import columns as C

    homes = spark.createDataFrame(
        [("u1", 1), ("u2", 1), ("u3", 2)], f"{C.USER_KEY} string, {C.HOME_H3} long"
    )
    before = spark.createDataFrame(
        [("u1", 1), ("u2", 3), ("u4", 3)], f"{C.USER_KEY} string, {C.HOME_H3} long"
    )
    got = G.pair_counts(homes, before).toPandas().sort_values([G.BASE, G.CURRENT])
    assert got.values.tolist() == [[-1, 2, 1], [1, 1, 1], [3, -1, 1], [3, 1, 1]]
    alone = G.pair_counts(homes, None).toPandas().sort_values(G.CURRENT)
    assert alone.values.tolist() == [[-1, 1, 2], [-1, 2, 1]]


def test_stage_on_real_communes_writes_the_table_validate_reads(spark, tmp_path):
    from mobiterra import columns as C
    from mobiterra.config import RunConfig
    from mobiterra.validate import _diagnostics_by_departement, _diagnostics_flows

    def cell(lat, lon):
        return h3.str_to_int(h3.latlng_to_cell(lat, lon, 8))

    paris, auxerre, village = cell(48.8566, 2.3522), cell(47.798, 3.567), cell(47.55, 3.3)
    before = [(f"p{i}", paris) for i in range(70)] + [(f"a{i}", auxerre) for i in range(30)]
    after = [(f"p{i}", paris if i < 40 else village) for i in range(70)]
    after += [(f"a{i}", auxerre) for i in range(30)]
    schema = f"{C.USER_KEY} string, {C.HOME_H3} long"
    homes, base = tmp_path / "homes", tmp_path / "base"
    spark.createDataFrame(after, schema).write.parquet(str(homes))
    spark.createDataFrame(before, schema).write.parquet(str(base))
    cfg = RunConfig(month="2020-04", baseline_month="2020-02", resolutions=[7, 8])
    staging, work = tmp_path / "staging", tmp_path / "work"
    staging.mkdir()
    work.mkdir()
    factors = tmp_path / "expansion.parquet"  # Yonne's factor unrounded on purpose
    pd.DataFrame({"departement_code": ["75", "89"], "factor": [10.5, 20.25]}).to_parquet(factors)
    stats = D.stage_diagnostics(
        spark, cfg, str(homes), str(base), staging, work, str(factors), tmp_path / "cache",
        ["75", "89"],
    )  # fmt: skip
    table = pd.read_parquet(staging / "diagnostics")
    assert list(table.columns) == D.COLUMNS
    assert stats["rows_published"] == len(table) and stats["toward_small_towns_pp"] > 0
    flows = _diagnostics_flows(table)  # validate reads département (and class) flows
    assert flows[("75", "89")] == 30 and flows[("city", "rural")] == 30
    deps = _diagnostics_by_departement(table)
    assert deps["75"] == 40 and deps["89"] == 60
    paris_row = table[(table[D.UNIT] == "departement") & (table[D.CODE] == "75")].iloc[0]
    assert paris_row[D.RESIDENTS_BASELINE] == 70 and paris_row[D.MOVERS_OUT] == 30
    # estimates: the published count times the département's factor, rounded
    est = table[table[D.KIND] == D.KIND_TERRITORY].set_index([D.UNIT, D.CODE])
    assert est.loc[("departement", "75"), D.RESIDENTS_EST] == 420  # 40 x 10.5
    assert est.loc[("departement", "89"), D.RESIDENTS_EST] == 1215  # 60 x 20.25
    assert est.loc[("departement", "75"), D.RESIDENTS_BASELINE_EST] == 735
    assert est.loc[("france", "FR"), D.RESIDENTS_EST] == 1635
    communes = est.loc["commune"]
    assert (communes[D.RESIDENTS_EST].notna() == communes[D.RESIDENTS].notna()).all()
    assert est.loc["density_class", D.RESIDENTS_EST].isna().all()  # spans départements
    # without a baseline: residents only
    cfg = RunConfig(month="2020-04", resolutions=[7, 8])
    D.stage_diagnostics(
        spark, cfg, str(homes), None, staging, work, None, tmp_path / "cache", ["75", "89"]
    )
    alone = pd.read_parquet(staging / "diagnostics")
    assert alone[D.RESIDENTS_EST].isna().all()  # no expansion table: no estimate
    assert alone[D.RESIDENTS_BASELINE].isna().all() and (alone[D.KIND] == D.KIND_TERRITORY).all()


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(0, 60), st.integers(0, 5)),
    high=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_unique_rows_is_numpys_unique_over_rows(shape, high, seed):
    """The gate's blocks are the distinct signatures in np.unique's order, found faster."""
    sig = np.random.default_rng(seed).integers(-1, high + 1, shape)
    want, want_inverse = np.unique(sig, axis=0, return_inverse=True)
    got, inverse = tg.unique_rows(sig)
    assert np.array_equal(got, want) and got.shape == want.shape
    assert np.array_equal(inverse, want_inverse.reshape(-1))
