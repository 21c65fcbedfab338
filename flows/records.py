"""Run records: one Prefect markdown artifact per run, built from the manifest.

Only aggregate numbers, paths and stage names go in (never a user id, raw or keyed): the
manifest itself holds none, and an error is reduced to its first line.
"""

from __future__ import annotations

import re
from pathlib import Path

from mobiterra.config import RunConfig

REPORT_PAGE = Path("report") / "index.html"
# The first line of an error is enough to triage and keeps row values of long Spark
# messages out of the record.
ERROR_CHARS = 300


def artifact_key(kind: str, month: str | None) -> str:
    """Keys are lowercase letters, digits and dashes; one key per month keeps its history."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{month or 'unknown'}".lower()).strip("-")


def run_markdown(month_dir: Path, manifest: dict) -> str:
    """Headline numbers of a finished month and where its outputs are."""
    report = Path(month_dir) / REPORT_PAGE
    rejected = sum(manifest["rows_rejected"].values())
    lines = [
        f"# mobiterra {manifest['month']}",
        "",
        f"- outputs: `{month_dir}`",
        f"- report: `{report}`" + ("" if report.exists() else " (not generated yet)"),
        f"- baseline month: {manifest.get('baseline_month') or 'none'}",
        f"- k = {manifest['k']}, resolutions {manifest['resolutions']}",
        f"- config {manifest['config_hash']}, code {manifest['code_version']}",
        "",
        "| input rows | count |",
        "|---|---:|",
        f"| read | {manifest['rows_read']:,} |",
        f"| accepted | {manifest['rows_accepted']:,} |",
        f"| out of period | {manifest['rows_out_of_period']:,} |",
        f"| duplicates | {manifest['rows_duplicate']:,} |",
        f"| quarantined | {rejected:,} |",
        "",
        f"Invariant {'holds' if manifest['invariant_holds'] else '**BROKEN**'}: "
        f"`{manifest['invariant']}`.",
        "",
        f"Users {manifest['users']:,}, with a usual residence {manifest['users_with_home']:,}.",
        "",
        "| table | rows published | suppressed (primary) | suppressed (secondary) |",
        "|---|---:|---:|---:|",
    ]
    for name, t in sorted(manifest["tables"].items()):
        lines.append(
            f"| {name} | {t['rows_published']:,} | {t['rows_suppressed_primary']:,} "
            f"| {t['rows_suppressed_secondary']:,} |"
        )
    durations = ", ".join(f"{k} {v:.1f} s" for k, v in manifest.get("durations_s", {}).items())
    lines += ["", f"Stage durations: {durations}."]
    return "\n".join(lines) + "\n"


def stage_month(cfg: RunConfig, stage: str) -> str | None:
    """The month a stage was working on (baseline stages read the baseline month)."""
    return cfg.baseline_month if stage.startswith("baseline") else cfg.month


def error_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0].strip()
    return f"{type(error).__name__}: {text}"[:ERROR_CHARS]


def failure_markdown(cfg: RunConfig, stage: str, error: BaseException) -> str:
    """What failed, where, on which input: enough to rerun or fix the input."""
    return (
        "\n".join(
            [
                f"# mobiterra {cfg.month}: FAILED in stage `{stage}`",
                "",
                f"- stage: `{stage}` (month {stage_month(cfg, stage)})",
                f"- events: `{cfg.events}`",
                f"- cells: `{cfg.cells}`",
                f"- output folder: `{cfg.out}` (the month is unchanged: nothing was committed)",
                f"- error: `{error_line(error)}`",
                "",
                f"Rerun: `mobiterra run --events {cfg.events} --cells {cfg.cells} "
                f"--month {cfg.month} --out {cfg.out}"
                + (f" --population {cfg.population}" if cfg.population else "")
                + (f" --baseline-month {cfg.baseline_month}" if cfg.baseline_month else "")
                + "`",
            ]
        )
        + "\n"
    )


def backfill_markdown(first: str, last: str, baseline: str, records: list[dict]) -> str:
    lines = [
        f"# mobiterra backfill {first} .. {last} (baseline: {baseline})",
        "",
        "| month | status | baseline | outputs | note |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        path = f"`{r['path']}`" if r["path"] else ""
        lines.append(
            f"| {r['month']} | {r['status']} | {r['baseline'] or ''} | {path} | {r['note']} |"
        )
    return "\n".join(lines) + "\n"
