"""The exports of a big month, written by a second Python process beside the maps.

``python -m mobiterra.report.export_process MONTH_DIR DEST K LANG LABEL`` reads the month's
published tables, writes their exports into DEST and prints the files written, one per
line. Started as a plain module (not multiprocessing's spawn, which imports the caller's
``__main__`` again and so re-runs a user's script that has no main guard).
"""

from __future__ import annotations

import sys
from pathlib import Path


def export_published(month_dir: Path, dest: Path, k: int, lang: str, label: str) -> list[Path]:
    """exports.export_month of the month's published tables, read from ``month_dir``."""
    from mobiterra import exports
    from mobiterra.report import inputs

    return exports.export_month(inputs.read_tables(month_dir), dest, k, lang=lang, month=label)


def main(argv: list[str]) -> int:
    month_dir, dest, k, lang, label = argv
    for path in export_published(Path(month_dir), Path(dest), int(k), lang, label):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
