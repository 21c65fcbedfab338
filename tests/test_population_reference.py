"""The population reference (``--population``): parsing, resolutions, bad rows, and the
coverage weights it gives."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from jobs import cells as cells_rules
from jobs import coverage
from jobs.population import population_by_h3, read_population
from mobiterra import columns as C
from mobiterra.errors import InputError

RES = 8
CANTAL = (45.05, 2.65)


def _int(cell: str) -> int:
    return h3.str_to_int(cell)


def test_h3_rows_at_any_resolution_land_on_the_coverage_resolution():
    fine = h3.latlng_to_cell(*CANTAL, 9)
    parent = h3.cell_to_parent(fine, RES)
    coarse = h3.latlng_to_cell(45.3, 2.9, 7)
    raw = pd.DataFrame(
        {
            "h3_cell": [fine, h3.cell_to_parent(fine, RES).upper(), coarse],
            "population": ["7", "3", "70"],
        }
    )
    people = population_by_h3(raw, RES, "ref.csv")
    assert people.loc[_int(parent)] == pytest.approx(10.0)  # res 9 summed into its parent
    kids = h3.cell_to_children(coarse, RES)
    assert len(kids) == 7
    assert all(people.loc[_int(k)] == pytest.approx(10.0) for k in kids)  # split evenly
    assert people.sum() == pytest.approx(80.0)


def test_point_rows_go_to_the_cell_holding_them(tmp_path):
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"lat": [45.05, 45.05], "lon": [2.65, 2.65], "population": [2.5, 4.0]}).to_parquet(
        path
    )
    people = population_by_h3(read_population(path), RES, path)
    assert people.to_dict() == {_int(h3.latlng_to_cell(*CANTAL, RES)): 6.5}


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (
            {"h3_cell": ["88184d3499fffff", "not-a-cell"], "population": ["1", "2"]},
            "not an H3 cell",
        ),
        ({"h3_cell": ["88184d3499fffff", "88184d349dfffff"], "population": ["1", "-2"]}, ">= 0"),
        ({"h3_cell": ["88184d3499fffff"], "population": [None]}, ">= 0"),
        ({"lat": ["45.0", "95"], "lon": ["2", "2"], "population": ["1", "1"]}, "out of range"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_first(rows, reason):
    with pytest.raises(InputError) as err:
        population_by_h3(pd.DataFrame(rows), RES, "ref.csv")
    message = str(err.value)
    assert "\n" not in message and message.startswith("ref.csv: 1 unusable") and reason in message


def test_missing_columns_and_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="needs columns h3_cell,population or lat,lon,population"):
        population_by_h3(pd.DataFrame({"cell": ["x"], "people": [1]}), RES, "ref.csv")
    broken = tmp_path / "ref.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(InputError, match="unreadable parquet population file"):
        read_population(broken)


def test_coverage_weights_follow_a_given_reference():
    """All of a rural site's people in one hexagon of its area: that hexagon takes nearly
    all the weight, against INSEE's even spread over the commune."""
    cells = pd.DataFrame(
        {
            C.CELL_ID: ["rural"], C.LAT: [CANTAL[0]], C.LON: [CANTAL[1]],
            C.AZIMUTH_DEG: [np.nan], C.RANGE_M: [3_000.0], C.VALID_FROM: [None], C.VALID_TO: [None],
            cells_rules.STATUS: [cells_rules.OK],
        }
    )  # fmt: skip
    insee = coverage.coverage_table(cells, "voronoi", RES, None)
    town = h3.cell_to_parent(h3.latlng_to_cell(CANTAL[0] + 0.01, CANTAL[1], 9), RES)
    elsewhere = h3.latlng_to_cell(CANTAL[0] - 0.01, CANTAL[1], RES)
    ref = population_by_h3(
        pd.DataFrame({"h3_cell": [town, elsewhere], "population": [990, 10]}), RES, "ref"
    )
    given = coverage.coverage_table(cells, "voronoi", RES, None, ref).set_index(C.H3_ID)
    assert given[C.WEIGHT].sum() == pytest.approx(1.0)
    assert given.loc[_int(town), C.WEIGHT] == pytest.approx(0.99, abs=1e-6)
    assert given.loc[_int(elsewhere), C.WEIGHT] == pytest.approx(0.01, abs=1e-6)
    assert insee[C.WEIGHT].max() < 0.2
