"""Scores of present population, daily OD and expansion on hand-made truth and outputs."""

from __future__ import annotations

from pathlib import Path

import h3
import pandas as pd
import pytest

from mobiterra.validate_mobility import (
    score_daily_od,
    score_expansion,
    score_night_presence,
)
from mobiterra.validate_trips import observable_trips

WEIGHTS = {"15": 1.0}  # Cantal only
AURILLAC = h3.latlng_to_cell(44.9265, 2.4397, 8)
ARPAJON = h3.latlng_to_cell(44.9036, 2.4553, 8)  # next to Aurillac
MAURIAC = h3.latlng_to_cell(45.2181, 2.3339, 8)


def _utc(local: str) -> pd.Timestamp:
    return pd.Timestamp(local, tz="Europe/Paris").tz_convert("UTC")


def _write(folder: Path, name: str, df: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / f"{name}.parquet", index=False)


def test_night_presence_compares_the_coarsest_cells_with_the_busiest_night_hour(tmp_path):
    truth, run = tmp_path / "truth", tmp_path / "run"
    hours = pd.date_range("2020-04-01 20:00", "2020-04-03 08:00", freq="h")
    # 100 people at night (22:00-06:00) on both nights, 80 otherwise; May is not scored
    users = [100 if (h.hour >= 22 or h.hour < 6) else 80 for h in hours]
    _write(truth, "presence", pd.DataFrame({"hour_local": hours, "departement_code": "15",
                                            "users": users}))  # fmt: skip
    coarse = h3.cell_to_parent(AURILLAC, 4)
    _write(run, "present_population", pd.DataFrame({
        "resolution": [4, 4, 8, 4, 4],
        "h3_cell": [coarse, coarse, AURILLAC, coarse, coarse],
        "period_start": [_utc("2020-04-01 22:00"), _utc("2020-04-02 22:00"),
                         _utc("2020-04-01 22:00"), _utc("2020-04-01 00:00"),
                         _utc("2020-05-01 22:00")],
        "period": ["night", "night", "night", "day", "night"],
        "users": [90, 100, 500, 999, 999],
    }))  # fmt: skip
    got = score_night_presence(truth, run, "2020-04", WEIGHTS)
    assert got["nights"] == 2
    assert got["by_departement"] == [
        {"departement_code": "15", "truth": 100.0, "published": 95.0, "rel_error": -0.05}
    ]


def test_daily_od_scores_trips_of_flows_with_enough_true_users(tmp_path):
    truth, run = tmp_path / "truth", tmp_path / "run"
    morning = _utc("2020-04-02 08:00")
    trips = pd.DataFrame({
        "user_id": [f"u{i}" for i in range(250)] + ["u1"] * 10 + [f"w{i}" for i in range(40)]
        + [f"v{i}" for i in range(50)],
        "departure": [morning] * 300 + [_utc("2020-04-03 08:00")] * 50,
        "origin_h3": AURILLAC,
        "destination_h3": [ARPAJON] * 260 + [MAURIAC] * 40 + [ARPAJON] * 50,
        "origin_departement": "15",
        "destination_departement": "15",
    })  # fmt: skip
    _write(truth, "trips", trips)
    _write(run, "od_trips", pd.DataFrame({
        "resolution": [8, 8],
        "origin_cell": [AURILLAC, AURILLAC],
        "destination_cell": [ARPAJON, ARPAJON],
        "period_start": [_utc("2020-04-02 00:00"), _utc("2020-04-02 00:00")],
        "period": ["day", "evening"],
        "trips": [234, 999],
        "users": [200, 999],
    }))  # fmt: skip
    got = score_daily_od(truth, run, "2020-04", WEIGHTS)
    # one flow of >= 200 users (the 3rd day has 50): 300 trips, 234 published; the 40
    # trips to Mauriac are in a pair the run did not publish (below k, say)
    assert (got["flows"], got["flows_within_10pct"]) == (1, 0)
    assert got["median_abs_rel_error"] == pytest.approx(0.22)
    assert got["by_pair"][0]["truth_trips_per_day"] == 300.0
    # on published cells only (the targets): the 260 trips Aurillac -> Arpajon
    cells = got["published_cells"]
    assert (cells["flows"], cells["flows_within_10pct"]) == (1, 1)
    assert cells["median_abs_rel_error"] == pytest.approx(0.1)
    assert cells["truth_trips"] == 260  # the pair is not published on 3 April: its 50 not
    assert score_daily_od(tmp_path / "none", run, "2020-04", WEIGHTS)["skipped"]


def test_expansion_against_truth_factors_reference_and_population(tmp_path):
    truth, run = tmp_path / "truth", tmp_path / "run"
    ids = [f"u{i}" for i in range(100)]
    _write(truth, "users", pd.DataFrame({"user_id": ids, "expansion_factor": [1000.0] * 100}))
    homes = pd.DataFrame({
        "user_id": ids * 2,
        "month": ["2020-02"] * 100 + ["2020-04"] * 100,
        "departement_code": "15",
        "in_territory": [True] * 100 + [True] * 90 + [False] * 10,  # 10 left in April
    })  # fmt: skip
    _write(run, "expansion", pd.DataFrame({
        "departement_code": ["15"], "calibration_month": ["2020-02"],
        "reference_residents": [110_000], "network_coverage": [1.0], "factor": [1100.0],
        "status": ["calibrated"],
    }))  # fmt: skip
    _write(run, "residents", pd.DataFrame({
        "resolution": [8], "h3_cell": [AURILLAC], "residents": [90], "residents_est": [99_000],
    }))  # fmt: skip
    _write(run, "diagnostics", pd.DataFrame({  # what the run publishes per département
        "kind": ["territory", "territory", "flow"],
        "unit": ["departement", "commune", "departement"],
        "code": ["15", "15014", None], "residents": [91, 40, None],
        "residents_est": [100_100, 44_000, None],
    }))  # fmt: skip
    got = score_expansion(truth, run, "2020-04", homes, WEIGHTS)
    assert got["calibration_month"] == "2020-02"
    (row,) = got["by_departement"]
    assert row["factor_rel_error"] == pytest.approx(0.1)
    assert row["rel_error_reference"] == pytest.approx(-0.1)
    assert row["truth_population"] == 90_000
    assert row["rel_error_truth"] == pytest.approx(0.1)
    # the census moved by the truth's change (90 of 100 residents left): 99,000
    assert row["reference_moved"] == 99_000 and row["rel_error_reference_moved"] == 0
    # the département's factor x its 90 attributed published residents
    assert row["estimated_departement"] == 99_000
    # the published département estimate (diagnostics), against the same and the truth
    assert row["published_departement"] == 100_100
    assert row["rel_error_published_reference_moved"] == pytest.approx(0.0111, abs=1e-4)
    assert row["rel_error_published_truth"] == pytest.approx(0.1122, abs=1e-4)


def _stay(user, start, end, cell, dep="15"):
    return {"user_id": user, "start": _utc(start), "end": _utc(end), "h3_cell": cell,
            "departement_code": dep}  # fmt: skip


def test_observable_trips_keep_moves_between_stays_the_events_reveal():
    far = h3.latlng_to_cell(45.03, 2.65, 8)  # Cantal, another res-7 place
    same7 = next(c for c in h3.grid_disk(AURILLAC, 1) if c != AURILLAC
                 and h3.cell_to_parent(c, 7) == h3.cell_to_parent(AURILLAC, 7))  # fmt: skip
    stays = pd.DataFrame([
        _stay("u", "2020-04-01 00:00", "2020-04-01 08:00", AURILLAC),
        _stay("u", "2020-04-01 08:30", "2020-04-01 12:00", far),  # 2 events 3 h apart: seen
        _stay("u", "2020-04-01 12:20", "2020-04-01 13:00", AURILLAC),  # 1 event: unseen
        _stay("u", "2020-04-01 13:30", "2020-04-01 18:00", far),  # seen, same place as before
        _stay("u", "2020-04-01 18:30", "2020-04-01 23:59", same7),  # same res-7 place as home
        _stay("v", "2020-04-01 00:00", "2020-04-01 09:00", AURILLAC),
        _stay("v", "2020-04-01 09:30", "2020-04-01 10:00", far),  # events 10 min apart: a pass
        _stay("v", "2020-04-01 10:30", "2020-04-01 23:00", ARPAJON, dep="15"),
        # w goes from Aurillac to Arpajon too, but one antenna cell serves both: no trace
        _stay("w", "2020-04-01 00:00", "2020-04-01 08:00", AURILLAC),
        _stay("w", "2020-04-01 08:30", "2020-04-01 20:00", ARPAJON),
    ])  # fmt: skip
    events = pd.DataFrame({
        "user_id": ["u"] * 9 + ["v"] * 6 + ["w"] * 4,
        "timestamp": [_utc(t) for t in [
            "2020-04-01 01:00", "2020-04-01 07:00", "2020-04-01 09:00", "2020-04-01 11:59",
            "2020-04-01 12:30", "2020-04-01 14:00", "2020-04-01 17:00", "2020-04-01 19:00",
            "2020-04-01 23:00",
            "2020-04-01 02:00", "2020-04-01 08:00", "2020-04-01 09:40", "2020-04-01 09:50",
            "2020-04-01 11:00", "2020-04-01 20:00",
            "2020-04-01 01:00", "2020-04-01 07:00", "2020-04-01 09:00", "2020-04-01 19:00"]],
        # serving cells: u's home and its res-7 neighbour have their own; the handover
        # (h2 once at home) does not change a stay's cell (the most frequent)
        "cell_id": ["h", "h", "f", "f", "h", "f", "f", "n", "n",
                    "h", "h2", "f", "f", "a", "a",
                    "w", "w", "w", "w"],
    })  # fmt: skip
    got = observable_trips(stays, events, min_time_stay_s=900, same_place_resolution=7)
    # u: home -> far (08:00); the errand home at 12:20 is unseen, so far..far is one stay;
    # far -> home's res-7 place at 18:00. v: the pass at "far" is dropped (10 min);
    # Aurillac -> Arpajon (another res-7 place) departs at the end of the first stay.
    assert h3.cell_to_parent(AURILLAC, 7) != h3.cell_to_parent(ARPAJON, 7)
    assert got["user_id"].tolist() == ["u", "u", "v"]
    assert got["departure"].tolist() == [
        _utc("2020-04-01 08:00"),
        _utc("2020-04-01 18:00"),
        _utc("2020-04-01 09:00"),
    ]
    assert set(got["origin_departement"]) == {"15"}


def test_a_stay_without_events_is_not_observable():
    stays = pd.DataFrame([_stay("u", "2020-04-01 00:00", "2020-04-01 08:00", AURILLAC)])
    events = pd.DataFrame(
        {"user_id": ["w"], "timestamp": [_utc("2020-04-01 01:00")], "cell_id": ["c"]}
    )
    assert observable_trips(stays, events, 900, 7).empty
