"""Usual residence on hand-made nights: clear home, ties, too few nights, DST."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest

from jobs import residence
from mobiterra import columns as C
from mobiterra import schemas
from mobiterra.config import ResidenceParams

TZ = "Europe/Paris"
# Two res-8 hexagons in Paris and one in Lyon (int64 ids, as coverage stores them).
import h3  # noqa: E402

HEX = {
    "paris-a": h3.str_to_int(h3.latlng_to_cell(48.8566, 2.3522, 8)),
    "paris-b": h3.str_to_int(h3.latlng_to_cell(48.8800, 2.3000, 8)),
    "lyon": h3.str_to_int(h3.latlng_to_cell(45.7640, 4.8357, 8)),
}


@pytest.fixture(scope="module")
def coverage_df(spark):
    rows = [(name, None, None, hid, 1.0) for name, hid in HEX.items()]
    return spark.createDataFrame(
        rows, "cell_id string, valid_from date, valid_to date, h3_id long, weight double"
    )


def _events(spark, rows):
    return spark.createDataFrame(rows, schemas.ACCEPTED_EVENTS)


def _night(day: int, cell: str, user: str, hour_utc: int = 23, month: int = 3):
    """One event at ``hour_utc`` UTC on 2020-month-day (23:00 UTC is 00:00/01:00 Paris)."""
    return (user, datetime(2020, month, day, hour_utc, 0), cell)


def _homes(spark, coverage_df, rows, min_nights=4, first=date(2020, 3, 1), last=date(2020, 3, 31)):
    params = ResidenceParams(min_nights=min_nights)
    df = residence.usual_residence(_events(spark, rows), coverage_df, params, TZ, first, last)
    return {r[C.USER_KEY]: (r[C.HOME_H3], r[C.NIGHTS]) for r in df.collect()}


def test_clear_home_is_the_place_of_most_nights(spark, coverage_df):
    rows = [_night(d, "paris-a", "u1") for d in range(1, 11)]
    rows += [_night(d, "lyon", "u1") for d in range(11, 14)]
    # daytime events elsewhere do not count as nights
    rows += [("u1", datetime(2020, 3, d, 10, 0), "lyon") for d in range(1, 20)]
    assert _homes(spark, coverage_df, rows) == {"u1": (HEX["paris-a"], 10)}


def test_too_few_nights_gives_no_home(spark, coverage_df):
    rows = [_night(d, "paris-a", "u2") for d in (2, 9, 16)]
    assert _homes(spark, coverage_df, rows, min_nights=4) == {}
    assert _homes(spark, coverage_df, rows, min_nights=3) == {"u2": (HEX["paris-a"], 3)}


def test_nights_are_distinct_not_events(spark, coverage_df):
    # 20 events in one night at A, one event on each of 5 nights at B: B wins
    rows = [("u3", datetime(2020, 3, 3, 22, m), "paris-a") for m in range(20)]
    rows += [_night(d, "paris-b", "u3") for d in range(10, 15)]
    assert _homes(spark, coverage_df, rows) == {"u3": (HEX["paris-b"], 5)}


def test_ties_are_broken_by_events_then_lowest_id_whatever_the_order(spark, coverage_df):
    # 5 nights each; more night events at lyon -> lyon
    rows = [_night(d, "paris-a", "u4") for d in range(1, 6)]
    rows += [_night(d, "lyon", "u4") for d in range(10, 15)]
    rows += [_night(d, "lyon", "u4", hour_utc=22) for d in range(10, 15)]
    # exact tie in nights and events -> the lower H3 id
    rows += [_night(d, "paris-a", "u5") for d in range(1, 6)]
    rows += [_night(d, "paris-b", "u5") for d in range(10, 15)]
    expected = {"u4": (HEX["lyon"], 5), "u5": (min(HEX["paris-a"], HEX["paris-b"]), 5)}
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert _homes(spark, coverage_df, shuffled) == expected


def test_night_across_midnight_on_the_dst_change(spark, coverage_df):
    """Night of Sat 28 -> Sun 29 March 2020: clocks go 02:00 -> 03:00 in Paris.

    23:30 local on the 28th is 22:30 UTC (CET); 05:30 local on the 29th is 03:30 UTC
    (CEST): both are night 28. 04:30 UTC on the 29th is 06:30 local: not night. A
    fixed UTC+1 offset would get the last one wrong.
    """
    night_28 = [
        ("u6", datetime(2020, 3, 28, 22, 30), "paris-a"),
        ("u6", datetime(2020, 3, 29, 3, 30), "paris-a"),
    ]
    morning = [("u6", datetime(2020, 3, 29, 4, 30), "lyon")]
    events = residence.with_local_time(_events(spark, night_28 + morning), TZ)
    nights = residence.filter_night(events, ResidenceParams(), date(2020, 3, 1), date(2020, 3, 31))
    got = sorted((r[C.CELL_ID], r[C.NIGHT]) for r in nights.collect())
    assert got == [("paris-a", date(2020, 3, 28)), ("paris-a", date(2020, 3, 28))]
    # in winter 04:30 UTC is 05:30 local: night
    winter = residence.with_local_time(
        _events(spark, [("u7", datetime(2020, 2, 29, 4, 30), "lyon")]), TZ
    )
    got = residence.filter_night(winter, ResidenceParams(), date(2020, 2, 1), date(2020, 2, 29))
    assert [r[C.NIGHT] for r in got.collect()] == [date(2020, 2, 28)]


def test_the_last_night_of_the_month_counts_and_the_next_month_does_not(spark, coverage_df):
    # night of 31 March ends 1 April 05:00 local (03:00 UTC): it belongs to March
    rows = [("u8", datetime(2020, 3, 31, 23, 0) + timedelta(hours=3), "paris-a")]
    rows += [_night(d, "paris-a", "u8") for d in (1, 2, 3)]
    # 1 April 23:00 UTC is the night of 2 April local (01:00): outside March
    rows += [_night(1, "lyon", "u8", month=4)] * 3
    assert _homes(spark, coverage_df, rows) == {"u8": (HEX["paris-a"], 4)}
