"""``mobiterra audit``: play the attacker against published months (mobiterra.attacks).

Reads only what a planner downloads: the month's tables, the baseline month's beside it
(cross-release attacks), and every file of the month folder for the identifier search
(raw ids sampled from the events, and their keyed pseudonyms under the run's key).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from mobiterra import attacks
from mobiterra.errors import InputError

ID_SAMPLE = 2_000  # raw ids searched for (each also as its keyed pseudonym)


def sample_ids(events: Path, n: int = ID_SAMPLE) -> list[str]:
    """Up to ``n`` distinct raw user ids of the events (Parquet file or folder)."""
    fmt = "csv" if Path(events).suffix == ".csv" else "parquet"
    scanner = ds.dataset(str(events), format=fmt).scanner(columns=["user_id"])
    seen: list[str] = []
    for batch in scanner.to_batches():
        seen.extend(pc.unique(batch.column(0)).to_pylist())
        seen = list(dict.fromkeys(x for x in seen if x is not None))
        if len(seen) >= n:
            break
    return seen[:n]


def keyed(ids: list[str], key: bytes) -> list[str]:
    """The pseudonyms ingest gives these ids (jobs.pseudonym.user_key, in Python)."""
    from jobs.pseudonym import KEY_HEX_CHARS  # lazily: jobs.pseudonym loads pyspark

    return [hmac.new(key, i.encode(), hashlib.sha256).hexdigest()[:KEY_HEX_CHARS] for i in ids]


def audit(
    out: Path, month: str, k: int, baseline_month: str | None = None, events: Path | None = None,
    key: bytes | None = None,
) -> dict:  # fmt: skip
    """{attack: leaks found} for OUT/MONTH (0 everywhere = the gate held)."""
    month_dir = Path(out) / month
    if not (month_dir / "residents").exists():
        raise InputError(f"{month_dir}: no published month there (no residents/)")
    baseline_dir = Path(out) / baseline_month if baseline_month else None
    if baseline_dir is not None and not (baseline_dir / "residents").exists():
        raise InputError(f"{baseline_dir}: the baseline month's release is not there")
    found = attacks.attack_month(month_dir, k, baseline_dir=baseline_dir)
    if events is not None:
        ids = sample_ids(events)
        needles = ids + (keyed(ids, key) if key else [])
        files = attacks.id_leaks(month_dir, needles)
        found["ids_searched"] = len(needles)
        found["files_with_ids"] = len(files)
    return found


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "audit",
        help="attack a published month: differencing, small values, identifiers",
        description="Try to re-derive suppressed values from OUT/MONTH (across resolutions, "
        "margins, and against the baseline month's release) and search its files for user "
        "ids. Prints {attack: leaks} as JSON; exit code 1 when anything leaks.",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--month", required=True)
    p.add_argument("--baseline-month")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--events", type=Path, help="events the month was made from (id search)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    from jobs.pseudonym import pseudonym_key

    key = None
    if args.events is not None:
        try:  # the run's key: the environment's, or the sample's public one
            key = pseudonym_key(args.events)
        except InputError:
            key = None  # raw ids only
    found = audit(args.out, args.month, args.k, args.baseline_month, args.events, key)
    print(json.dumps(found, indent=1))
    leaks = {a: n for a, n in found.items() if a not in ("ids_searched",) and n}
    return 1 if leaks else 0
