"""The publication gate: the single door every published table goes through.

Rules (DESIGN.md "Privacy"):
- k applies to raw distinct-user counts, before any expansion to total population;
- no published count or estimate lies in [1, k); estimates are rounded;
- H3 cells leave as canonical 15-character strings; no identifier column can pass
  (the output schema is declared, and only declared columns are selected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.h3cols import h3_to_string

SUPPRESSION = "_suppression"  # null = published, else "primary" / "secondary"
PRIMARY = "primary"
SECONDARY = "secondary"


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
SPECS = {s.name: s for s in (RESIDENTS, RESIDENCE_SHIFT, PRESENT_POPULATION, OD_TRIPS)}


def with_primary_suppression(counts_df: DataFrame, spec: TableSpec, k: int) -> DataFrame:
    """Mark rows resting on fewer than k distinct users."""
    return counts_df.withColumn(SUPPRESSION, F.when(F.col(spec.user_column) < k, F.lit(PRIMARY)))


def with_safe_estimates(df: DataFrame, spec: TableSpec, k: int) -> DataFrame:
    """Round estimates; an estimate below k (possible with a factor < 1) is withheld (null)."""
    for col in spec.estimate_columns:
        if col not in df.columns:
            df = df.withColumn(col, F.lit(None).cast("long"))
        rounded = F.round(F.col(col)).cast("long")
        df = df.withColumn(col, F.when(rounded >= k, rounded))
    return df


def to_published(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select exactly the declared output columns, cells as strings, in a stable order."""
    exprs = []
    for f in spec.schema.fields:
        if f.name in spec.cell_columns:
            exprs.append(h3_to_string(f.name).alias(f.name))
        else:
            exprs.append(F.col(f.name).cast(f.dataType).alias(f.name))
    return df.select(*exprs).orderBy(*spec.key_columns)


def mark(counts_df: DataFrame, spec: TableSpec, k: int) -> DataFrame:
    """All rows, with the ``_suppression`` decision (for the manifest's accounting)."""
    return counts_df.transform(with_primary_suppression, spec, k)


def publish(counts_df: DataFrame, spec: TableSpec, k: int) -> DataFrame:
    """The rows that may be published, in the table's declared schema.

    ``counts_df`` has ``resolution``, the cell columns as int64, the period columns,
    the user count and optional estimate / other count columns.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    return (
        mark(counts_df, spec, k)
        .filter(F.col(SUPPRESSION).isNull())
        .transform(with_safe_estimates, spec, k)
        .transform(to_published, spec)
    )
