"""The pipeline's stages. Each reads paths, runs pure transforms, writes once, and
returns the path(s) it wrote plus small values — so Prefect tasks and the plain CLI
share them (DataFrames and sessions never cross a stage boundary)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import cells as cells_rules
from jobs import expansion, gate, ingest, noise, release, residence, shift
from jobs.coverage import COVERAGE_COLUMNS, COVERAGE_VERSION, coverage_table
from jobs.periods import local_time
from jobs.population import population_by_h3, read_population
from jobs.pseudonym import pseudonym_key
from jobs.readers import prune_to_days, read_cells_pandas, read_events
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.cachefile import cached
from mobiterra.config import Month, PrivacyParams, RunConfig, month_bounds_utc
from mobiterra.errors import InputError

CELLS_STATUS_SCHEMA = T.StructType(
    [
        T.StructField(C.CELL_ID, T.StringType(), False),
        T.StructField(C.VALID_FROM, T.DateType(), True),
        T.StructField(C.VALID_TO, T.DateType(), True),
        T.StructField(cells_rules.STATUS, T.StringType(), False),
    ]
)


@dataclass
class IngestResult:
    events: str  # accepted events of the month (pseudonymous; work folder only)
    counts: dict
    users: int | None  # None for a nights-only ingest
    cells: dict


def _none_for_nat(values: pd.Series) -> list:
    # NaT is itself a ``date`` instance: test for missing values first
    return [None if v is None or pd.isna(v) else v for v in values]


def validated_cells(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    return cells_rules.validate_cells(read_cells_pandas(cfg.cells))


def stage_ingest(
    spark: SparkSession,
    cfg: RunConfig,
    month: str,
    work: Path,
    staging: Path | None,
    nights_only: bool = False,
) -> IngestResult:
    """Validate, quarantine (into ``staging`` when given), keep the month, pseudonymize.

    ``nights_only`` (a baseline month, of which only the usual residence is used) keeps
    the night-time events alone before the dedup shuffle and the pseudonyms; its counts
    are then ``rows_in_period`` (good rows of the month) and ``night_rows_accepted``.
    """
    key = pseudonym_key(cfg.events)
    cells_pd, cells_quarantine = validated_cells(cfg)
    raw_df = read_events(spark, cfg.events)
    cells_df = spark.createDataFrame(
        list(
            zip(
                cells_pd[C.CELL_ID].astype(str),
                _none_for_nat(cells_pd[C.VALID_FROM]),
                _none_for_nat(cells_pd[C.VALID_TO]),
                cells_pd[cells_rules.STATUS].astype(str),
                strict=True,
            )
        ),
        CELLS_STATUS_SCHEMA,
    )
    start, end = month_bounds_utc(month, cfg.timezone, cfg.residence.night_end_hour)
    # day-partitioned input: only the month's folders, a day's margin each side (whether
    # the folders are UTC or local days); rows read are then those of these folders
    one_day = pd.Timedelta(days=1)
    raw_df = prune_to_days(raw_df, (start - one_day).date(), (end + one_day).date())
    classified_df = ingest.classify_events(raw_df, cells_df, start, end, cfg.timezone)
    if staging is None:
        # No quarantine (a baseline month): only the month's rows matter, and the filter
        # prunes Parquet row groups by their time statistics. Counts are of these rows.
        classified_df = classified_df.filter(F.col(ingest.IN_PERIOD))

    # The buckets are counted while the accepted events are written (one pass).
    observation = Observation(f"ingest-{month}")
    events_path = work / f"events-{month}"
    m = Month(month)
    local_ts = local_time(F.col(C.TIMESTAMP), cfg.timezone, m.first_day, m.last_day)
    keep = residence.is_night(local_ts, cfg.residence) if nights_only else None
    ingest.accepted_events(classified_df, key, observation, keep).write.mode("overwrite").parquet(
        str(events_path)
    )
    try:
        buckets = ingest.buckets_from_metrics(observation.get)
    except Exception:  # noqa: BLE001 - Spark fails to observe a job whose plan was pruned
        # (e.g. no row in the month): count the buckets in a second pass instead.
        buckets = [r.asDict() for r in ingest.count_buckets(classified_df).collect()]
    if staging is not None:
        rejected = sum(int(r["count"]) for r in buckets if r[C.REASON] is not None)
        qdir = staging / "quarantine"
        events_q = (
            ingest.filter_rejected(classified_df)
            if rejected
            else spark.createDataFrame([], schemas.QUARANTINE)
        )
        events_q.coalesce(1).write.mode("overwrite").parquet(str(qdir / "events"))
        (qdir / "cells").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(cells_quarantine.astype("string"), preserve_index=False),
            qdir / "cells" / "part-00000.parquet",
        )

    accepted_df = spark.read.parquet(str(events_path))
    rows_accepted = accepted_df.count()
    counts = ingest.IngestCounts.from_buckets(buckets, rows_accepted)
    if nights_only:
        in_period = counts.rows_accepted + counts.rows_duplicate
        if rows_accepted == 0:
            raise InputError(
                f"{cfg.events}: no usable night-time rows in month {month} "
                f"({in_period:,} usable rows in the month)"
            )
        return IngestResult(
            str(events_path),
            {"rows_in_period": in_period, "night_rows_accepted": rows_accepted},
            None,
            {},
        )
    if counts.rows_read == 0:
        raise InputError(f"{cfg.events}: no rows")
    if rows_accepted == 0:
        raise InputError(
            f"{cfg.events}: no usable rows in month {month} "
            f"(read {counts.rows_read:,}; out of period {counts.rows_out_of_period:,}; "
            f"rejected {sum(counts.rows_rejected.values()):,})"
        )
    users = accepted_df.select(C.USER_KEY).distinct().count()
    cell_stats = {
        "cells_read": int(
            len(cells_pd) + (cells_quarantine[C.REASON] == cells_rules.NULL_CELL_ID).sum()
        ),
        "cells_usable": int((cells_pd[cells_rules.STATUS] == cells_rules.OK).sum()),
        "cells_quarantined": int(len(cells_quarantine)),
    }
    return IngestResult(str(events_path), asdict(counts), users, cell_stats)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    files = (
        sorted(p for p in Path(path).rglob("*") if p.is_file())
        if Path(path).is_dir()
        else [Path(path)]
    )
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def stage_coverage(cfg: RunConfig, cache_dir: Path) -> str:
    """Antenna cell -> H3 weights at the finest resolution, cached by the hashes of the cells
    file and of the population reference (``--population``) when there is one."""
    reference_digest = _file_digest(cfg.population) if cfg.population else "insee"
    digest = hashlib.sha256(
        f"{_file_digest(cfg.cells)}|{cfg.coverage.model_dump_json()}|{COVERAGE_VERSION}"
        f"|{cfg.finest_resolution}|{reference_digest}".encode()
    ).hexdigest()[:20]
    path = Path(cache_dir) / f"coverage-{digest}.parquet"

    def build() -> pa.Table:
        cells_pd, _ = validated_cells(cfg)
        reference = (
            population_by_h3(read_population(cfg.population), cfg.finest_resolution, cfg.population)
            if cfg.population
            else None
        )
        table = coverage_table(
            cells_pd, cfg.coverage.strategy, cfg.finest_resolution, cfg.coverage, reference
        )
        table = table.assign(
            **{
                C.VALID_FROM: _none_for_nat(table[C.VALID_FROM]),
                C.VALID_TO: _none_for_nat(table[C.VALID_TO]),
            }
        )
        return pa.Table.from_pandas(table[COVERAGE_COLUMNS], preserve_index=False).cast(
            pa.schema(
                [
                    (C.CELL_ID, pa.string()),
                    (C.VALID_FROM, pa.date32()),
                    (C.VALID_TO, pa.date32()),
                    (C.H3_ID, pa.int64()),
                    (C.WEIGHT, pa.float64()),
                ]
            )
        )

    # built once per cells file (a concurrent run waits, then reads it); nothing is read
    # back here: Spark reads the file
    cached(path, build, lambda arrow, tmp: pq.write_table(arrow, tmp), lambda _: None)
    # absolute: written here by pyarrow, read by Spark, and a Spark Connect server resolves
    # a relative path against its own working directory
    return str(path.absolute())


def stage_residence(
    spark: SparkSession,
    cfg: RunConfig,
    events_path: str,
    coverage_path: str,
    month: str,
    work: Path,
) -> tuple[str, int]:
    """Usual residence per user for ``month`` (pseudonymous; work folder only)."""
    m = Month(month)
    last = pd.Timestamp(m.next_first_day).date() - pd.Timedelta(days=1)
    homes_df = residence.usual_residence(
        spark.read.parquet(events_path),
        spark.read.parquet(coverage_path),
        cfg.residence,
        cfg.timezone,
        m.first_day,
        last,
    )
    path = work / f"homes-{month}"
    return str(path), materialize(spark, homes_df, path).count()


def materialize(spark: SparkSession, df: DataFrame, path: Path) -> DataFrame:
    """Write ``df`` to ``path`` (work folder) and read it back: later steps start from
    the file, not from a re-run of the plan that made it."""
    df.write.mode("overwrite").parquet(str(path))
    return spark.read.parquet(str(path))


def _publish_table(
    spark: SparkSession,
    counts_df,
    spec: gate.TableSpec,
    privacy: PrivacyParams,
    month: str,
    staging: Path,
    work: Path,
    margins: tuple[gate.Margin, ...] = (),
    estimate: Callable[[DataFrame], DataFrame] | None = None,
) -> dict:
    """Materialize the (small) counts, add the optional noise, pass them through the
    gate, write, account.

    The gate's marked rows are kept in ``work/marked-<table>`` (a margin of later tables).
    ``estimate`` adds the ``*_est`` columns to the rows the gate published (jobs.expansion):
    the gate decides on raw (or noisy raw) counts only. With noise the gate thresholds
    the noisy values (post-processing: the epsilon guarantee holds) and every later
    margin compares noisy published values.
    """
    counts_df = materialize(spark, counts_df, work / f"counts-{spec.name}")
    if privacy.noise != "none":
        counts_df = materialize(
            spark,
            noise.with_configured_noise(counts_df, spec, privacy, month),
            work / f"noisy-{spec.name}",
        )
    _, marked_df = gate.apply(counts_df, spec, privacy.k, margins=margins)
    marked_df = materialize(spark, marked_df, work / f"marked-{spec.name}")
    published_df = marked_df.filter(F.col(gate.SUPPRESSION).isNull())
    if estimate is not None:
        published_df = estimate(published_df)
    published_df.transform(gate.to_published, spec).coalesce(1).write.mode("overwrite").parquet(
        str(staging / spec.name)
    )
    stats = gate.suppression_stats(marked_df, spec)
    summary = noise.noise_summary(spec.name, privacy)
    if summary is not None:
        stats["noise"] = summary
    return stats


def stage_publish(
    spark: SparkSession,
    cfg: RunConfig,
    homes_path: str,
    baseline_homes_path: str | None,
    staging: Path,
    work: Path,
    expansion_path: str | None = None,
) -> dict:
    """Aggregate, gate and write residents (and residence_shift with a baseline).

    ``expansion_path``: the month's expansion table (stage_expansion); without it
    ``residents_est`` is null.
    """
    homes_df = spark.read.parquet(homes_path)
    estimate = None
    if expansion_path is not None:
        factors = expansion.read_factors(expansion_path)
        estimate = expansion.estimator(
            homes_df, cfg.resolutions, factors, C.RESIDENTS, C.RESIDENTS_EST
        )
    stats = {
        "residents": _publish_table(
            spark,
            residence.count_residents(homes_df, cfg.resolutions).withColumn(
                C.RESIDENTS_EST, F.lit(None).cast("double")
            ),
            gate.RESIDENTS,
            cfg.privacy,
            cfg.month,
            staging,
            work,
            estimate=estimate,
        )
    }
    if baseline_homes_path is not None:
        baseline_homes_df = spark.read.parquet(baseline_homes_path)
        paired_df = shift.pair_homes(baseline_homes_df, homes_df)
        # Margins (docs/privacy.md): residents of a cell vs. the flows into it, and the
        # baseline month's residents (re-gated here: the gate is deterministic, so this is
        # what the baseline release published) vs. the flows out of it.
        _, baseline_marked_df = release.released_residents(
            baseline_homes_df, cfg, cfg.baseline_month
        )
        margins = (
            gate.Margin(
                spark.read.parquet(str(work / "marked-residents")),
                gate.RESIDENTS,
                C.DESTINATION_CELL,
            ),
            gate.Margin(baseline_marked_df, gate.RESIDENTS, C.ORIGIN_CELL),
        )
        stats["residence_shift"] = _publish_table(
            spark,
            shift.count_residence_shift(paired_df, cfg.resolutions),
            gate.RESIDENCE_SHIFT,
            cfg.privacy,
            cfg.month,
            staging,
            work,
            margins,
        )
    return stats
