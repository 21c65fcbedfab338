"""Ingest: parse, validate and pseudonymize events; quarantine bad rows; keep the month.

Every row read ends in exactly one bucket, so the manifest reconciles:
rows_read == rows_accepted + rows_out_of_period + rows_duplicate + sum(rows_rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F

from jobs import cells as cells_rules
from jobs.periods import utc_lit
from jobs.pseudonym import user_key
from mobiterra import columns as C
from mobiterra import spark as engine

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
_READ_TS = "_timestamp_read"


def _blank(col: Column) -> Column:
    # one reference to ``col``: Spark inlines a computed column (the raw timestamp's text)
    # into the rule only when it is used once; otherwise it computes it for every row
    return F.coalesce(F.trim(col), F.lit("")) == ""


def with_parsed_timestamp(raw_df: DataFrame) -> DataFrame:
    """``timestamp`` as a UTC timestamp (null if unparseable); the value as read is kept
    (hidden) for :func:`with_raw_timestamp`."""
    return raw_df.withColumn(_READ_TS, F.col(C.TIMESTAMP)).withColumn(
        C.TIMESTAMP, F.col(C.TIMESTAMP).try_cast("timestamp")
    )


def with_raw_timestamp(df: DataFrame) -> DataFrame:
    """``timestamp_raw``: the timestamp as read, as text (the quarantine's column).

    Added after the cells join: a column made below a join is computed for every row
    that crosses it, while above it Spark inlines the cast into the rules, where only a
    null timestamp reaches it (formatting every Parquet timestamp cost ~1.5 s per 15 M
    rows on two cores)."""
    return df.withColumn(C.TIMESTAMP_RAW, F.col(_READ_TS).cast("string")).drop(_READ_TS)


def cell_timeline(cells_df: DataFrame, timezone: str) -> DataFrame:
    """Each cell id's whole timeline as rows (_cid, _from, _until, cell_status): its
    validity periods with their status and the gaps around and between them with
    CELL_NOT_ACTIVE, as UTC instants [_from, _until) of local midnights (null: open).

    Periods of one id never overlap (jobs.cells collapses ambiguous ids to one open row),
    so an event on a known id meets exactly one row and an unknown id none.
    """
    by_id = Window.partitionBy("_cid").orderBy(F.col(C.VALID_FROM).asc_nulls_first())
    periods_df = cells_df.select(
        F.col(C.CELL_ID).alias("_cid"),
        C.VALID_FROM,
        F.date_add(C.VALID_TO, 1).alias("_to"),  # first day after, exclusive
        F.col(cells_rules.STATUS).alias(_STATUS),
    )
    prev_to, is_first, is_last = F.col("_prev_to"), F.col("_is_first"), F.col("_is_last")
    gaps = F.array(
        # before the first period, between this one and the previous, after the last
        F.struct(F.lit(None).cast("date").alias("f"), F.col(C.VALID_FROM).alias("t"),
                 (is_first & F.col(C.VALID_FROM).isNotNull()).alias("on")),
        F.struct(prev_to.alias("f"), F.col(C.VALID_FROM).alias("t"),
                 (~is_first & (prev_to < F.col(C.VALID_FROM))).alias("on")),
        F.struct(F.col("_to").alias("f"), F.lit(None).cast("date").alias("t"),
                 (is_last & F.col("_to").isNotNull()).alias("on")),
    )  # fmt: skip
    gaps_df = (
        periods_df.withColumn("_prev_to", F.lag("_to").over(by_id))
        .withColumn("_is_first", F.row_number().over(by_id) == 1)
        .withColumn("_is_last", F.lead("_cid").over(by_id).isNull())
        .select("_cid", F.explode(gaps).alias("_g"))
        .filter(F.col("_g.on"))
        .select(
            "_cid",
            F.col("_g.f").alias(C.VALID_FROM),
            F.col("_g.t").alias("_to"),
            F.lit(CELL_NOT_ACTIVE).alias(_STATUS),
        )
    )

    def midnight(day: str) -> Column:  # UTC instant of local 00:00 on a date column
        return F.to_utc_timestamp(F.to_timestamp(F.col(day)), timezone)

    return periods_df.unionByName(gaps_df).select(
        "_cid", midnight(C.VALID_FROM).alias("_from"), midnight("_to").alias("_until"), _STATUS
    )


def with_cell_status(events_df: DataFrame, cells_df: DataFrame, timezone: str) -> DataFrame:
    """Join each event to the row of its cell's timeline (cell_timeline) holding its
    instant (broadcast: cells are small): one join, no time zone arithmetic per event.

    Adds ``cell_status`` (ok / a cells reason / CELL_NOT_ACTIVE between and around the
    validity periods) and ``cell_known`` (the event met a row: its id is in the cells
    table). A row without a timestamp meets only an open-ended row, so either may read
    null or false for it; its reason is the timestamp's, tested first.
    """
    ts = F.col(C.TIMESTAMP)
    holds = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col("_from").isNull() | (ts >= F.col("_from")))
        & (F.col("_until").isNull() | (ts < F.col("_until")))
    )
    timeline = F.broadcast(cell_timeline(cells_df, timezone))
    return (
        events_df.join(timeline, on=holds, how="left")
        .withColumn(_KNOWN, F.col("_cid").isNotNull())
        .drop("_cid", "_from", "_until")
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
        .transform(with_raw_timestamp)
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
    if engine.has_java_jobs(classified_df.sparkSession):
        return java_accepted_events(good_df, key)
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


def java_accepted_events(good_df: DataFrame, key: bytes) -> DataFrame:
    """accepted_events's rows by jobs/java/org/mobiterra/AcceptedEvents.java: the good rows
    shuffled by user id, then per partition the exact duplicates dropped and the
    pseudonyms made once per user, in primitive arrays sorted per user (no hash aggregate
    of every event; each partition comes out by user and time). ~24 bytes per event of a
    partition in memory: raise ``engine.shuffle_partitions`` with the input."""
    rows_df = good_df.select(
        C.USER_ID, F.unix_micros(C.TIMESTAMP).alias("_ts_us"), C.CELL_ID
    ).repartition(C.USER_ID)
    return engine.java_dataset(rows_df, "AcceptedEvents", key.hex()).select(
        C.USER_KEY, F.timestamp_micros("_ts_us").alias(C.TIMESTAMP), C.CELL_ID
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
