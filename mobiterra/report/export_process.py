"""The exports of a big month, written by a second Python process beside the maps.

``python -m mobiterra.report.export_process MONTH_DIR DEST K LANG LABEL`` reads the month's
published tables, writes their exports into DEST and prints the files written, one per
line. Started as a plain module (not multiprocessing's spawn, which imports the caller's
``__main__`` again and so re-runs a user's script that has no main guard).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from mobiterra import exports
    from mobiterra.report import inputs

    month_dir, dest, k, lang, label = argv
    tables = inputs.read_tables(Path(month_dir))
    for path in exports.export_month(tables, Path(dest), int(k), lang=lang, month=label):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
