"""Build a month's planner outputs: ``maps/``, ``exports/`` and ``report/index.html``.

Reads only the month's published tables and manifest (and the baseline month's published
residents); runs on a finished month (``mobiterra report``) or on the staging folder of a
run before it is committed (jobs.pipeline.run_month).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mobiterra.config import ReportParams, RunConfig
from mobiterra.report import inputs
from mobiterra.report.context import Context
from mobiterra.report.export_process import export_published
from mobiterra.report.labels import TEXT, month_label

OUTPUTS = ("maps", "exports", "report")
# Published rows from which the exports are written by a second process beside the maps:
# starting it costs ~2-3 s of imports; at 10 M events (1.1 M rows) the exports took 15 s
# and the maps 11 s, on the bundled sample (~0.2 M rows) a few seconds each
SEPARATE_EXPORT_ROWS = 500_000
EXPORT_MODULE = "mobiterra.report.export_process"
log = logging.getLogger(__name__)


def build_report(
    cfg: RunConfig | None,
    month_dir: Path,
    baseline_dir: Path | None = None,
    *,
    lang: str | None = None,
) -> dict:
    """Write maps/, exports/ and report/index.html into ``month_dir``; return a summary.

    cfg: report settings (``cfg.report``); the month, baseline month and k come from the
        month's manifest, i.e. from what was actually published.
    baseline_dir: the baseline month's folder (default: beside ``month_dir``, or under
        ``cfg.out`` when ``month_dir`` is a staging folder).
    lang: "fr" or "en"; overrides ``cfg.report.lang``.
    The three folders are written aside and swapped in, so a failure leaves the previous
    ones in place.
    """
    import mobiterra
    from mobiterra import exports, maps
    from mobiterra.geo import departements
    from mobiterra.report import figures, page

    started = time.perf_counter()
    params = cfg.report if cfg is not None else ReportParams()
    lang = lang or params.lang
    month_dir = Path(month_dir)
    data = inputs.read_month(month_dir, baseline_dir or _baseline_dir(cfg, month_dir))
    work = month_dir / f".report-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        ctx = Context(
            data=data,
            lang=lang,
            source=params.source,
            max_flows=params.max_flows,
            departements=departements().to_crs(maps.LAMBERT93),
        )
        label = month_label(data.month, lang)
        if sum(len(df) for df in data.tables.values()) < SEPARATE_EXPORT_ROWS:
            made, notes = figures.build_maps(ctx, work / "maps", params.departements)
            t_maps = time.perf_counter()
            files = exports.export_month(
                data.tables, work / "exports", data.k, lang=lang, month=label
            )
        else:
            # A big month: the exports (pandas, GDAL) in a second process while this one
            # draws the maps (matplotlib); both are CPU-bound Python, so threads would not
            # overlap. A new interpreter, not a fork: this process holds the JVM
            # gateway's threads.
            with _Exporting(month_dir, work / "exports", data.k, lang, label) as exporting:
                made, notes = figures.build_maps(ctx, work / "maps", params.departements)
                t_maps = time.perf_counter()
                files = exporting.result()
        t_exports = time.perf_counter()
        figs = [
            page.Figure(m.title, m.note, f"maps/{m.name}.png", f"maps/{m.name}.svg", m.scope)
            for m in made
        ]
        downloads = [
            page.Download(Path("exports") / f.name, _table_of(f), f.stat().st_size) for f in files
        ]
        generated = TEXT[lang]["generated"].format(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), version=mobiterra.__version__
        )
        html = page.render(data, figs, notes, downloads, lang, generated, figures.extremes(ctx))
        (work / "report").mkdir(parents=True, exist_ok=True)
        (work / "report" / "index.html").write_text(html, encoding="utf-8")
        _swap_in(work, month_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    done = time.perf_counter()
    return {
        "page": str(month_dir / "report" / "index.html"),
        "maps": [m.name for m in made],
        "exports": len(files),
        "notes": notes,
        "seconds": {
            "maps": round(t_maps - started, 2),
            "exports_after_maps": round(t_exports - t_maps, 2),
            "total": round(done - started, 2),
        },
    }


class _Exporting:
    """The month's exports written by ``python -m mobiterra.report.export_process``.

    ``result()`` waits for it and returns the files it wrote. Should it fail (it can only
    fail the way the same code would here), the exports are written again in this
    process, so the error, if it is one, is raised with its own traceback."""

    def __init__(self, month_dir: Path, dest: Path, k: int, lang: str, label: str):
        self.month_dir, self.dest, self.k, self.lang, self.label = month_dir, dest, k, lang, label

    def __enter__(self) -> _Exporting:
        # the parent's import path, as multiprocessing's spawn would pass it
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", EXPORT_MODULE]
            + [str(a) for a in (self.month_dir, self.dest, self.k, self.lang, self.label)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
        )
        return self

    def result(self) -> list[Path]:
        out, _ = self.proc.communicate()
        if self.proc.returncode == 0:
            return [Path(line) for line in out.splitlines() if line]
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
        log.warning(
            "the export process failed (%s); writing the exports here instead",
            tail[0] if tail else f"exit code {self.proc.returncode}",
        )
        shutil.rmtree(self.dest, ignore_errors=True)
        return export_published(self.month_dir, self.dest, self.k, self.lang, self.label)

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:  # the maps failed: the exports are not wanted
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def _baseline_dir(cfg: RunConfig | None, month_dir: Path) -> Path | None:
    if cfg is not None and cfg.baseline_month:
        return Path(cfg.out) / cfg.baseline_month
    return None  # inputs.read_month looks beside month_dir


def _table_of(path: Path) -> str:
    return "README" if path.name == "README.md" else path.stem


def _swap_in(work: Path, month_dir: Path) -> None:
    """Replace maps/, exports/, report/ by the freshly written ones (old ones removed)."""
    for name in OUTPUTS:
        new, final = work / name, month_dir / name
        if not new.exists():
            new.mkdir(parents=True)
        if final.exists():
            final.rename(work / f"old-{name}")
        new.rename(final)
