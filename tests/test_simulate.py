"""The simulator: reproducible, calibrated on commune populations, planted moves exact."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mobiterra import geo
from mobiterra.geo.grid import distance_km
from mobiterra.simulate import simulate
from mobiterra.simulate.blocks import local_to_utc_us
from mobiterra.simulate.population import draw_subscribers
from mobiterra.simulate.scenario import load_scenario
from mobiterra.simulate.territory import parse_fraction, population_grid, territory
from mobiterra.simulate.writer import EVENTS_SCHEMA

# chi-square critical value, 19 degrees of freedom, p = 0.001 (statistical tables)
CHI2_19DF_P001 = 43.82


@pytest.fixture(scope="module")
def lockdown_run(tmp_path_factory):
    """Paris and Yonne around the start of the lockdown, a small sample."""
    out = tmp_path_factory.mktemp("sim")
    summary = simulate(
        ["75", "89"], "2020-03-09", "2020-04-05", out, seed=7,
        sample_fraction="75=0.0015,89=0.004", workers=1, months=["2020-03", "2020-04"],
    )  # fmt: skip
    return out, summary


def _events(out) -> pd.DataFrame:
    return ds.dataset(out / "events", format="parquet", partitioning="hive").to_table().to_pandas()


def test_same_seed_same_events_other_seed_other_events(tmp_path):
    args = dict(territory=["89"], start="2020-02-03", end="2020-02-04", sample_fraction=0.001)
    simulate(out_dir=tmp_path / "a", seed=3, workers=1, **args)
    simulate(out_dir=tmp_path / "c", seed=4, workers=1, **args)
    a, c = _events(tmp_path / "a"), _events(tmp_path / "c")
    simulate(out_dir=tmp_path / "d", seed=3, workers=2, **args)  # dask processes
    assert a.equals(_events(tmp_path / "d"))
    assert not a.equals(c)
    assert pd.read_csv(tmp_path / "a" / "cells.csv").equals(
        pd.read_csv(tmp_path / "d" / "cells.csv")
    )


def test_events_follow_the_contract(lockdown_run):
    out, summary = lockdown_run
    files = sorted((out / "events").glob("day=*/part-*.parquet"))
    assert len(files) == 28 and files[0].parent.name == "day=2020-03-09"
    assert pq.read_schema(files[0]).remove_metadata() == EVENTS_SCHEMA
    one = pq.read_table(files[0]).to_pandas()
    assert one.equals(one.sort_values(["user_id", "timestamp"], ignore_index=True))
    ev = _events(out)
    assert len(ev) == summary["events"]
    assert ev["user_id"].notna().all() and ev["cell_id"].notna().all()
    cells = pd.read_csv(out / "cells.csv")
    assert list(cells.columns) == [
        "cell_id",
        "lat",
        "lon",
        "azimuth_deg",
        "range_m",
        "valid_from",
        "valid_to",
    ]
    assert set(ev["cell_id"]) <= set(cells["cell_id"])
    per_user_day = ev.groupby(["user_id", "day"]).size()
    assert 5 < per_user_day.mean() < 15  # modest, heterogeneous activity
    local = ev["timestamp"].dt.tz_convert("Europe/Paris")
    night = (local.dt.hour >= 22) | (local.dt.hour < 6)
    nights_seen = ev[night].assign(d=(local[night] - pd.Timedelta(hours=6)).dt.date)
    assert nights_seen.groupby("user_id")["d"].nunique().median() >= 25  # a home most nights


def test_drawn_homes_match_commune_populations():
    ter = territory(["75"], fraction=0.02)
    drawn = draw_subscribers(ter, np.random.default_rng(1), market_share=0.37)
    com = ter.communes
    observed = np.bincount(drawn, minlength=len(com))[ter.inside]
    expected = com["population"].to_numpy()[ter.inside] * 0.37 * 0.02
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert len(observed) == 20 and chi2 < CHI2_19DF_P001


def test_truth_homes_follow_population(lockdown_run):
    out, _ = lockdown_run
    homes = pd.read_parquet(out / "truth" / "homes.parquet")
    march = homes[homes["month"] == "2020-03"].set_index("user_id")
    moves = pd.read_parquet(out / "truth" / "moves.parquet").set_index("user_id")
    # the main home: where the month's nights were, or where movers came from
    march.loc[moves.index, "departement_code"] = moves["from_departement_code"]
    march = march.reset_index()
    users = pd.read_parquet(out / "truth" / "users.parquet").set_index("user_id")
    expanded = march.groupby("departement_code")["user_id"].apply(
        lambda u: users.loc[u, "expansion_factor"].sum()
    )
    pop = geo.communes(["75", "89"]).groupby("departement_code")["population"].sum()
    for dep in ("75", "89"):
        assert expanded[dep] == pytest.approx(pop[dep], rel=0.1)


def test_planted_moves_appear_in_the_truth_exactly(lockdown_run):
    out, summary = lockdown_run
    truth = out / "truth"
    moves = pd.read_parquet(truth / "moves.parquet")
    homes = pd.read_parquet(truth / "homes.parquet")
    assert len(moves) == summary["movers"] > 0
    assert (moves["from_departement_code"] == "75").all()
    # every mover sleeps at the planted destination in April
    april = homes[homes["month"] == "2020-04"].set_index("user_id").loc[moves["user_id"]]
    assert (april["home_commune_code"].to_numpy() == moves["to_commune_code"].to_numpy()).all()
    assert (april["home_h3"].to_numpy() == moves["to_h3"].to_numpy()).all()
    assert (april["place"] == "refuge").all()
    # the stays on a lockdown day are at the destination
    stays = ds.dataset(truth / "stays", partitioning="hive").to_table().to_pandas()
    day = stays[(stays["day"] == "2020-04-01") & stays["user_id"].isin(moves["user_id"])]
    merged = day.merge(moves, on="user_id")
    assert (merged["h3_cell"] == merged["to_h3"]).all()
    # the Yonne gain is the scenario's +7 % of Yonne's own residents, the Paris loss 11 %
    march = homes[(homes["month"] == "2020-03") & (homes["place"] == "home")]
    yonne_residents = (march["departement_code"] == "89").sum()
    paris_residents = (march["departement_code"] == "75").sum() + len(moves)
    assert (moves["to_departement_code"] == "89").sum() == round(0.07 * yonne_residents)
    assert len(moves) == round(0.11 * paris_residents)


def test_commuting_collapses_in_lockdown(lockdown_run):
    out, _ = lockdown_run
    stays = ds.dataset(out / "truth" / "stays", partitioning="hive").to_table().to_pandas()
    at_work = stays[stays["place"] == "work"].groupby("day")["user_id"].nunique()
    before = at_work[["2020-03-10", "2020-03-11", "2020-03-12"]].mean()
    after = at_work[["2020-03-31", "2020-04-01", "2020-04-02"]].mean()
    assert after < 0.45 * before


def test_scenario_file_and_fractions_parse():
    scen = load_scenario(None)
    assert str(scen["start"]) == "2020-03-17"
    gains = scen["relocations"][0]["destination_gain"]
    assert gains["89"] == 0.07 and set(gains) == {
        "89",
        "07",
        "32",
        "46",
        "43",
        "15",
        "22",
        "58",
        "61",
    }
    assert load_scenario("none") == {}
    assert parse_fraction("75=0.002,9=0.05,default=0.01") == {
        "default": 0.01,
        "75": 0.002,
        "09": 0.05,
    }
    with pytest.raises(ValueError, match="fractions"):
        parse_fraction("75=2")


def test_local_time_crosses_daylight_saving():
    spring = pd.Timestamp("2020-03-29").date()  # 02:00 -> 03:00 local
    utc = pd.to_datetime(local_to_utc_us(spring, np.array([3600, 4 * 3600])), unit="us")
    assert list(utc.strftime("%H:%M")) == ["00:00", "02:00"]
    winter = pd.to_datetime(
        local_to_utc_us(pd.Timestamp("2020-02-01").date(), np.array([0])), unit="us"
    )
    assert winter[0] == pd.Timestamp("2020-01-31 23:00")


def test_every_served_place_is_within_its_cells_range(lockdown_run):
    """The published range_m is the cell's reach: no true home lies beyond it (the
    pipeline clips each coverage polygon to it)."""
    out, _ = lockdown_run
    cells = pd.read_csv(out / "cells.csv", dtype={"cell_id": str}).set_index("cell_id")
    homes = pd.read_parquet(out / "truth" / "homes.parquet")
    homes = homes[homes["in_territory"]]
    ev = _events(out)
    # each user's most frequent night cell serves the home (or its handover sector)
    home_cell = ev.groupby("user_id")["cell_id"].agg(lambda s: s.mode()[0])
    h = homes.drop_duplicates("user_id").set_index("user_id").join(home_cell.rename("cell"))
    site = cells.loc[h["cell"]]
    dist_m = 1000 * distance_km(h["lat"], h["lon"], site["lat"].to_numpy(), site["lon"].to_numpy())
    assert (dist_m <= site["range_m"].to_numpy() + 1).mean() > 0.97  # mode: a few users roam
    nominal = cells["range_m"] >= 500
    assert nominal.all() and cells["range_m"].max() < 50_000


def test_population_reference_is_the_world_census_on_h3(lockdown_run):
    """population.csv: the simulated communes' INSEE populations on res-8 hexagons, denser
    towards each commune's centre, as the simulator places residents."""
    out, _ = lockdown_run
    grid = pd.read_csv(out / "population.csv")
    assert list(grid.columns) == ["h3_cell", "population"]
    assert grid["h3_cell"].str.fullmatch(r"88[0-9a-f]{13}").all() and grid["h3_cell"].is_unique
    com = geo.communes(["75", "89"])
    assert grid["population"].sum() == pytest.approx(com["population"].sum(), rel=1e-4)
    # a rural commune: its representative point's hexagon holds more than the average
    ter = territory(["89"], fraction=0.01)
    big = ter.communes[ter.inside].sort_values("area_km2").iloc[-1]
    one = population_grid(ter.communes, [ter.communes.index.get_loc(big.name)], 8)
    centre = h3.latlng_to_cell(big["rep_lat"], big["rep_lon"], 8)
    assert one.set_index("h3_cell").loc[centre, "population"] > 3 * one["population"].mean()
    assert one["population"].sum() == pytest.approx(big["population"])
