"""Read the contract's input files (events, cells) and check their columns.

Unusable input raises InputError with one line naming the file and the problem.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.errors import InputError

# The folder level of events partitioned by day (the simulator writes events/day=YYYY-MM-DD/)
PARTITION_DAY = "day"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt")


def input_format(path: Path) -> str:
    """'csv' or 'parquet', from the file name (a directory: from the files it holds)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
        if not files:
            raise InputError(f"{path}: directory holds no data files")
        if all(p.name.lower().endswith(CSV_SUFFIXES) for p in files):
            return "csv"
        return "parquet"
    return "csv" if path.name.lower().endswith(CSV_SUFFIXES) else "parquet"


def require_columns(found: list[str], required: tuple[str, ...], path: Path, what: str) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise InputError(
            f"{path}: {what} file lacks column(s) {', '.join(missing)}; "
            f"found: {', '.join(found) or '(none)'}"
        )


def events_columns(path: Path) -> list[str]:
    """Column names of an events input, read on the driver without Spark (fails fast)."""
    path = Path(path)
    fmt = input_format(path)
    first = path
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
        )
        first = files[0]
    try:
        if fmt == "csv":
            opener = {".gz": "gzip", ".bz2": "bz2"}.get(first.suffix)
            header = pd.read_csv(first, nrows=0, compression=opener or "infer")
            return [str(c).strip() for c in header.columns]
        return list(pq.read_schema(first).names)
    except Exception as e:  # noqa: BLE001 - any read failure is an unusable input
        raise InputError(f"{first}: unreadable {fmt} events file ({_first_line(e)})") from None


def check_events(path: Path) -> None:
    require_columns(events_columns(path), schemas.EVENTS_REQUIRED, Path(path), "events")


def read_events(spark: SparkSession, path: Path) -> DataFrame:
    """Events as strings-as-read plus the source file: user_id, timestamp_raw, cell_id.

    Parsing happens in ingest so that bad values become quarantine rows, not crashes.
    """
    path = Path(path)
    fmt = input_format(path)
    try:
        if fmt == "csv":
            raw_df = spark.read.option("header", True).option("mode", "PERMISSIVE").csv(str(path))
        else:
            raw_df = spark.read.parquet(str(path))
        found = raw_df.columns
    except AnalysisException as e:
        raise InputError(f"{path}: unreadable {fmt} input ({_first_line(e)})") from None
    require_columns(found, schemas.EVENTS_REQUIRED, path, "events")
    partition = (
        [F.col(PARTITION_DAY).cast("date").alias(PARTITION_DAY)]
        if fmt == "parquet" and _day_partitioned(path, found)
        else []
    )
    return raw_df.select(
        F.col(C.USER_ID).cast("string").alias(C.USER_ID),
        F.col(C.TIMESTAMP).alias(C.TIMESTAMP),
        F.col(C.CELL_ID).cast("string").alias(C.CELL_ID),
        F.col("_metadata.file_path").alias(C.SOURCE_FILE),
        *partition,
    )


def _day_partitioned(path: Path, found: list[str]) -> bool:
    """Spark found a ``day`` column the files do not store: it comes from ``day=…``
    folder names."""
    return (
        Path(path).is_dir() and PARTITION_DAY in found and PARTITION_DAY not in events_columns(path)
    )


def prune_to_days(raw_df: DataFrame, first_day: date, last_day: date) -> DataFrame:
    """Events partitioned by ``day=YYYY-MM-DD`` folders: only the folders of
    [first_day, last_day] are read (Spark prunes them from the listing). A folder whose
    name is not a date is kept (its rows are classified, never silently dropped). Other
    inputs are returned as they are."""
    if PARTITION_DAY not in raw_df.columns:
        return raw_df
    day = F.col(PARTITION_DAY)
    return raw_df.filter(day.isNull() | day.between(F.lit(first_day), F.lit(last_day)))


def read_small_table(path: Path, what: str) -> pd.DataFrame:
    """A small CSV (as strings) or Parquet input on the driver, its column names stripped;
    an unreadable file is an InputError naming ``what`` it should have been."""
    path = Path(path)
    fmt = input_format(path)
    try:
        if fmt == "csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=True)
        else:
            df = pq.read_table(path).to_pandas()
    except Exception as e:  # noqa: BLE001 - any read failure is an unusable input
        raise InputError(f"{path}: unreadable {fmt} {what} file ({_first_line(e)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_cells_pandas(path: Path) -> pd.DataFrame:
    """The cells table (small) on the driver, all optional columns present."""
    df = read_small_table(path, "cells")
    require_columns(list(df.columns), schemas.CELLS_REQUIRED, path, "cells")
    for col in schemas.CELLS_OPTIONAL:
        if col not in df.columns:
            df[col] = None
    return df[[C.CELL_ID, C.LAT, C.LON, *schemas.CELLS_OPTIONAL]].copy()


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
