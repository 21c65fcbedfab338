"""bench/run.py's arithmetic: the shared seconds, the two ratios, and the table row."""

from __future__ import annotations

from bench import run


def _size(stages: dict[str, float], duckdb_s: float, equal: bool = True) -> dict:
    return {
        "target_events": 1000,
        "jvm_start_s": 3.0,
        "pipeline": {
            "seconds": sum(stages.values()),
            "rows_read": 1000,
            "stages": {name: {"seconds": s} for name, s in stages.items()},
            "spark": {"by_pipeline_stage": {}},
        },
        "duckdb": {"seconds": duckdb_s, "threads": 2, "steps_s": {"ingest": duckdb_s}},
        "equality": {"residents": {"equal": equal}},
    }


def test_shared_seconds_leave_out_the_stages_of_no_shared_table():
    r = _size({"ingest": 6.0, "stays": 4.0, "report": 5.0, "diagnostics": 1.0}, duckdb_s=5.0)
    d = run.derived(r)
    assert d["pipeline_shared_s"] == 10.0
    assert d["ratio_shared_vs_duckdb"] == 2.0
    assert d["ratio_whole_vs_duckdb"] == 3.2
    assert d["events_per_s"] == round(1000 / 16.0)
    assert "ratio_daily_only_vs_duckdb" not in d


def test_the_daily_only_run_is_scored_against_its_own_baseline_run():
    r = _size({"ingest": 6.0, "publish-mobility": 6.0, "report": 5.0}, duckdb_s=4.0)
    r["daily_only"] = _size(
        {"ingest": 6.0, "publish-mobility": 2.0, "report": 5.0}, duckdb_s=5.0, equal=False
    )
    d = run.derived(r)
    assert d["ratio_shared_vs_duckdb"] == 3.0
    assert (d["daily_only_shared_s"], d["daily_only_duckdb_s"]) == (8.0, 5.0)
    assert d["ratio_daily_only_vs_duckdb"] == 1.6
    assert d["daily_only_tables_equal"] is False
    r["derived"] = d
    md = run.markdown({"created_at": "now", "machine": "test", "runs": [r]})
    assert "| 8.0, 5.0, 1.6 (tables differ) |" in md
    assert "Daily periods only (13.0 s): ingest 6.0 s, publish-mobility 2.0 s" in md
