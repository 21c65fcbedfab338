"""Ingest: parse, validate and pseudonymize events; quarantine bad rows; keep the month.

Every row read ends in exactly one bucket, so the manifest reconciles:
rows_read == rows_accepted + rows_out_of_period + rows_duplicate + sum(rows_rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from jobs import cells as cells_rules
from jobs.periods import utc_lit
from jobs.pseudonym import user_key
from mobiterra import columns as C

# Rejection reasons, in the order they are tested (the first that applies is recorded).
NULL_USER_ID = "null_user_id"
NULL_TIMESTAMP = "null_timestamp"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
NULL_CELL_ID = "null_cell_id"
UNKNOWN_CELL = "unknown_cell"
CELL_NOT_ACTIVE = "cell_not_active_at_time"  # id known, but no validity period covers the day
REASONS = (
    NULL_USER_ID,
    NULL_TIMESTAMP,
    UNPARSEABLE_TIMESTAMP,
    NULL_CELL_ID,
    UNKNOWN_CELL,
    CELL_NOT_ACTIVE,
    cells_rules.INVALID_COORDINATES,
    cells_rules.AMBIGUOUS,
)
_STATUS = "cell_status"
_KNOWN = "cell_known"
IN_PERIOD = "in_period"


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def with_parsed_timestamp(raw_df: DataFrame) -> DataFrame:
    """``timestamp`` as a UTC timestamp (null if unparseable) and ``timestamp_raw`` as read."""
    return raw_df.withColumn(C.TIMESTAMP_RAW, F.col(C.TIMESTAMP).cast("string")).withColumn(
        C.TIMESTAMP, F.col(C.TIMESTAMP).try_cast("timestamp")
    )


def with_cell_status(events_df: DataFrame, cells_df: DataFrame, timezone: str) -> DataFrame:
    """Join each event to the cells row active on its local day (broadcast: cells are small).

    Adds ``cell_status`` (ok / a cells reason / null when no row is active) and
    ``cell_known`` (the id exists in the cells table at all).
    """
    day = F.to_date(F.from_utc_timestamp(F.col(C.TIMESTAMP), timezone))
    active_df = cells_df.select(
        F.col(C.CELL_ID).alias("_cid"),
        C.VALID_FROM,
        C.VALID_TO,
        F.col(cells_rules.STATUS).alias(_STATUS),
    )
    known_df = (
        cells_df.select(F.col(C.CELL_ID).alias("_kid")).distinct().withColumn(_KNOWN, F.lit(True))
    )
    active = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col(C.VALID_FROM).isNull() | (day >= F.col(C.VALID_FROM)))
        & (F.col(C.VALID_TO).isNull() | (day <= F.col(C.VALID_TO)))
    )
    return (
        events_df.join(F.broadcast(active_df), on=active, how="left")
        .join(F.broadcast(known_df), on=F.col(C.CELL_ID) == F.col("_kid"), how="left")
        .drop("_cid", "_kid", C.VALID_FROM, C.VALID_TO)
        .withColumn(_KNOWN, F.coalesce(F.col(_KNOWN), F.lit(False)))
    )


def with_rejection_reason(df: DataFrame) -> DataFrame:
    """``reason``: the first rule a row breaks, null for a good row."""
    raw_ts = F.col(C.TIMESTAMP_RAW)
    # A parsed timestamp is never blank: testing it first spares formatting every typed
    # (Parquet) timestamp as a string (AND short-circuits in generated code).
    blank_ts = F.col(C.TIMESTAMP).isNull() & _blank(raw_ts)
    reason = (
        F.when(_blank(F.col(C.USER_ID)), F.lit(NULL_USER_ID))
        .when(blank_ts, F.lit(NULL_TIMESTAMP))
        .when(F.col(C.TIMESTAMP).isNull(), F.lit(UNPARSEABLE_TIMESTAMP))
        .when(_blank(F.col(C.CELL_ID)), F.lit(NULL_CELL_ID))
        .when(~F.col(_KNOWN), F.lit(UNKNOWN_CELL))
        .when(F.col(_STATUS).isNull(), F.lit(CELL_NOT_ACTIVE))
        .when(F.col(_STATUS) != F.lit(cells_rules.OK), F.col(_STATUS))
    )
    return df.withColumn(C.REASON, reason)


def with_period_flag(df: DataFrame, start_utc: datetime, end_utc: datetime) -> DataFrame:
    """``in_period``: the timestamp lies in [start_utc, end_utc).

    The bounds are naive UTC datetimes (config.month_bounds_utc); ``utc_lit`` pins them
    to UTC, since pyspark reads a naive datetime in the driver process's local time zone.
    """
    ts = F.col(C.TIMESTAMP)
    return df.withColumn(IN_PERIOD, (ts >= utc_lit(start_utc)) & (ts < utc_lit(end_utc)))


def classify_events(
    raw_df: DataFrame, cells_df: DataFrame, start_utc: datetime, end_utc: datetime, timezone: str
) -> DataFrame:
    """Raw events -> the same rows with ``reason`` and ``in_period``; nothing is dropped."""
    return (
        raw_df.transform(with_parsed_timestamp)
        .transform(with_cell_status, cells_df, timezone)
        .transform(with_rejection_reason)
        .transform(with_period_flag, start_utc, end_utc)
    )


def filter_rejected(classified_df: DataFrame) -> DataFrame:
    """Quarantine rows (schema QUARANTINE): no user id leaves ingest, even here."""
    return classified_df.filter(F.col(C.REASON).isNotNull()).select(
        C.REASON, C.SOURCE_FILE, C.TIMESTAMP_RAW, C.CELL_ID
    )


def accepted_events(
    classified_df: DataFrame,
    key: bytes,
    observation: Observation | None = None,
    keep: Column | None = None,
) -> DataFrame:
    """Good in-period rows, exact duplicates dropped, user_id replaced by its keyed pseudonym.

    With ``observation``, every classified row is also counted into ``bucket_metrics``
    as the result is computed (``observation.get`` after the action). ``keep`` (on
    ``timestamp``, ``user_id``, ``cell_id``) narrows the good rows before the shuffle, e.g.
    to the night events a baseline month's residence reads.
    """
    # The select comes first: an observed plan keeps every column below it, and the
    # quarantine-only ones (source file, raw timestamp) are costly to build per row.
    narrow_df = classified_df.select(C.REASON, IN_PERIOD, C.USER_ID, C.TIMESTAMP, C.CELL_ID)
    if observation is not None:
        narrow_df = narrow_df.observe(observation, *bucket_metrics())
    good_df = narrow_df.filter(F.col(C.REASON).isNull() & F.col(IN_PERIOD))
    if keep is not None:
        good_df = good_df.filter(keep)
    return (
        good_df.select(C.USER_ID, C.TIMESTAMP, C.CELL_ID)
        # Shuffle by user, then drop duplicates within partitions: one exchange and no
        # partial aggregation, which on near-unique keys only costs (halves the step).
        .repartition(C.USER_ID)
        .dropDuplicates([C.USER_ID, C.TIMESTAMP, C.CELL_ID])
        .select(
            user_key(F.col(C.USER_ID), key, classified_df.sparkSession).alias(C.USER_KEY),
            F.col(C.TIMESTAMP),
            F.col(C.CELL_ID),
        )
    )


def count_buckets(classified_df: DataFrame) -> DataFrame:
    """Rows per (reason, in_period): one small aggregate, read back for the manifest."""
    return classified_df.groupBy(C.REASON, IN_PERIOD).count()


def bucket_metrics() -> list[Column]:
    """count_buckets as ``DataFrame.observe`` metrics: counted while the accepted events
    are written, so ingest reads and classifies the events once, not twice."""
    reason = F.col(C.REASON)
    good = [
        F.count_if(reason.isNull() & F.col(IN_PERIOD)).alias("ok_in"),
        F.count_if(reason.isNull() & ~F.col(IN_PERIOD)).alias("ok_out"),
    ]
    other = F.count_if(reason.isNotNull() & ~reason.isin(*REASONS)).alias("other")
    return [*good, *[F.count_if(reason == r).alias(r) for r in REASONS], other]


def buckets_from_metrics(metrics: dict) -> list[dict]:
    """Observed bucket_metrics -> rows shaped like count_buckets' (reason, in_period, count)."""
    if metrics.get("other"):
        raise ValueError(f"rejection reasons outside {REASONS}: {metrics['other']} rows")
    rows = [
        {C.REASON: None, IN_PERIOD: True, "count": metrics["ok_in"]},
        {C.REASON: None, IN_PERIOD: False, "count": metrics["ok_out"]},
        *({C.REASON: r, IN_PERIOD: None, "count": metrics[r]} for r in REASONS),
    ]
    return [r for r in rows if r["count"]]


@dataclass
class IngestCounts:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_out_of_period: int = 0
    rows_duplicate: int = 0
    rows_rejected: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_buckets(cls, bucket_rows: list, rows_accepted: int) -> IngestCounts:
        counts = cls()
        in_period_good = 0
        for row in bucket_rows:
            n = int(row["count"])
            counts.rows_read += n
            if row[C.REASON] is not None:
                counts.rows_rejected[row[C.REASON]] = counts.rows_rejected.get(row[C.REASON], 0) + n
            elif row[IN_PERIOD]:
                in_period_good += n
            else:
                counts.rows_out_of_period += n
        counts.rows_accepted = rows_accepted
        counts.rows_duplicate = in_period_good - rows_accepted
        return counts

    def reconciles(self) -> bool:
        return self.rows_read == (
            self.rows_accepted
            + self.rows_out_of_period
            + self.rows_duplicate
            + sum(self.rows_rejected.values())
        )
