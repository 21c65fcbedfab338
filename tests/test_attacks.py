"""The attacker against gate outputs on synthetic Paris counts: every attack finds
nothing on the full gate, and each finds a leak once the rule that stops it is off."""

from __future__ import annotations

from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synthetic_counts as S

from jobs import gate
from jobs.periods import MONTH
from jobs.suppression import ALL_RULES, RULE_MARGINS, RULE_PRIMARY, RULE_SCHEMA, RULE_SECONDARY
from mobiterra import attacks
from mobiterra import columns as C

K = 20
USERS = 6000


@pytest.fixture(scope="module")
def months():
    """Counts of two months: A (baseline homes) and B (homes after the moves)."""
    homes = S.homes(USERS, seed=2020)
    b_residents = S.count_residents(homes, "home")
    # a careless aggregation that kept one user id per row (the schema rule drops it)
    b_residents = b_residents.assign(
        example_user=homes[C.USER_ID].iloc[: len(b_residents)].to_numpy()
    )
    return {
        "homes": homes,
        "A": {"residents": S.count_residents(homes, "base")},
        "B": {
            "residents": b_residents,
            "residence_shift": S.count_shift(homes),
            "present_population": S.count_presence(homes, seed=1),
            "od_trips": S.count_od(homes, seed=1),
            "od_home_work": S.count_home_work(homes, seed=1),
        },
    }


def _write(df, folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    pdf = df.toPandas()
    pdf.to_parquet(folder / name / "part-00000.parquet", index=False)
    pdf.to_csv(folder / f"{name}.csv", index=False)  # the exports a planner downloads


def release(spark, months, out: Path, rules=ALL_RULES, tables=None) -> dict:
    """Gate and write month A (residents) and month B (all tables); marked pandas back."""
    marked = {}
    res_a = spark.createDataFrame(months["A"]["residents"])
    pub, marked["A"] = gate.apply(res_a, gate.RESIDENTS, K, rules=rules)
    _write(pub, out / "2020-02", "residents")
    res_b = spark.createDataFrame(months["B"]["residents"])
    pub, marked["B"] = gate.apply(res_b, gate.RESIDENTS, K, rules=rules)
    _write(pub, out / "2020-04", "residents")
    names = ("residence_shift", "present_population", "od_trips", "od_home_work")
    for name in names if tables is None else tables:
        margins = ()
        if name == "residence_shift":
            margins = (
                gate.Margin(marked["B"], gate.RESIDENTS, C.DESTINATION_CELL),
                gate.Margin(marked["A"], gate.RESIDENTS, C.ORIGIN_CELL),
            )
        if name == "od_home_work":  # as jobs/stages_mobility.py gates it
            margins = (
                gate.Margin(marked["B"], gate.RESIDENTS, C.ORIGIN_CELL, where=((C.PERIOD, MONTH),)),
            )
        counts_df = spark.createDataFrame(months["B"][name])
        pub, marked[name] = gate.apply(counts_df, gate.SPECS[name], K, margins=margins, rules=rules)
        _write(pub, out / "2020-04", name)
    return {key: df.toPandas() for key, df in marked.items()}


@pytest.fixture(scope="module")
def full_release(spark, months, tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    return out, release(spark, months, out)


def test_full_gate_withstands_every_attack(full_release, months):
    out, _ = full_release
    found = attacks.attack_month(out / "2020-04", K, baseline_dir=out / "2020-02")
    found.update(attacks.attack_month(out / "2020-02", K))
    assert found and all(v == 0 for v in found.values()), found
    ids = months["homes"][C.USER_ID].tolist()
    assert attacks.id_leaks(out, ids) == []


def test_published_tables_are_not_empty(full_release):
    out, _ = full_release
    tables = attacks.read_month(out / "2020-04")
    assert set(tables) == {
        "residents",
        "residence_shift",
        "present_population",
        "od_trips",
        "od_home_work",
    }
    assert all(len(df) > 0 for df in tables.values())
    assert tables["residents"][C.H3_CELL].map(h3.is_valid_cell).all()


@pytest.mark.parametrize(
    ("rule", "tables", "attack"),
    [
        (RULE_PRIMARY, (), "residents:small_values"),
        (RULE_SECONDARY, ("od_trips",), "residents:hierarchy"),
        (RULE_SECONDARY, ("od_trips",), "od_trips:hierarchy"),
        (RULE_SECONDARY, ("present_population",), "present_population:hierarchy"),
        (RULE_MARGINS, ("residence_shift",), "residents-vs-shift"),
        (RULE_MARGINS, ("residence_shift",), "baseline-residents-vs-shift"),
        (RULE_MARGINS, ("od_home_work",), "residents-vs-home-work"),
    ],
)
def test_attack_succeeds_once_its_rule_is_off(spark, months, tmp_path, rule, tables, attack):
    release(spark, months, tmp_path, rules=ALL_RULES - {rule}, tables=tables)
    found = attacks.attack_month(tmp_path / "2020-04", K, baseline_dir=tmp_path / "2020-02")
    assert found[attack] > 0, found


def test_ids_leak_once_the_schema_rule_is_off(spark, months, tmp_path):
    release(spark, months, tmp_path, rules=ALL_RULES - {RULE_SCHEMA}, tables=())
    assert attacks.id_leaks(tmp_path, months["homes"][C.USER_ID].tolist())


def _scenario():
    """Month A: a res-7 cell of 100 residents = 70 + 25 + 5; 25 of them move in month B."""
    parent = h3.latlng_to_cell(48.8566, 2.3522, 7)
    kids = sorted(h3.cell_to_children(parent, 8))
    far = h3.latlng_to_cell(47.798, 3.567, 8)
    res_a = pd.DataFrame(
        [(7, parent, 100), (8, kids[0], 70), (8, kids[1], 25), (8, kids[2], 5)],
        columns=[C.RESOLUTION, C.H3_CELL, C.RESIDENTS],
    )
    homes_b = [(far, 25), (kids[0], 70), (kids[2], 5)]
    homes_a = [kids[1], kids[0], kids[2]]
    res_b = (
        pd.DataFrame([(8, c, n) for c, n in homes_b] + [(7, h3.cell_to_parent(far, 7), 25)])
        .set_axis([C.RESOLUTION, C.H3_CELL, C.RESIDENTS], axis=1)
        .pipe(lambda d: pd.concat([d, pd.DataFrame([(7, parent, 75)], columns=d.columns)]))
    )
    shift = pd.DataFrame(
        [(8, a, b, n) for a, (b, n) in zip(homes_a, homes_b, strict=True)]
        + [(7, parent, h3.cell_to_parent(far, 7), 25), (7, parent, parent, 75)],
        columns=[C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.USERS],
    )
    to_int = lambda d, cols: d.assign(**{c: d[c].map(h3.str_to_int) for c in cols})  # noqa: E731
    return (
        to_int(res_a, [C.H3_CELL]),
        to_int(res_b, [C.H3_CELL]),
        to_int(shift, [C.ORIGIN_CELL, C.DESTINATION_CELL]),
    )


@pytest.mark.parametrize("rules", [ALL_RULES, ALL_RULES - {RULE_MARGINS}])
def test_two_releases_do_not_give_back_a_suppressed_value(spark, rules):
    """Month A hides the 5 (primary) and the 25 beside it (secondary). Month B's shift
    table says 25 people left that cell: A's 100 - 70 - 25 = 5, unless the gate also
    holds the flows out of cells month A suppressed (the baseline margin)."""
    res_a, res_b, shift = _scenario()
    pub_a, marked_a = gate.apply(spark.createDataFrame(res_a), gate.RESIDENTS, K)
    pub_b, marked_b = gate.apply(spark.createDataFrame(res_b), gate.RESIDENTS, K)
    margins = (
        gate.Margin(marked_b, gate.RESIDENTS, C.DESTINATION_CELL),
        gate.Margin(marked_a, gate.RESIDENTS, C.ORIGIN_CELL),
    )
    pub_shift, _ = gate.apply(
        spark.createDataFrame(shift), gate.RESIDENCE_SHIFT, K, margins=margins, rules=rules
    )
    a, s = pub_a.toPandas(), pub_shift.toPandas()
    assert len(a) == 2  # the 25 and the 5 are hidden within month A
    leaks = attacks.margin_leaks(a, C.RESIDENTS, s, C.ORIGIN_CELL, K)
    if rules == ALL_RULES:
        assert leaks.empty
    else:
        assert (leaks["_difference"] == 5).any()


def test_id_search_reads_compressed_parquet_values_and_text(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"{x:016x}" for x in rng.integers(0, 2**62, 2000)]
    (tmp_path / "t").mkdir()
    part = tmp_path / "t" / "part-0.parquet"
    # zstd with Huffman-coded literals: no id is left as plain bytes in the file
    pq.write_table(
        pa.table({"note": ids}), part, compression="zstd", write_statistics=False,
        use_dictionary=False,
    )  # fmt: skip
    assert not any(i.encode() in part.read_bytes() for i in ids)
    keyed = "a" * 32
    (tmp_path / "page.html").write_text(f"<td>{keyed}x</td>")  # inside a longer token
    (tmp_path / "clean.csv").write_text("h3_cell,users\n881fb46627fffff,25\n")
    assert attacks.id_leaks(tmp_path, [ids[7], keyed]) == [str(tmp_path / "page.html"), str(part)]
    assert attacks.id_leaks(tmp_path, ["ffffffffffffffff"]) == []
