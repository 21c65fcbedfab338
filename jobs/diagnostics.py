"""Territorial diagnostics: residents, change and residence shift by commune, EPCI,
département, density class and commune size class — the ``diagnostics/`` table.

Every number rests on the users' usual residences (jobs.residence) of the month and of the
baseline month; a home H3 cell belongs to one commune (mobiterra.degurba.commune_of_cells),
so every territory is a set of communes. Nothing leaves without the territorial gate
(jobs.territorial_gate; rules in docs/privacy.md, "Territorial diagnostics").

Schema of ``OUT/MONTH/diagnostics/`` (one Parquet dataset; one row per territory or flow;
a null count is suppressed by the gate, or has no baseline):

column (type): meaning

- ``month`` (string): the month, YYYY-MM
- ``baseline_month`` (string): the baseline month; null without one
- ``kind`` (string): ``territory`` (a territory's residents) or ``flow`` (a residence-shift
  flow between two territories of one unit)
- ``unit`` (string): ``france``, ``departement``, ``epci``, ``commune``, ``density_class``,
  ``size_class``, ``small_towns``
- ``code`` (string): INSEE commune / département code, EPCI SIREN, class code; null on flows
- ``name`` (string): French label (flows: ``origin → destination``)
- ``departement_code`` (string): département of a commune (of an EPCI: the one holding most
  of its population); null for classes
- ``density_class`` (string): commune rows: ``city`` / ``town`` / ``rural`` (DEGURBA)
- ``size_class`` (string): commune rows: ``lt_2k``, ``2k_10k``, ``10k_50k``, ``50k_200k``,
  ``ge_200k`` (INSEE population; the whole city for an arrondissement)
- ``origin_code`` / ``destination_code`` (string): flow rows: territory of the baseline
  home / of this month's home (codes of the row's ``unit``)
- ``residents`` (long): distinct users whose usual residence this month is in the territory
- ``residents_baseline`` (long): the same in the baseline month
- ``residents_est`` / ``residents_baseline_est`` (long): ``residents`` / ``residents_baseline``
  times the expansion factor of the territory's département (the ``expansion`` table),
  rounded: the people living there; null without a calibrated factor (class rows, and
  ``france`` unless all its départements have one). Both inputs are published, so the
  estimate adds nothing an attacker does not already have.
- ``residents_change`` (long): ``residents - residents_baseline`` (both published)
- ``residents_change_pct`` (double): ``100 * residents_change / residents_baseline``
- ``share_pct`` / ``share_baseline_pct`` (double): class rows: ``100 * residents`` / residents
  of ``france``, this month / baseline month
- ``share_change_pp`` (double): ``share_pct - share_baseline_pct``, percentage points
- ``movers_in`` (long): users with a home in both months, in another territory of the same
  unit before and here now; ``movers_out``: here before, elsewhere now
- ``net_shift`` (long): ``movers_in - movers_out`` (both published)
- ``users`` (long): flow rows: users with their baseline home in the origin and their home
  this month in the destination
- ``rank_gain`` / ``rank_loss`` (int): commune rows: 1 = largest gain / loss of residents
  among communes with both months published (top ``diagnostics.top_communes``)

Units: ``france`` (code ``FR``, the whole territory seen), ``departement``, ``epci`` and
``commune`` (Paris, Lyon and Marseille as their arrondissements), ``density_class``
(communes by DEGURBA class), ``size_class`` (communes by INSEE population), and
``small_towns`` (code ``small_towns_rural``: the communes of the "toward small towns"
indicator, mobiterra.degurba.is_small_town_or_rural). ``movers_in`` / ``movers_out`` /
``net_shift`` are given for départements, density classes and the small-towns group;
flows (``kind = flow``) between départements and between density classes.

The "toward small towns" indicator is the ``small_towns`` row: ``share_change_pp`` (the
change of the share of residents living in small towns and rural communes) and its
``net_shift`` (movers in minus movers out). Differences (``*_change``, ``net_shift``) are
differences of two published counts, so they may be small; every count is 0 or >= k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs import release
from jobs import territorial_gate as tg
from jobs.diagnostics_gate import (
    BASE,
    CURRENT,
    FRANCE_CODE,
    RESIDENT_UNITS,
    SHIFT_UNITS,
    cells_users,
    decide_residents,
    decide_shift,
    pair_counts,
    shift_atoms,
)
from mobiterra import degurba
from mobiterra.config import DegurbaParams, RunConfig

# --- the published schema (declared once; the gate selects exactly these columns) ---
MONTH = "month"
BASELINE_MONTH = "baseline_month"
KIND = "kind"
UNIT = "unit"
CODE = "code"
NAME = "name"
DEPARTEMENT_CODE = "departement_code"
DENSITY_CLASS = "density_class"
SIZE_CLASS = "size_class"
ORIGIN_CODE = "origin_code"
DESTINATION_CODE = "destination_code"
RESIDENTS = "residents"
RESIDENTS_BASELINE = "residents_baseline"
RESIDENTS_EST = "residents_est"
RESIDENTS_BASELINE_EST = "residents_baseline_est"
RESIDENTS_CHANGE = "residents_change"
RESIDENTS_CHANGE_PCT = "residents_change_pct"
SHARE_PCT = "share_pct"
SHARE_BASELINE_PCT = "share_baseline_pct"
SHARE_CHANGE_PP = "share_change_pp"
MOVERS_IN = "movers_in"
MOVERS_OUT = "movers_out"
NET_SHIFT = "net_shift"
USERS = "users"
RANK_GAIN = "rank_gain"
RANK_LOSS = "rank_loss"

KIND_TERRITORY = "territory"
KIND_FLOW = "flow"
UNITS = ("france", "departement", "epci", "commune", "density_class", "size_class", "small_towns")

DIAGNOSTICS = T.StructType(
    [
        T.StructField(MONTH, T.StringType(), False),
        T.StructField(BASELINE_MONTH, T.StringType(), True),
        T.StructField(KIND, T.StringType(), False),
        T.StructField(UNIT, T.StringType(), False),
        T.StructField(CODE, T.StringType(), True),
        T.StructField(NAME, T.StringType(), True),
        T.StructField(DEPARTEMENT_CODE, T.StringType(), True),
        T.StructField(DENSITY_CLASS, T.StringType(), True),
        T.StructField(SIZE_CLASS, T.StringType(), True),
        T.StructField(ORIGIN_CODE, T.StringType(), True),
        T.StructField(DESTINATION_CODE, T.StringType(), True),
        T.StructField(RESIDENTS, T.LongType(), True),
        T.StructField(RESIDENTS_BASELINE, T.LongType(), True),
        T.StructField(RESIDENTS_EST, T.LongType(), True),
        T.StructField(RESIDENTS_BASELINE_EST, T.LongType(), True),
        T.StructField(RESIDENTS_CHANGE, T.LongType(), True),
        T.StructField(RESIDENTS_CHANGE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_BASELINE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_CHANGE_PP, T.DoubleType(), True),
        T.StructField(MOVERS_IN, T.LongType(), True),
        T.StructField(MOVERS_OUT, T.LongType(), True),
        T.StructField(NET_SHIFT, T.LongType(), True),
        T.StructField(USERS, T.LongType(), True),
        T.StructField(RANK_GAIN, T.IntegerType(), True),
        T.StructField(RANK_LOSS, T.IntegerType(), True),
    ]
)
COLUMNS = [f.name for f in DIAGNOSTICS.fields]

# --- the table ------------------------------------------------------------------------


def published_counts(decision: tg.Decision | None, kind: str) -> pd.Series:
    """Published user counts of one kind of set, indexed by code (empty without a decision)."""
    if decision is None:
        return pd.Series(dtype="Int64")
    sets = decision.sets
    rows = sets[(sets["kind"] == kind) & sets["status"].isna()]
    return pd.Series(rows["users"].to_numpy(), index=rows["code"].astype(str), dtype="Int64")


def _absent(decision: tg.Decision, kind: str, codes: pd.Index) -> np.ndarray:
    """Which codes have no user at all in that kind of set (not even a suppressed count)."""
    known = set(decision.sets.loc[decision.sets["kind"] == kind, "code"].astype(str))
    return ~codes.isin(list(known))


def _names(communes: pd.DataFrame, params: DegurbaParams) -> dict[str, dict[str, str]]:
    com = communes.reset_index()
    return {
        "france": {FRANCE_CODE: "France"},
        "departement": dict(zip(com["departement_code"], com["departement_name"], strict=True)),
        "epci": dict(zip(com["epci_code"].dropna(), com["epci_name"].dropna(), strict=False)),
        "commune": dict(zip(com["commune_code"], com["commune_name"], strict=True)),
        "density_class": dict(degurba.DENSITY_LABELS),
        "size_class": dict(degurba.size_classes(params.size_bounds)),
        "small_towns": {degurba.SMALL_TOWNS: degurba.SMALL_TOWNS_LABEL},
    }


def _epci_departement(communes: pd.DataFrame) -> dict[str, str]:
    """The département holding most of each EPCI's people."""
    com = communes.reset_index()
    pop = com.groupby(["epci_code", "departement_code"])["population"].sum().reset_index()
    top = pop.sort_values(["epci_code", "population", "departement_code"]).drop_duplicates(
        "epci_code", keep="last"
    )
    return dict(zip(top["epci_code"], top["departement_code"], strict=True))


def _change(now: pd.Series, before: pd.Series) -> tuple[pd.Series, pd.Series]:
    change = now - before
    pct = (100.0 * change.astype("Float64") / before.astype("Float64")).round(2)
    return change, pct


def territory_rows(
    residents: tg.Decision,
    baseline: tg.Decision | None,
    shift: tg.Decision | None,
    communes: pd.DataFrame,
    params: DegurbaParams,
) -> pd.DataFrame:
    """One row per territory with at least one published count (``kind = territory``)."""
    names = _names(communes, params)
    epci_dep = _epci_departement(communes)
    com = communes.reset_index().set_index("commune_code")
    france_now = published_counts(residents, "residents:france").get(FRANCE_CODE, pd.NA)
    france_before = published_counts(baseline, "residents:france").get(FRANCE_CODE, pd.NA)
    frames = []
    for unit in RESIDENT_UNITS:
        cols = {
            RESIDENTS: published_counts(residents, f"residents:{unit}"),
            RESIDENTS_BASELINE: published_counts(baseline, f"residents:{unit}"),
        }
        df = pd.DataFrame(cols)
        # a territory with residents in one month and nobody in the other: a true zero
        for col, decision in ((RESIDENTS, residents), (RESIDENTS_BASELINE, baseline)):
            if decision is not None:
                df.loc[_absent(decision, f"residents:{unit}", df.index), col] = 0
        if unit in SHIFT_UNITS and shift is not None:
            for col, name in ((MOVERS_IN, "in"), (MOVERS_OUT, "out")):
                counts = published_counts(shift, f"{name}:{unit}")
                # a territory nobody moved into (out of) has 0 movers: a true zero
                absent = _absent(shift, f"{name}:{unit}", df.index)
                zero = pd.Series(0, index=df.index[absent], dtype="Int64")
                df = df.join(pd.concat([counts, zero]).rename(col), how="outer")
        if df.empty:
            continue
        df = df.reindex(columns=[RESIDENTS, RESIDENTS_BASELINE, MOVERS_IN, MOVERS_OUT])
        df = df.astype("Int64").dropna(how="all")
        df.index.name = CODE
        df = df.reset_index()
        df[UNIT] = unit
        df[NAME] = df[CODE].map(names[unit])
        df[RESIDENTS_CHANGE], df[RESIDENTS_CHANGE_PCT] = _change(
            df[RESIDENTS], df[RESIDENTS_BASELINE]
        )
        df[NET_SHIFT] = df[MOVERS_IN] - df[MOVERS_OUT]
        if unit in ("density_class", "size_class", "small_towns"):
            df[SHARE_PCT] = (100.0 * df[RESIDENTS].astype("Float64") / france_now).round(3)
            df[SHARE_BASELINE_PCT] = (
                100.0 * df[RESIDENTS_BASELINE].astype("Float64") / france_before
            ).round(3)
            df[SHARE_CHANGE_PP] = (df[SHARE_PCT] - df[SHARE_BASELINE_PCT]).round(3)
        if unit == "commune":
            df[DEPARTEMENT_CODE] = df[CODE].map(com["departement_code"])
            df[DENSITY_CLASS] = df[CODE].map(com["density_class"])
            df[SIZE_CLASS] = df[CODE].map(com["size_class"])
        elif unit == "epci":
            df[DEPARTEMENT_CODE] = df[CODE].map(epci_dep)
        elif unit == "departement":
            df[DEPARTEMENT_CODE] = df[CODE]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def flow_rows(
    shift: tg.Decision | None, communes: pd.DataFrame, params: DegurbaParams
) -> pd.DataFrame:
    """Published residence-shift flows between départements and between density classes."""
    names = _names(communes, params)
    frames = []
    for unit in SHIFT_UNITS:
        users = published_counts(shift, f"flow:{unit}")
        if users.empty:
            continue
        od = users.index.to_series().str.split(">", n=1, expand=True)
        df = pd.DataFrame(
            {
                UNIT: unit,
                ORIGIN_CODE: od[0].to_numpy(),
                DESTINATION_CODE: od[1].to_numpy(),
                USERS: users.to_numpy(),
            }
        )
        df[NAME] = (
            df[ORIGIN_CODE].map(names[unit]).fillna(df[ORIGIN_CODE])
            + " → "
            + df[DESTINATION_CODE].map(names[unit]).fillna(df[DESTINATION_CODE])
        )
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def with_ranks(table: pd.DataFrame, top: int) -> pd.DataFrame:
    """``rank_gain`` / ``rank_loss`` on the communes with the largest published changes."""
    table = table.copy()
    table[RANK_GAIN] = pd.NA
    table[RANK_LOSS] = pd.NA
    com = table[(table[UNIT] == "commune") & table[RESIDENTS_CHANGE].notna()]
    gain = com[com[RESIDENTS_CHANGE] > 0].sort_values(
        [RESIDENTS_CHANGE, CODE], ascending=[False, True]
    )
    loss = com[com[RESIDENTS_CHANGE] < 0].sort_values(
        [RESIDENTS_CHANGE, CODE], ascending=[True, True]
    )
    table.loc[gain.index[:top], RANK_GAIN] = np.arange(1, min(top, len(gain)) + 1)
    table.loc[loss.index[:top], RANK_LOSS] = np.arange(1, min(top, len(loss)) + 1)
    return table


def with_estimates(table: pd.DataFrame, factors: pd.Series | None) -> pd.DataFrame:
    """``residents_est`` / ``residents_baseline_est``: the published counts times the
    factor of the row's département (``factors``: département code -> factor, calibrated
    only). ``france``: the sum over its départements when every one has an estimate."""
    table = table.copy()
    for count, est in ((RESIDENTS, RESIDENTS_EST), (RESIDENTS_BASELINE, RESIDENTS_BASELINE_EST)):
        table[est] = pd.NA
        if factors is None or factors.empty:
            continue
        factor = table[DEPARTEMENT_CODE].map(factors).astype("Float64")
        table[est] = (table[count].astype("Float64") * factor).round().astype("Int64")
        deps = table[(table[KIND] == KIND_TERRITORY) & (table[UNIT] == "departement")]
        france = (table[KIND] == KIND_TERRITORY) & (table[UNIT] == "france")
        if france.any() and len(deps) and deps[est].notna().all():
            # the départements partition France's residents: only then is their sum its own
            if int(deps[count].sum()) == int(table.loc[france, count].fillna(-1).iloc[0]):
                table.loc[france, est] = int(deps[est].sum())
    return table


def diagnostics_table(
    month: str,
    baseline_month: str | None,
    residents: tg.Decision,
    baseline: tg.Decision | None,
    shift: tg.Decision | None,
    communes: pd.DataFrame,
    params: DegurbaParams,
    top: int,
    factors: pd.Series | None = None,
) -> pd.DataFrame:
    """The published table (schema above) from the gate's decisions; sorted, typed.

    ``factors``: the expansion factor per département code (``residents_est``)."""
    terr = territory_rows(residents, baseline, shift, communes, params).assign(
        **{KIND: KIND_TERRITORY}
    )
    flows = flow_rows(shift, communes, params).assign(**{KIND: KIND_FLOW})
    parts = [df for df in (terr, flows) if not df.empty]
    table = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    ).reindex(columns=COLUMNS)
    table[MONTH] = month
    table[BASELINE_MONTH] = baseline_month
    table = with_ranks(table, top).pipe(with_estimates, factors)
    order = {u: i for i, u in enumerate(UNITS)}
    table = table.assign(_u=table[UNIT].map(order)).sort_values(
        ["_u", KIND, CODE, ORIGIN_CODE, DESTINATION_CODE], na_position="first"
    )
    return table.drop(columns="_u").reset_index(drop=True)


def to_arrow(table: pd.DataFrame) -> pa.Table:
    """The table in the declared schema (nullable longs stay integers)."""
    kinds = {
        T.StringType(): pa.string(),
        T.LongType(): pa.int64(),
        T.DoubleType(): pa.float64(),
        T.IntegerType(): pa.int32(),
    }
    schema = pa.schema([pa.field(f.name, kinds[f.dataType], f.nullable) for f in DIAGNOSTICS])
    arrays = []
    for f in schema:
        values = table[f.name].astype(object).where(table[f.name].notna(), None)
        arrays.append(pa.array(values.tolist(), type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def gate_stats(decisions: dict[str, tg.Decision | None]) -> dict:
    """Suppression accounting over every set the gate decided (one set = one count)."""
    sets = pd.concat([d.sets for d in decisions.values() if d is not None], ignore_index=True)
    status = sets["status"].fillna("published")
    by = sets.groupby(status)["users"].agg(["size", "sum"])

    def get(name: str, col: str) -> int:
        return int(by[col].get(name, 0))

    return {
        "sets_published": get("published", "size"),
        "rows_suppressed_primary": get(tg.PRIMARY, "size"),
        "rows_suppressed_secondary": get(tg.SECONDARY, "size"),
        "user_count_published": get("published", "sum"),
        "user_count_suppressed": get(tg.PRIMARY, "sum") + get(tg.SECONDARY, "sum"),
        "user_count_suppressed_primary": get(tg.PRIMARY, "sum"),
        "user_count_suppressed_secondary": get(tg.SECONDARY, "sum"),
        "gate_rounds": {n: d.rounds for n, d in decisions.items() if d is not None},
        "gate_sets_against_h3": {
            n: d.cover_suppressed for n, d in decisions.items() if d is not None
        },
    }


# --- the stage (the only impure part) --------------------------------------------------


def _read_published(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if Path(path).exists() else None


def _factors(expansion_path: str | None) -> pd.Series | None:
    """Calibrated factors of the expansion table by département code; None without one."""
    if expansion_path is None or not Path(expansion_path).exists():
        return None
    table = pd.read_parquet(expansion_path).dropna(subset=["factor"])
    return table.set_index("departement_code")["factor"].astype(float)


def stage_diagnostics(
    spark: SparkSession,
    cfg: RunConfig,
    homes_path: str,
    baseline_homes_path: str | None,
    staging: Path,
    work: Path,
    expansion_path: str | None = None,
    cache_dir: Path | str = degurba.DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> dict:
    """Territorial diagnostics of the month into ``staging/diagnostics``; returns the stats.

    Reads the H3 tables already in ``staging`` (``residents``, ``residence_shift``) so the
    territorial gate keeps every territory from being differenced against them.
    ``departements``: classify only these (tests; metropolitan France by default).
    ``expansion_path``: the expansion table, for ``residents_est``."""
    homes_df = spark.read.parquet(homes_path)
    baseline_df = spark.read.parquet(baseline_homes_path) if baseline_homes_path else None
    pairs_path = Path(work) / "diagnostics-pairs"
    pair_counts(homes_df, baseline_df).coalesce(1).write.mode("overwrite").parquet(str(pairs_path))
    pairs = pd.read_parquet(pairs_path)  # one row per pair of home cells: small
    cells = np.unique(np.concatenate([pairs[BASE], pairs[CURRENT]]))
    cells = cells[cells >= 0]
    cell_commune = degurba.commune_of_cells(cells, cfg.degurba, cache_dir, departements)
    communes = degurba.commune_classes(cfg.degurba, cache_dir, departements).set_index(
        "commune_code"
    )

    residents = decide_residents(
        cells_users(pairs, CURRENT), cell_commune, communes, cfg.k,
        _read_published(Path(staging) / "residents"),
    )  # fmt: skip
    baseline = shift = None
    if baseline_df is not None:
        # the baseline release's H3 residents: the gate is deterministic, so re-gating the
        # baseline homes gives what that release published (as jobs.stages does)
        h3_before = release.released_residents(baseline_df, cfg, cfg.baseline_month)[0].toPandas()
        baseline = decide_residents(
            cells_users(pairs, BASE), cell_commune, communes, cfg.k, h3_before
        )
        atoms = shift_atoms(pairs, cell_commune, communes)
        shift = decide_shift(
            atoms, cfg.k, residents, baseline,
            _read_published(Path(staging) / "residence_shift"),
            pairs[BASE].to_numpy(dtype=np.int64), pairs[CURRENT].to_numpy(dtype=np.int64),
        )  # fmt: skip
    table = diagnostics_table(
        cfg.month, cfg.baseline_month, residents, baseline, shift, communes, cfg.degurba,
        cfg.diagnostics.top_communes, _factors(expansion_path),
    )  # fmt: skip
    out = Path(staging) / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(table), out / "part-00000.parquet")
    stats = gate_stats({"residents": residents, "baseline": baseline, "shift": shift})
    small = table[(table[UNIT] == "small_towns") & (table[KIND] == KIND_TERRITORY)]
    return {
        "rows_published": len(table),
        **stats,
        "toward_small_towns_pp": None
        if small.empty or pd.isna(small[SHARE_CHANGE_PP].iloc[0])
        else float(small[SHARE_CHANGE_PP].iloc[0]),
    }
