"""Daily trips between départements — the ``od_departements/`` table — and its gate.

Why a territorial table: ``od_trips`` publishes a pair of hexagons only where at least k
distinct users made a trip in it that day, at some resolution down to res 4. In rural
départements 11-20 % of a day's trips are in pairs below k at every resolution
(docs/accuracy.md), so the sum of published pairs under-counts a rural département's
flows. A planner asking "how many trips from the Cantal to the Cantal, from the Yonne to
Paris, each day" gets them here, counted once.

Rows: one per (origin département, destination département, local day): ``trips`` and
distinct ``users``. A trip is placed as od_trips places it: by its origin and destination
stays' hexagons (their département: the commune holding the hexagon,
mobiterra.degurba.commune_of_cells) and by the local day of its departure. Trips with a
hexagon in no known commune (outside metropolitan France) are left out.

The gate (docs/privacy.md, "Daily trips between départements"):

1. primary: a row with fewer than k distinct users (or trips) is suppressed;
2. no differencing against od_trips: from a published row an attacker subtracts every
   published od_trips pair (any resolution, period ``day`` or a day-part of that day)
   lying inside it; what is left are the row's trips in suppressed pairs. Those must be
   made by 0 or >= k distinct users, else the row is suppressed; the same after the day
   pairs alone (the attacker may leave the day-parts out). "Inside" is decided on
   the data: a published pair is inside a row when every trip it counts is in that row,
   which includes the pairs a geographic attacker could only guess are inside (stricter
   than the geography). Differencing through pairs that straddle two rows (a res-4 pair
   across a border, a night across midnight) is not audited, as with the territorial
   gate's H3 covers.

Nothing else is published with it (no monthly total, no margin per département), so no
other subtraction applies. With noise (``privacy.noise``) the trips are bounded per user
and day as for od_trips and the counts get their own noise (sensitivity c: one day holds at
most c trips of a user); rule 1 thresholds the noisy counts, rule 2 the raw remainder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import gate, noise, stages_mobility
from jobs.periods import DAY, filter_period_starts, with_periods
from jobs.residence import with_resolutions
from jobs.stages import materialize
from mobiterra import columns as C
from mobiterra import degurba, schemas
from mobiterra.config import DayPartParams, Month, RunConfig, month_bounds_utc

TABLE = "od_departements"
UNCOVERED_USERS = "uncovered_users"  # internal: users of the row's trips in no published pair
PRIMARY = gate.PRIMARY
SECONDARY = gate.SECONDARY
_DAY_START = "_day_start"
_ROW = "_row"
_KEY = (C.ORIGIN_CODE, C.DESTINATION_CODE, C.PERIOD_START)
_PAIR = (C.RESOLUTION, C.ORIGIN_CELL, C.DESTINATION_CELL, C.PERIOD_START, C.PERIOD)
# for the optional noise only (seeded by these keys; sensitivity in jobs.noise)
NOISE_SPEC = gate.TableSpec(
    TABLE,
    schemas.OD_DEPARTEMENTS,
    (),
    C.USERS,
    other_counts=(C.TRIPS,),
    period_columns=(*_KEY, C.PERIOD),
)


def cell_departements(
    cells: np.ndarray,
    cfg: RunConfig,
    cache_dir: Path | str = degurba.DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> pd.DataFrame:
    """``h3_id`` (int64), ``departement_code``, ``departement_name`` of each cell in a known
    commune (the others are left out)."""
    commune = degurba.commune_of_cells(cells, cfg.degurba, cache_dir, departements)
    communes = degurba.commune_classes(cfg.degurba, cache_dir, departements).set_index(
        "commune_code"
    )
    known = commune[commune.isin(communes.index)]
    attrs = communes.loc[known.to_numpy(), ["departement_code", "departement_name"]]
    return pd.DataFrame(
        {
            C.H3_ID: known.index.to_numpy(dtype=np.int64),
            C.DEPARTEMENT_CODE: attrs["departement_code"].to_numpy(dtype=object),
            "departement_name": attrs["departement_name"].to_numpy(dtype=object),
        }
    )


def with_departements(trips_df: DataFrame, cell_departements_df: DataFrame) -> DataFrame:
    """``origin_code`` and ``destination_code`` of each trip (null: in no known commune)."""
    deps = F.broadcast(cell_departements_df.select(C.H3_ID, C.DEPARTEMENT_CODE))
    origin = deps.select(
        F.col(C.H3_ID).alias(C.ORIGIN_H3), F.col(C.DEPARTEMENT_CODE).alias(C.ORIGIN_CODE)
    )
    destination = deps.select(
        F.col(C.H3_ID).alias(C.DESTINATION_H3),
        F.col(C.DEPARTEMENT_CODE).alias(C.DESTINATION_CODE),
    )
    return trips_df.join(origin, on=C.ORIGIN_H3, how="left").join(
        destination, on=C.DESTINATION_H3, how="left"
    )


def keyed_trips(
    trips_df: DataFrame,
    cell_departements_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    start=None,
    end=None,
) -> DataFrame:
    """Trips with their row: origin_code, destination_code and the local day of departure
    (``period_start``, as od_trips' ``day``); days starting in [start, end) (UTC)."""
    return (
        trips_df.select(C.USER_KEY, C.ORIGIN_H3, C.DESTINATION_H3, C.DEPARTURE)
        .transform(with_departements, cell_departements_df)
        .transform(with_periods, C.DEPARTURE, timezone, day_parts, [DAY])
        .transform(filter_period_starts, start, end)
        .drop(C.PERIOD)
    )


def count_departement_od(keyed_df: DataFrame) -> DataFrame:
    """Trips and distinct users per (origin_code, destination_code, period_start)."""
    return (
        keyed_df.filter(F.col(C.ORIGIN_CODE).isNotNull() & F.col(C.DESTINATION_CODE).isNotNull())
        .groupBy(*_KEY)
        .agg(F.count(F.lit(1)).alias(C.TRIPS), F.count_distinct(C.USER_KEY).alias(C.USERS))
    )


def uncovered_users(
    keyed_df: DataFrame,
    published_pairs_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    periods: list[str],
    resolutions: list[int],
) -> DataFrame:
    """Per row: distinct users of its trips that no published od_trips pair inside the row
    counts (rule 2 of the module docstring). Rows with every trip covered are absent.

    ``published_pairs_df``: od_trips rows the gate published (int64 cells, its key
    columns); the trips are exploded to od_trips' periods and resolutions exactly as
    jobs.od.count_od does, so a trip meets the pairs that count it."""
    return uncovered_by_family(
        keyed_df, published_pairs_df, timezone, day_parts, {UNCOVERED_USERS: periods}, resolutions
    ).filter(F.col(UNCOVERED_USERS) > 0)


def uncovered_by_family(
    keyed_df: DataFrame,
    published_pairs_df: DataFrame,
    timezone: str,
    day_parts: DayPartParams,
    families: dict[str, list[str]],
    resolutions: list[int],
) -> DataFrame:
    """:func:`uncovered_users` for several families of od_trips periods in one pass: a
    column per family (its name -> the periods an attacker subtracts together), 0 where
    every trip of the row is covered; one row per row with a trip (_KEY columns)."""
    row = F.when(
        F.col(C.ORIGIN_CODE).isNotNull() & F.col(C.DESTINATION_CODE).isNotNull(),
        F.concat_ws(
            "|", C.ORIGIN_CODE, C.DESTINATION_CODE, F.col(_DAY_START).cast("long").cast("string")
        ),
    )
    trips = keyed_df.select(
        C.USER_KEY,
        C.ORIGIN_H3,
        C.DESTINATION_H3,
        C.DEPARTURE,
        C.ORIGIN_CODE,
        C.DESTINATION_CODE,
        F.col(C.PERIOD_START).alias(_DAY_START),
    ).withColumn(_ROW, row)
    periods = sorted({p for ps in families.values() for p in ps})
    exploded = (
        trips.select(C.USER_KEY, C.DEPARTURE, C.ORIGIN_H3, C.DESTINATION_H3, _ROW)
        .transform(with_periods, C.DEPARTURE, timezone, day_parts, periods)
        .transform(
            with_resolutions,
            {C.ORIGIN_H3: C.ORIGIN_CELL, C.DESTINATION_H3: C.DESTINATION_CELL},
            resolutions,
        )
    )
    inside = (
        exploded.groupBy(*_PAIR)
        .agg(
            F.min(_ROW).alias("_lo"),
            F.max(_ROW).alias("_hi"),
            F.count(_ROW).alias("_placed"),
            F.count(F.lit(1)).alias("_all"),
        )
        .filter((F.col("_lo") == F.col("_hi")) & (F.col("_placed") == F.col("_all")))
        .select(*_PAIR)
        .join(published_pairs_df.select(*_PAIR), on=list(_PAIR), how="left_semi")
    )
    names = list(families)
    # per trip (user, departure): is it counted by a published pair inside its row, in
    # each family's periods
    covered = (
        exploded.join(inside, on=list(_PAIR), how="left_semi")
        .groupBy(C.USER_KEY, C.DEPARTURE)
        .agg(
            *[
                F.max(F.col(C.PERIOD).isin(families[n]).cast("int")).alias(f"_cov{i}")
                for i, n in enumerate(names)
            ]
        )
    )
    return (
        trips.filter(F.col(_ROW).isNotNull())
        .join(covered, on=[C.USER_KEY, C.DEPARTURE], how="left")
        .groupBy(C.ORIGIN_CODE, C.DESTINATION_CODE, F.col(_DAY_START).alias(C.PERIOD_START))
        .agg(
            *[
                F.count_distinct(
                    F.when(F.coalesce(F.col(f"_cov{i}"), F.lit(0)) == 0, F.col(C.USER_KEY))
                ).alias(n)
                for i, n in enumerate(names)
            ]
        )
    )


def decide(counts: pd.DataFrame, k: int) -> pd.Series:
    """Status of each row (None = published, "primary", "secondary"): ``counts`` has trips,
    users and one or more ``uncovered_users*`` columns (NaN = 0), each a remainder that
    must be 0 or >= k."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    primary = (counts[C.USERS] < k) | (counts[C.TRIPS] < k)
    small = pd.Series(False, index=counts.index)
    for col in [c for c in counts.columns if c.startswith(UNCOVERED_USERS)]:
        rest = counts[col].fillna(0)
        small |= (rest >= 1) & (rest < k)
    secondary = ~primary & small
    status = pd.Series([None] * len(counts), index=counts.index, dtype=object)
    status[primary] = PRIMARY
    status[secondary] = SECONDARY
    return status


def stage_od_departements(
    spark: SparkSession,
    cfg: RunConfig,
    stays_path: str,
    staging: Path,
    work: Path,
    cache_dir: Path | str = degurba.DEFAULT_CACHE,
    departements: list[str] | None = None,
) -> dict:
    """Gate and write ``staging/od_departements``; returns the manifest's table stats.

    Runs after stage_publish_mobility: rule 2 reads od_trips' marked rows
    (``work/marked-od_trips``). ``departements``: classify only these (tests)."""
    marked = Path(work) / f"marked-{gate.OD_TRIPS.name}"
    if not marked.exists():
        raise RuntimeError(f"{marked} missing: run stage_publish_mobility before this stage")
    stays_df = spark.read.parquet(stays_path)
    trips_df = stages_mobility.read_trips(spark, cfg, stays_path)
    if cfg.privacy.noise != "none":
        trips_df = noise.bound_trips(trips_df, cfg.privacy, cfg.timezone)
    # stays sit on their antenna cells' main hexagons: a few thousand distinct cells
    cells = np.array(
        [r[0] for r in stays_df.select(C.STAY_H3).distinct().collect()], dtype=np.int64
    )
    deps = cell_departements(cells, cfg, cache_dir, departements)
    deps_df = spark.createDataFrame(  # explicit schema: a month may have no stay at all
        deps[[C.H3_ID, C.DEPARTEMENT_CODE]], f"{C.H3_ID} long, {C.DEPARTEMENT_CODE} string"
    )
    start, end = month_bounds_utc(Month(cfg.month), cfg.timezone, tail_hours=0)
    keyed_df = keyed_trips(trips_df, deps_df, cfg.timezone, cfg.day_parts, start, end)
    keyed_df = materialize(spark, keyed_df, Path(work) / "od-departements-trips")
    counts_df = count_departement_od(keyed_df)
    if cfg.privacy.noise != "none":
        counts_df = noise.with_configured_noise(
            counts_df.withColumn(C.PERIOD, F.lit(DAY)), NOISE_SPEC, cfg.privacy, cfg.month
        ).drop(C.PERIOD)
    published_pairs_df = spark.read.parquet(str(marked)).filter(F.col(gate.SUPPRESSION).isNull())
    # the remainder after the day pairs and the day-parts' pairs, and after the day pairs
    # alone (an attacker may subtract either family)
    families = {UNCOVERED_USERS: list(cfg.od.periods)}
    if DAY in cfg.od.periods and len(cfg.od.periods) > 1:
        families[f"{UNCOVERED_USERS}_day"] = [DAY]
    rest_df = uncovered_by_family(
        keyed_df, published_pairs_df, cfg.timezone, cfg.day_parts, families, cfg.resolutions
    )
    counts_df = counts_df.join(rest_df, on=list(_KEY), how="left")
    counts = counts_df.toPandas()  # a row per day-flow
    counts["status"] = decide(counts, cfg.k)
    names = deps.drop_duplicates(C.DEPARTEMENT_CODE).set_index(C.DEPARTEMENT_CODE)[
        "departement_name"
    ]
    out = counts[counts["status"].isna()].sort_values(list(_KEY), kind="stable")
    table = pd.DataFrame(
        {
            C.ORIGIN_CODE: out[C.ORIGIN_CODE].to_numpy(dtype=object),
            C.ORIGIN_NAME: out[C.ORIGIN_CODE].map(names).to_numpy(dtype=object),
            C.DESTINATION_CODE: out[C.DESTINATION_CODE].to_numpy(dtype=object),
            C.DESTINATION_NAME: out[C.DESTINATION_CODE].map(names).to_numpy(dtype=object),
            C.PERIOD_START: out[C.PERIOD_START].to_numpy(),
            C.PERIOD: DAY,
            C.TRIPS: out[C.TRIPS].to_numpy(dtype=np.int64),
            C.USERS: out[C.USERS].to_numpy(dtype=np.int64),
        }
    )
    folder = Path(staging) / TABLE
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(table), folder / "part-00000.parquet")
    return stats(counts)


def to_arrow(table: pd.DataFrame) -> pa.Table:
    """The published rows in the declared schema (schemas.OD_DEPARTEMENTS) only."""
    types = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "bigint": pa.int64()}
    fields = [
        pa.field(f.name, types[f.dataType.simpleString()], f.nullable)
        for f in schemas.OD_DEPARTEMENTS.fields
    ]
    return pa.Table.from_pandas(table[[f.name for f in fields]], schema=pa.schema(fields),
                                preserve_index=False)  # fmt: skip


def stats(counts: pd.DataFrame) -> dict:
    """Rows and users published vs. suppressed, in jobs.gate.suppression_stats' keys."""
    by = counts.groupby(counts["status"].fillna("published"))[C.USERS].agg(["size", "sum"])

    def get(status: str, col: str) -> int:
        return int(by[col].get(status, 0))

    return {
        "rows_published": get("published", "size"),
        "rows_suppressed_primary": get(PRIMARY, "size"),
        "rows_suppressed_secondary": get(SECONDARY, "size"),
        "user_count_published": get("published", "sum"),
        "user_count_suppressed": get(PRIMARY, "sum") + get(SECONDARY, "sum"),
        "user_count_suppressed_primary": get(PRIMARY, "sum"),
        "user_count_suppressed_secondary": get(SECONDARY, "sum"),
        "trips_published": int(counts.loc[counts["status"].isna(), C.TRIPS].sum()),
        "trips_suppressed": int(counts.loc[counts["status"].notna(), C.TRIPS].sum()),
    }
