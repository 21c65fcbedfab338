"""A small slice of data_samples for end-to-end runs in tests, and month comparisons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_samples"
CELLS = SAMPLE / "cells.csv"
# Volatile manifest entries: when the run happened and how long its stages took.
VOLATILE = ("created_at", "durations_s")


def write_small_events(path: Path, users: int = 400, departement: str = "69") -> list[str]:
    """Events of ``users`` subscribers living in ``departement`` in February (Feb + Apr
    2020), plus three bad rows (null user, unknown cell, null time) for the quarantine.
    Returns the raw user ids written."""
    homes = pd.read_parquet(
        SAMPLE / "truth" / "homes.parquet", columns=["user_id", "month", "departement_code"]
    )
    feb = homes[(homes["month"] == "2020-02") & (homes["departement_code"] == departement)]
    ids = sorted(feb["user_id"].unique())[:users]
    events = pq.read_table(SAMPLE / "events.parquet", filters=[("user_id", "in", ids)])
    some_cell = events.column("cell_id")[0].as_py()
    when = datetime(2020, 4, 15, 12, tzinfo=UTC)
    bad = pa.table(
        {
            "user_id": [None, ids[0], ids[1]],
            "timestamp": [when, when, None],
            "cell_id": [some_cell, "no-such-cell", some_cell],
        },
        schema=events.schema,
    )
    pq.write_table(pa.concat_tables([events, bad]), path)
    return ids


def _datasets(month_dir: Path) -> list[str]:
    """Relative paths of the Parquet datasets (folders holding .parquet files)."""
    folders = {p.parent for p in Path(month_dir).rglob("*.parquet")}
    return sorted(str(f.relative_to(month_dir)) for f in folders)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    return df.sort_values(list(df.columns), na_position="first").reset_index(drop=True)


def assert_same_month(a: Path, b: Path) -> list[str]:
    """Same Parquet datasets with the same rows (order aside) and the same manifest apart
    from its volatile entries; returns the datasets compared."""
    names = _datasets(a)
    assert names == _datasets(b), f"datasets differ: {names} vs {_datasets(b)}"
    for name in names:
        left, right = pd.read_parquet(Path(a) / name), pd.read_parquet(Path(b) / name)
        assert list(left.dtypes) == list(right.dtypes), name
        pd.testing.assert_frame_equal(_sorted(left), _sorted(right), obj=name)
    ma, mb = (json.loads((Path(m) / "manifest.json").read_text()) for m in (a, b))
    for key in VOLATILE:
        ma.pop(key), mb.pop(key)
    assert ma == mb
    return names
