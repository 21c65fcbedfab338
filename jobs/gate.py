"""The publication gate: the single door every published table goes through.

Rules (DESIGN.md "Privacy"; docs/privacy.md says what they guarantee):
- primary: k applies to raw distinct-user counts, before any expansion to total
  population; a row with any count (users, trips) or rounded estimate below k is
  suppressed, so no published count or estimate lies in [1, k);
- secondary: across resolutions, every published parent minus its published children
  (and minus its maximal published descendants) is 0 or >= k, by suppressing the least
  damaging extra rows until stable (jobs.suppression);
- margins: the same between a published total of another table and the parts of this
  one (residents of a cell vs. the residence-shift flows into it, baseline residents vs.
  the flows out of it);
- schema: H3 cells leave as canonical 15-character strings and only declared columns
  are selected, so no identifier column can pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import suppression
from jobs.suppression import (
    ALL_RULES,
    PRIMARY,
    RULE_PRIMARY,
    RULE_SCHEMA,
    SECONDARY,
    MarginTotals,
)
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.h3cols import h3_to_string

SUPPRESSION = "_suppression"  # null = published, else "primary" / "secondary"
_BUCKET = "_period_bucket"
# Periods per Python call of the gate: a few buckets per core of a small cluster.
PERIOD_BUCKETS = 32
__all__ = ["ALL_RULES", "PRIMARY", "SECONDARY", "SUPPRESSION", "Margin", "TableSpec", "apply"]


@dataclass(frozen=True)
class TableSpec:
    """What the gate needs to know about a table."""

    name: str
    schema: T.StructType
    cell_columns: tuple[str, ...]  # int64 H3 columns inside the jobs, strings outside
    user_column: str  # the distinct-user count that k applies to
    estimate_columns: tuple[str, ...] = ()  # *_est columns (expanded counts)
    other_counts: tuple[str, ...] = ()  # published counts that are not users (trips)
    period_columns: tuple[str, ...] = field(default=())

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (C.RESOLUTION, *self.cell_columns, *self.period_columns)


RESIDENTS = TableSpec("residents", schemas.RESIDENTS, (C.H3_CELL,), C.RESIDENTS, (C.RESIDENTS_EST,))
RESIDENCE_SHIFT = TableSpec(
    "residence_shift", schemas.RESIDENCE_SHIFT, (C.ORIGIN_CELL, C.DESTINATION_CELL), C.USERS
)
PRESENT_POPULATION = TableSpec(
    "present_population",
    schemas.PRESENT_POPULATION,
    (C.H3_CELL,),
    C.USERS,
    (C.USERS_EST,),
    period_columns=(C.PERIOD_START, C.PERIOD),
)
OD_TRIPS = TableSpec(
    "od_trips",
    schemas.OD_TRIPS,
    (C.ORIGIN_CELL, C.DESTINATION_CELL),
    C.USERS,
    other_counts=(C.TRIPS,),
    period_columns=(C.PERIOD_START, C.PERIOD),
)
# Home -> daytime anchor (work) users of the month, in the od_trips columns (trips = users).
OD_HOME_WORK = replace(OD_TRIPS, name="od_home_work")
SPECS = {
    s.name: s for s in (RESIDENTS, RESIDENCE_SHIFT, PRESENT_POPULATION, OD_TRIPS, OD_HOME_WORK)
}


@dataclass(frozen=True)
class Margin:
    """A total published in another table that rows of this table add up to (at most).

    ``marked_df``: the totals table as marked by :func:`apply` (``_suppression``), one
    cell column; ``on``: the cell column of this table that lands in a total's cell;
    ``where``: (column, value) pairs selecting the rows that are parts (e.g. a period).
    Example: residents of a cell vs. the residence-shift flows into it
    (``Margin(residents_marked_df, RESIDENTS, C.DESTINATION_CELL)``).
    """

    marked_df: DataFrame
    spec: TableSpec
    on: str
    where: tuple[tuple[str, str], ...] = ()

    def to_pandas(self) -> MarginTotals:
        (cell,) = self.spec.cell_columns
        totals = self.marked_df.select(
            F.col(C.RESOLUTION).cast("long").alias(C.RESOLUTION),
            F.col(cell).alias("cell"),
            F.col(self.spec.user_column).cast("double").alias("value"),
            F.col(SUPPRESSION).isNull().alias("published"),
        ).toPandas()  # one row per cell and resolution: small (a residents table)
        return MarginTotals(totals, self.on, dict(self.where))


def check_counts(counts_df: DataFrame, spec: TableSpec) -> None:
    needed = [C.RESOLUTION, *spec.cell_columns, *spec.period_columns, spec.user_column]
    missing = [c for c in needed if c not in counts_df.columns]
    if missing:
        raise ValueError(f"{spec.name}: counts lack {missing}; got columns {counts_df.columns}")


def with_rounded_estimates(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Estimates rounded to whole people (null stays null: no population reference)."""
    for col in spec.estimate_columns:
        value = F.col(col) if col in df.columns else F.lit(None)
        df = df.withColumn(col, F.round(value).cast("long"))
    return df


def with_suppression(
    counts_df: DataFrame,
    spec: TableSpec,
    k: int,
    margins: Sequence[Margin] = (),
    rules: frozenset[str] = ALL_RULES,
) -> DataFrame:
    """All rows with ``_suppression``: null, "primary" or "secondary".

    Runs jobs.suppression.decide via applyInPandas on buckets of periods (trees of
    different periods are independent and decide() keeps them apart by their period key;
    margins only apply to tables without periods).

    Rows with fewer than k users never reach Python: they are primary, and so is their
    whole subtree (a finer cell has at most its parent's users), which therefore adds
    nothing to any residual; decide() on the other rows marks them exactly as on all
    rows (its tie-breaks follow the sorted keys, which dropping rows does not reorder).
    Most rows of a fine, hourly table are such rows.
    """
    counts = [c for c in (*spec.other_counts, *spec.estimate_columns) if c in counts_df.columns]
    totals = [m.to_pandas() for m in margins]
    out_schema = T.StructType(
        [*counts_df.schema.fields, T.StructField(SUPPRESSION, T.StringType())]
    )
    cells, users, group = list(spec.cell_columns), spec.user_column, list(spec.period_columns)

    def decide(pdf: pd.DataFrame) -> pd.DataFrame:
        status = suppression.decide(
            pdf, k=k, cells=cells, users=users, counts=counts, group=group,
            margins=totals, rules=rules,
        )  # fmt: skip
        return pdf.assign(**{SUPPRESSION: status.astype(object)})

    primary_df = None
    if RULE_PRIMARY in rules:
        few = F.coalesce(F.col(users) < F.lit(k), F.lit(False))
        primary_df = counts_df.filter(few).withColumn(SUPPRESSION, F.lit(PRIMARY))
        counts_df = counts_df.filter(~few)
    if group and not margins:
        # one Python call per bucket of periods, not per period (an hourly month has
        # ~840 periods: the calls' overhead was most of the gate's time)
        bucket = F.pmod(F.xxhash64(*group), F.lit(PERIOD_BUCKETS))
        decided_df = (
            counts_df.withColumn(_BUCKET, bucket)
            .groupBy(_BUCKET)
            .applyInPandas(lambda pdf: decide(pdf.drop(columns=_BUCKET)), out_schema)
        )
    else:
        decided_df = counts_df.groupBy().applyInPandas(decide, out_schema)
    return decided_df if primary_df is None else decided_df.unionByName(primary_df)


def to_published(df: DataFrame, spec: TableSpec, rules: frozenset[str] = ALL_RULES) -> DataFrame:
    """Select exactly the declared output columns, cells as strings, in a stable order."""
    exprs = []
    for f in spec.schema.fields:
        if f.name in spec.cell_columns:
            exprs.append(h3_to_string(f.name).alias(f.name))
        else:
            exprs.append(F.col(f.name).cast(f.dataType).alias(f.name))
    if RULE_SCHEMA not in rules:  # tests only: let every column through
        declared = {f.name for f in spec.schema.fields}
        exprs += [F.col(c) for c in df.columns if c not in declared and c != SUPPRESSION]
    return df.select(*exprs).orderBy(*spec.key_columns)


def apply(
    counts_df: DataFrame,
    spec: TableSpec,
    k: int,
    *,
    margins: Sequence[Margin] = (),
    rules: frozenset[str] = ALL_RULES,
) -> tuple[DataFrame, DataFrame]:
    """(published_df, marked_df) of one count table.

    ``counts_df`` has ``resolution``, the cell columns as int64 H3 ids at every
    resolution, the period columns, the user count, optional other counts and
    ``*_est`` estimates (noise, if any, is already added: jobs.noise). ``published_df``
    is in the table's declared schema; ``marked_df`` is every row with ``_suppression``
    (for the manifest and as the ``marked_df`` of a :class:`Margin`). ``rules`` is for
    tests that show an attack succeeds once a rule is off.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    check_counts(counts_df, spec)
    marked_df = counts_df.transform(with_rounded_estimates, spec).transform(
        with_suppression, spec, k, margins, rules
    )
    published_df = marked_df.filter(F.col(SUPPRESSION).isNull()).transform(
        to_published, spec, rules
    )
    return published_df, marked_df


def mark(counts_df: DataFrame, spec: TableSpec, k: int, margins: Sequence[Margin] = ()):
    """All rows, with the ``_suppression`` decision (for the manifest's accounting)."""
    return apply(counts_df, spec, k, margins=margins)[1]


def publish(counts_df: DataFrame, spec: TableSpec, k: int, margins: Sequence[Margin] = ()):
    """The rows that may be published, in the table's declared schema."""
    return apply(counts_df, spec, k, margins=margins)[0]


def suppression_stats(marked_df: DataFrame, spec: TableSpec) -> dict:
    """Information loss of one table: rows and users published vs. suppressed.

    User counts are sums over rows (a user counts once per resolution and period).
    """
    rows = (
        marked_df.groupBy(SUPPRESSION)
        .agg(F.count(F.lit(1)).alias("rows"), F.sum(spec.user_column).alias("users"))
        .collect()
    )
    by = {r[SUPPRESSION]: (int(r["rows"]), int(r["users"] or 0)) for r in rows}
    none = (0, 0)
    return {
        "rows_published": by.get(None, none)[0],
        "rows_suppressed_primary": by.get(PRIMARY, none)[0],
        "rows_suppressed_secondary": by.get(SECONDARY, none)[0],
        "user_count_published": by.get(None, none)[1],
        "user_count_suppressed": by.get(PRIMARY, none)[1] + by.get(SECONDARY, none)[1],
        "user_count_suppressed_primary": by.get(PRIMARY, none)[1],
        "user_count_suppressed_secondary": by.get(SECONDARY, none)[1],
    }
