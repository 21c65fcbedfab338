"""Progress per stage on stderr (stage, rows, elapsed) and the final summary; --quiet mutes."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console


@dataclass
class StageRecord:
    name: str
    seconds: float = 0.0
    rows: int | None = None
    note: str = ""


@dataclass
class Progress:
    quiet: bool = False
    stages: list[StageRecord] = field(default_factory=list)
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    @contextmanager
    def stage(self, name: str):
        record = StageRecord(name)
        if not self.quiet:
            self.console.print(f"[bold cyan]▶[/] {name} …")
        start = time.perf_counter()
        try:
            yield record
        finally:
            record.seconds = round(time.perf_counter() - start, 3)
            self.stages.append(record)
        if not self.quiet:
            rows = f"{record.rows:>12,} rows" if record.rows is not None else " " * 17
            self.console.print(
                f"[green]✓[/] {name:<22} {rows}  {record.seconds:7.1f} s  {record.note}"
            )

    def durations(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.stages:
            out[r.name] = round(out.get(r.name, 0.0) + r.seconds, 3)
        return out

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)
