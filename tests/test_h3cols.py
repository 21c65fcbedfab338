import h3
import pytest

from mobiterra.h3cols import h3_from_string, h3_parent, h3_resolution, h3_to_string

# Golden: the Eiffel Tower at resolution 8 (h3.latlng_to_cell(48.8584, 2.2945, 8)).
EIFFEL = h3.latlng_to_cell(48.8584, 2.2945, 8)
POINTS = [(48.8584, 2.2945), (43.2965, 5.3698), (47.798, 3.567), (44.35, 2.57), (-33.9, 151.2)]


def test_golden_cell_string_is_canonical():
    assert len(EIFFEL) == 15 and EIFFEL.startswith("88")


@pytest.mark.parametrize("res", [0, 4, 5, 6, 7, 8])
def test_parent_matches_h3(spark, res):
    cells = [h3.str_to_int(h3.latlng_to_cell(lat, lon, 9)) for lat, lon in POINTS]
    df = spark.createDataFrame([(c,) for c in cells], "h3_id long")
    got = df.select(
        h3_parent("h3_id", res).alias("p"), h3_to_string(h3_parent("h3_id", res)).alias("s")
    )
    rows = got.collect()
    for c, row in zip(cells, rows, strict=True):
        expected = h3.cell_to_parent(h3.int_to_str(c), res)
        assert row["s"] == expected
        assert row["p"] == h3.str_to_int(expected)


def test_resolution_and_round_trip(spark):
    c = h3.str_to_int(EIFFEL)
    row = (
        spark.createDataFrame([(c,)], "h3_id long")
        .select(
            h3_resolution("h3_id").alias("r"), h3_from_string(h3_to_string("h3_id")).alias("back")
        )
        .first()
    )
    assert row["r"] == 8 and row["back"] == c


def test_bad_resolution_names_value():
    with pytest.raises(ValueError, match="16"):
        h3_parent("h3_id", 16)
