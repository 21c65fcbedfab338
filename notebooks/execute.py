"""Execute the numbered notebooks: jupytext ``.py`` -> notebook -> nbclient -> ``.ipynb``.

``python notebooks/execute.py [--out DIR] [NAME ...]`` (``make notebooks``) writes each
executed notebook, outputs and figures included, to ``DIR/<name>.ipynb`` (default
``.state/notebooks``). The kernel is this interpreter's (``python3`` resolves to
``sys.executable``), started in ``notebooks/`` so a notebook imports ``sample_run``; it
inherits the environment, e.g. ``MOBITERRA_OUT``. A failing cell stops with the cell's
error, and the partly executed notebook is still written (to see where it broke).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent
DEFAULT_OUT = NOTEBOOKS.parent / ".state" / "notebooks"
CELL_TIMEOUT_S = 900  # the first notebook may run the whole pipeline on a fresh clone


def numbered() -> list[Path]:
    """The notebooks, in reading order: ``NN_name.py`` (py:percent) files."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def execute(source: Path, out_dir: Path = DEFAULT_OUT) -> Path:
    """Run one py:percent notebook top to bottom; returns the executed ``.ipynb``."""
    nb = jupytext.read(source)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    target = Path(out_dir) / f"{source.stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.execute()
    finally:
        nbformat.write(nb, target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks to run (e.g. 01); default: all")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of executed notebooks")
    args = p.parse_args(argv)
    chosen = [
        s for s in numbered() if not args.names or any(s.stem.startswith(n) for n in args.names)
    ]
    if not chosen:
        print(f"no notebook matches {args.names} in {NOTEBOOKS}", file=sys.stderr)
        return 2
    for source in chosen:
        start = time.monotonic()
        try:
            target = execute(source, args.out)
        except CellExecutionError as e:
            print(f"{source.name}: failed\n{e}", file=sys.stderr)
            return 1
        print(f"{source.name} -> {target} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
