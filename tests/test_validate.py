"""Scoring on a tiny hand-made truth and published month, with hand-computed errors."""

from __future__ import annotations

import json

import h3
import pandas as pd
import pytest

from mobiterra.geo.attribution import hierarchical_pieces
from mobiterra.validate import validate

PARIS_8 = h3.latlng_to_cell(48.8600, 2.3400, 8)  # Louvre
PARIS_6 = h3.cell_to_parent(PARIS_8, 6)
YONNE_8 = h3.latlng_to_cell(47.7980, 3.5670, 8)  # Auxerre
YONNE_6 = h3.cell_to_parent(YONNE_8, 6)


def _homes(month: str, paris: int, yonne: int, start: int = 0) -> pd.DataFrame:
    rows = [("75", PARIS_8)] * paris + [("89", YONNE_8)] * yonne
    return pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(start, start + len(rows))],
            "month": month,
            "departement_code": [d for d, _ in rows],
            "home_h3": [c for _, c in rows],
            "in_territory": True,
        }
    )


@pytest.fixture
def folders(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    feb = _homes("2020-02", 290, 180)
    # April: 30 of the Parisians (u0000..u0029) now live in Yonne
    apr = feb.assign(month="2020-04")
    apr.loc[:29, ["departement_code", "home_h3"]] = ["89", YONNE_8]
    pd.concat([feb, apr]).to_parquet(truth / "homes.parquet")
    pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(30)],
            "from_departement_code": "75",
            "to_departement_code": "89",
            "to_in_territory": True,
        }
    ).to_parquet(truth / "moves.parquet")
    month = tmp_path / "out" / "2020-04"
    (month / "residents").mkdir(parents=True)
    pd.DataFrame(
        {
            "resolution": [6, 8, 6],
            "h3_cell": [PARIS_6, PARIS_8, YONNE_6],
            "residents": [250, 100, 200],
            "residents_est": [None, None, None],
        }
    ).to_parquet(month / "residents" / "part-0.parquet")
    (month / "residence_shift").mkdir()
    pd.DataFrame(
        {"resolution": [6], "origin_cell": [PARIS_6], "destination_cell": [YONNE_6], "users": [27]}
    ).to_parquet(month / "residence_shift" / "part-0.parquet")
    return truth, month


def test_hierarchy_keeps_the_parent_remainder_only():
    pub = pd.DataFrame(
        {
            "resolution": [6, 8],
            "h3_id": [h3.str_to_int(PARIS_6), h3.str_to_int(PARIS_8)],
            "residents": [250, 100],
        }
    )
    pieces = hierarchical_pieces(pub, "residents", ["h3_id"]).set_index("resolution")
    assert pieces.loc[6, "residents"] == 150 and pieces.loc[8, "residents"] == 100


def test_scores_match_hand_computation(folders):
    truth, month = folders
    result = validate(truth, month, "2020-04")
    deps = {r["departement_code"]: r for r in result["residents_by_departement"]}
    # truth April: Paris 290 - 30 = 260, Yonne 180 + 30 = 210
    assert deps["75"]["truth"] == 260 and deps["89"]["truth"] == 210
    assert deps["75"]["published"] == pytest.approx(250)
    assert deps["75"]["rel_error"] == pytest.approx(round(-10 / 260, 4))
    assert deps["89"]["rel_error"] == pytest.approx(round(-10 / 210, 4))
    assert result["suppression"]["share_not_covered"] == pytest.approx(round(20 / 470, 4))
    flow = result["residence_shift"]["planted"][0]
    assert (flow["origin"], flow["destination"], flow["truth"]) == ("75", "89", 30)
    assert flow["rel_error"] == pytest.approx(-0.1)
    cells = result["residents_h3"]
    assert cells["cells"] == 2 and cells["published"] == 2
    assert result["checks"]["residents_within_5pct"] is True  # |-3.8 %| and |-4.8 %|
    assert result["checks"]["planted_flows_within_10pct"] is True
    assert json.loads((month / "validation.json").read_text())["month"] == "2020-04"


def test_planted_flows_below_k_are_reported_not_checked(folders):
    truth, month = folders
    # the 30 movers' flow (published 27, -10 %) is checked at k = 20 and passes; at
    # k = 40 it could never be published, so nothing is checked
    at_20 = validate(truth, month, "2020-04", privacy={"k": 20, "noise": None})
    assert at_20["checks"]["planted_flows_within_10pct"]
    result = validate(truth, month, "2020-04", privacy={"k": 40, "noise": None})
    assert result["residence_shift"]["planted"][0]["truth"] == 30  # still reported
    assert result["checks"]["planted_flows_within_10pct"] is None


def test_diagnostics_by_departement_are_scored_too(folders):
    truth, month = folders
    (month / "diagnostics").mkdir()
    pd.DataFrame(
        {"unit": ["departement", "departement"], "code": ["75", "89"], "residents": [247, 210]}
    ).to_parquet(month / "diagnostics" / "part-0.parquet")
    rows = validate(truth, month, "2020-04")["residents_by_departement_diagnostics"]
    assert {r["departement_code"]: r["rel_error"] for r in rows} == {
        "75": round(-13 / 260, 4),
        "89": 0.0,
    }


def test_missing_published_table_names_the_folder(tmp_path, folders):
    truth, _ = folders
    with pytest.raises(FileNotFoundError, match="residents"):
        validate(truth, tmp_path / "nowhere", "2020-04")


def test_departement_flows_from_diagnostics_are_preferred(folders):
    truth, month = folders
    (month / "diagnostics").mkdir()
    pd.DataFrame(
        {"unit": ["departement"], "origin_code": ["75"], "destination_code": ["89"], "users": [31]}
    ).to_parquet(month / "diagnostics" / "part-0.parquet")
    flow = validate(truth, month, "2020-04")["residence_shift"]["planted"][0]
    assert flow["rel_error_h3"] == pytest.approx(-0.1)
    assert flow["rel_error"] == flow["rel_error_diagnostics"] == pytest.approx(round(1 / 30, 4))


def test_presence_from_stays_counts_users_at_mid_hour_local_time():
    from mobiterra.validate import presence_from_stays

    stays = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            # 08:00-11:00 and 08:40-09:10 Paris time (UTC+1 in February)
            "start": pd.to_datetime(["2020-02-03 07:00", "2020-02-03 07:40"], utc=True),
            "end": pd.to_datetime(["2020-02-03 10:00", "2020-02-03 08:10"], utc=True),
            "h3_cell": [PARIS_8, PARIS_8],
        }
    )
    out = presence_from_stays(stays)
    assert out["hour_local"].dt.hour.tolist() == [8, 9, 10]
    assert out["users"].tolist() == [1, 1, 1]


def test_a_cell_under_a_suppressed_parent_is_explained_by_its_nearest_published_ancestor():
    paris_7 = h3.cell_to_parent(PARIS_8, 7)
    sibling_7 = next(c for c in h3.cell_to_children(PARIS_6, 7) if c != paris_7)
    pub = pd.DataFrame(
        {
            # res 6: 250; res 7: only a sibling (60); res 8: PARIS_8 (100), whose res-7
            # parent is suppressed; the res-6 remainder is 250 - 60 - 100 = 90, not 190
            "resolution": [6, 7, 8],
            "h3_id": [h3.str_to_int(c) for c in (PARIS_6, sibling_7, PARIS_8)],
            "residents": [250, 60, 100],
        }
    )
    pieces = hierarchical_pieces(pub, "residents", ["h3_id"]).set_index("resolution")
    assert pieces["residents"].to_dict() == {6: 90, 7: 60, 8: 100}
    assert pieces["residents"].sum() == 250  # the coarse count, not more
