"""The numbered notebooks execute on the sample: a change that breaks one fails here.

Each notebook runs in its own kernel (notebooks/execute.py, as ``make notebooks``) on the
session's sample run (conftest ``sample_run``), passed through ``MOBITERRA_OUT``. Without
that fixture the first notebook makes the run itself, as on a fresh clone.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebook_execute", ROOT / "notebooks/execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

NOTEBOOKS = execute.numbered()
MONTH = "2020-04"
# figures drawn inline whatever tables the run has (more when it has them all); 0 would
# mean matplotlib drew to files only (MPLBACKEND=Agg leaking into the kernel)
MIN_FIGURES = 2
NOTE = re.compile(r"note: no '(\w+)' table in (\S+)")


def test_three_numbered_notebooks_in_reading_order():
    assert [p.stem[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]


@pytest.fixture(scope="module")
def out_dir(request, tmp_path_factory) -> Path:
    try:
        return request.getfixturevalue("sample_run")
    except pytest.FixtureLookupError:  # no shared run: notebook 01 makes one in here
        return tmp_path_factory.mktemp("notebooks-out")


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.slow
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_with_figures(source, out_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MOBITERRA_OUT", str(out_dir))
    target = execute.execute(source, tmp_path)  # raises CellExecutionError on a failing cell

    nb = nbformat.read(target, as_version=4)
    assert all(
        c.get("execution_count") for c in nb.cells if c.cell_type == "code" and c.source.strip()
    ), "a code cell did not run"
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures >= MIN_FIGURES, f"{source.name}: {figures} figures"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the kernel read the run the environment named, not ./out
    assert f"outputs: {out_dir / MONTH}" in text
    # a "table missing" note is only ever printed for a table the run really lacks
    for table, folder in NOTE.findall(text):
        assert not (Path(folder) / table).exists(), f"{source.name} missed {folder}/{table}"
    assert "Traceback" not in text
