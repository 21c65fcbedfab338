"""The month folder: written aside, then swapped in by rename, so a crash never leaves a
half-written month and a rerun replaces the previous one whole."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

STAGING_PREFIX = ".staging-"
RETIRED_PREFIX = ".retired-"


def staging_dir(out: Path, month: str) -> Path:
    """A fresh folder beside OUT/MONTH (same file system, so rename is atomic)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{STAGING_PREFIX}{month}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def commit_month(staging: Path, out: Path, month: str) -> Path:
    """Swap the staged folder in as OUT/MONTH; the previous month is removed afterwards."""
    final = Path(out) / month
    retired = None
    if final.exists():
        retired = Path(out) / f"{RETIRED_PREFIX}{month}-{uuid.uuid4().hex[:8]}"
        final.rename(retired)
    staging.rename(final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return final


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def clean_leftovers(out: Path, month: str) -> None:
    """Remove staging folders of crashed runs of this month; restore a retired month if
    a crash happened between the two renames of ``commit_month``."""
    out = Path(out)
    if not out.exists():
        return
    for p in out.glob(f"{STAGING_PREFIX}{month}-*"):
        shutil.rmtree(p, ignore_errors=True)
    retired = sorted(out.glob(f"{RETIRED_PREFIX}{month}-*"))
    final = out / month
    for p in retired:
        if not final.exists():
            p.rename(final)
        else:
            shutil.rmtree(p, ignore_errors=True)


def write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path
