"""Measuring a run: peak RSS of the driver (Python) and the JVM per labelled phase, CPU
time and load average, and Spark task metrics (shuffle, spill, I/O) from the event log."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import psutil

STAGE_PROPERTY = "mobiterra.bench.stage"  # Spark local property naming the pipeline stage
GIB = 1 << 30


class Sampler:
    """A thread polling RSS (this process; the java child) and /proc/loadavg every
    ``interval`` seconds; peaks, CPU seconds and load are kept per label."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.me = psutil.Process()
        self.label = "idle"
        self.peaks: dict[str, dict] = defaultdict(
            lambda: {"driver_rss": 0, "jvm_rss": 0, "total_rss": 0, "load": []}
        )
        self._jvm: psutil.Process | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def jvm(self) -> psutil.Process | None:
        if self._jvm is None or not self._jvm.is_running():
            self._jvm = next(
                (p for p in self.me.children(recursive=True) if "java" in p.name()), None
            )
        return self._jvm

    def cpu_seconds(self) -> dict:
        def cpu(p):
            try:
                t = p.cpu_times()
                return t.user + t.system
            except (psutil.Error, AttributeError):
                return 0.0

        return {"driver": cpu(self.me), "jvm": cpu(self.jvm()) if self.jvm() else 0.0}

    def sample(self) -> None:
        driver = self.me.memory_info().rss
        jvm_p = self.jvm()
        try:
            jvm = jvm_p.memory_info().rss if jvm_p else 0
        except psutil.Error:
            jvm = 0
        peak = self.peaks[self.label]
        peak["driver_rss"] = max(peak["driver_rss"], driver)
        peak["jvm_rss"] = max(peak["jvm_rss"], jvm)
        peak["total_rss"] = max(peak["total_rss"], driver + jvm)
        peak["load"].append(os.getloadavg()[0])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def phase(self, label: str):
        """Label the samples taken inside; yields a dict filled with seconds and CPU."""
        previous, self.label = self.label, label
        record: dict = {}
        cpu0, t0 = self.cpu_seconds(), time.perf_counter()
        self.sample()
        try:
            yield record
        finally:
            self.sample()
            record["seconds"] = round(time.perf_counter() - t0, 3)
            cpu1 = self.cpu_seconds()
            record["cpu_s"] = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
            self.label = previous

    def summary(self, label: str) -> dict:
        p = self.peaks.get(label)
        if not p:
            return {}
        load = p["load"]
        return {
            "peak_driver_rss_gib": round(p["driver_rss"] / GIB, 3),
            "peak_jvm_rss_gib": round(p["jvm_rss"] / GIB, 3),
            "peak_total_rss_gib": round(p["total_rss"] / GIB, 3),
            "load_1min_mean": round(sum(load) / len(load), 2) if load else None,
            "load_1min_max": round(max(load), 2) if load else None,
        }


_METRICS = {
    "shuffle_write_bytes": ("Shuffle Write Metrics", "Shuffle Bytes Written"),
    "shuffle_read_bytes": ("Shuffle Read Metrics", "Remote Bytes Read", "Local Bytes Read"),
    "input_bytes": ("Input Metrics", "Bytes Read"),
    "output_bytes": ("Output Metrics", "Bytes Written"),
}


def event_log_metrics(log_dir: Path) -> dict:
    """Per pipeline stage (the local property): Spark jobs, stages, tasks, executor time,
    GC, spill, shuffle and I/O bytes summed over tasks; plus the 15 slowest Spark stages.
    Reads the JSON lines Spark writes with spark.eventLog.enabled."""
    files = sorted(
        p
        for p in Path(log_dir).rglob("*")
        if p.is_file() and not p.name.startswith((".", "appstatus"))
    )
    owner: dict[int, str] = {}
    names: dict[int, str] = {}
    per: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    per_stage: dict[int, dict] = defaultdict(lambda: defaultdict(float))
    for f in files:
        with open(f) as fh:
            for line in fh:
                ev = json.loads(line)
                kind = ev.get("Event")
                if kind == "SparkListenerJobStart":
                    label = (ev.get("Properties") or {}).get(STAGE_PROPERTY, "other")
                    per[label]["spark_jobs"] += 1
                    for sid in ev.get("Stage IDs", []):
                        owner.setdefault(sid, label)
                elif kind == "SparkListenerStageCompleted":
                    info = ev["Stage Info"]
                    sid = info["Stage ID"]
                    names[sid] = info.get("Stage Name", "")
                    if "Submission Time" in info and "Completion Time" in info:
                        per_stage[sid]["wall_s"] = (
                            info["Completion Time"] - info["Submission Time"]
                        ) / 1000
                    per[owner.get(sid, "other")]["spark_stages"] += 1
                elif kind == "SparkListenerTaskEnd":
                    sid = ev["Stage ID"]
                    m = ev.get("Task Metrics") or {}
                    acc = per[owner.get(sid, "other")]
                    acc["tasks"] += 1
                    acc["executor_run_s"] += m.get("Executor Run Time", 0) / 1000
                    acc["jvm_gc_s"] += m.get("JVM GC Time", 0) / 1000
                    acc["spill_disk_bytes"] += m.get("Disk Bytes Spilled", 0)
                    per_stage[sid]["executor_run_s"] += m.get("Executor Run Time", 0) / 1000
                    for out, (group, *fields) in _METRICS.items():
                        value = sum((m.get(group) or {}).get(k, 0) for k in fields)
                        acc[out] += value
                        per_stage[sid][out] += value
    stages = {
        label: {
            k: (round(v, 2) if isinstance(v, float) and v % 1 else int(v)) for k, v in d.items()
        }
        for label, d in per.items()
    }
    totals: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for label, d in stages.items():
        for k, v in d.items():
            totals[label.split("|")[0]][k] += v
    slowest = sorted(per_stage.items(), key=lambda kv: -kv[1].get("wall_s", 0))[:15]
    top = [
        {
            "stage_id": sid,
            "pipeline_stage": owner.get(sid, "other"),
            "name": names.get(sid, ""),
            "wall_s": round(d.get("wall_s", 0), 2),
            "executor_run_s": round(d.get("executor_run_s", 0), 2),
            "shuffle_write_mb": round(d.get("shuffle_write_bytes", 0) / 1e6, 1),
            "input_mb": round(d.get("input_bytes", 0) / 1e6, 1),
        }
        for sid, d in slowest
    ]
    return {
        "by_pipeline_stage": {k: {m: round(v, 2) for m, v in d.items()} for k, d in totals.items()},
        "by_write": {k: d for k, d in stages.items() if "|" in k},
        "slowest_spark_stages": top,
    }
