"""The planner's outputs: maps, exports and report/index.html, from published tables only;
and the page in a real headless Chromium (Debian's package, driven over DevTools)."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import h3
import pandas as pd
import pyogrio
import pytest

from jobs import diagnostics as D
from mobiterra import cli, exports
from mobiterra.report import build_report

K = 20
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".state" / "test-artifacts"
PLACES = {  # (lat, lon) of a town in each hand-made département
    "75": (48.8566, 2.3522),
    "89": (47.7986, 3.5673),
    "46": (44.4475, 1.4419),
}
EVIL = "Lot <script>alert('x')</script> & co"


def _cells(res: int) -> dict[str, str]:
    return {d: h3.latlng_to_cell(lat, lon, res) for d, (lat, lon) in PLACES.items()}


def _write(df: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True)
    df.to_parquet(folder / "part-00000.parquet", index=False)
    (folder / "_SUCCESS").touch()


def _residents(counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    for res, scale in ((4, 1.0), (5, 0.8), (6, 0.5)):
        for dep, cell in _cells(res).items():
            rows.append((res, cell, int(counts[dep] * scale)))
    df = pd.DataFrame(rows, columns=["resolution", "h3_cell", "residents"])
    return df.astype({"resolution": "int32"}).assign(residents_est=float("nan"))


def _diagnostics() -> pd.DataFrame:
    def row(**kw):
        return {c: kw.get(c) for c in D.COLUMNS} | {"month": "2020-04", "baseline_month": "2020-02"}

    def terr(unit, code, name, now, before, **kw):
        return row(
            kind="territory",
            unit=unit,
            code=code,
            name=name,
            residents=now,
            residents_baseline=before,
            residents_change=now - before,
            residents_change_pct=100 * (now - before) / before,
            **kw,
        )

    rows = [
        terr("france", "FR", "France", 1000, 1020),
        terr("departement", "75", "Paris", 300, 340, movers_in=0, movers_out=46, net_shift=-46),
        terr("departement", "89", "Yonne", 250, 225, movers_in=25, movers_out=0, net_shift=25),
        terr("departement", "46", EVIL, 221, 200, movers_in=21, movers_out=0, net_shift=21),
        terr("commune", "89024", "Auxerre", 60, 40, departement_code="89", rank_gain=1),
        terr(
            "small_towns",
            "small_towns_rural",
            "Petites villes et rural",
            471,
            425,
            share_pct=47.1,
            share_baseline_pct=41.7,
            share_change_pp=5.4,
            net_shift=46,
        ),
        row(
            kind="flow",
            unit="departement",
            name="Paris → Yonne",
            origin_code="75",
            destination_code="89",
            users=25,
        ),
        row(
            kind="flow",
            unit="departement",
            name="Paris → Lot",
            origin_code="75",
            destination_code="46",
            users=21,
        ),
        row(
            kind="flow",
            unit="density_class",
            name="city → rural",
            origin_code="city",
            destination_code="rural",
            users=46,
        ),
    ]
    df = pd.DataFrame(rows, columns=D.COLUMNS)
    longs = [f.name for f in D.DIAGNOSTICS.fields if f.dataType.typeName() in ("long", "integer")]
    doubles = [f.name for f in D.DIAGNOSTICS.fields if f.dataType.typeName() == "double"]
    return df.astype({c: "Int64" for c in longs} | {c: "float64" for c in doubles})


DAY1, DAY2 = pd.Timestamp("2020-04-01T22:00Z"), pd.Timestamp("2020-04-02T22:00Z")


def _mobility() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """od_trips (two days), present_population (two days), od_home_work (the month)."""
    c5 = _cells(5)
    od = pd.DataFrame(
        [
            (5, c5["89"], c5["75"], DAY1, "day", 130, 40),
            (5, c5["89"], c5["75"], DAY2, "day", 120, 38),
            (5, c5["75"], c5["89"], DAY1, "day", 90, 30),
            (5, c5["75"], c5["75"], DAY1, "day", 900, 250),
        ],
        columns=[
            "resolution",
            "origin_cell",
            "destination_cell",
            "period_start",
            "period",
            "trips",
            "users",
        ],
    ).astype({"resolution": "int32"})
    present = pd.DataFrame(
        [
            (5, c5["75"], DAY1, "day", 280, None),
            (5, c5["75"], DAY2, "day", 275, None),
            (5, c5["75"], DAY1, "hour", 210, None),
        ],
        columns=["resolution", "h3_cell", "period_start", "period", "users", "users_est"],
    ).astype({"resolution": "int32", "users_est": "float64"})
    home_work = od.iloc[[0, 3]].assign(
        period="month", period_start=pd.Timestamp("2020-03-31T22:00Z")
    )
    return od, present, home_work


def _manifest(month: str, baseline: str | None, tables: dict) -> dict:
    return {
        "month": month,
        "baseline_month": baseline,
        "k": K,
        "rows_read": 1234,
        "rows_accepted": 1200,
        "rows_out_of_period": 20,
        "rows_duplicate": 9,
        "rows_rejected": {"unknown_cell": 3, "null_user_id": 2},
        "invariant_holds": True,
        "users": 1100,
        "users_with_home": 1000,
        "baseline": {"month": baseline, "users_with_home": 1020} if baseline else None,
        "resolutions": [4, 5, 6],
        "coverage_strategy": "voronoi",
        "code_version": "0.1.0+test",
        "config_hash": "0" * 16,
        "created_at": "2020-05-01T03:00:00+00:00",
        "tables": {
            name: {
                "rows_published": n,
                "rows_suppressed_primary": 7,
                "rows_suppressed_secondary": 2,
            }
            for name, n in tables.items()
        },
    }


def make_hand_out(root: Path) -> Path:
    """OUT with 2020-02 (residents) and 2020-04 (every published table)."""
    feb, apr = root / "2020-02", root / "2020-04"
    _write(_residents({"75": 340, "89": 225, "46": 200}), feb / "residents")
    (feb / "manifest.json").write_text(json.dumps(_manifest("2020-02", None, {"residents": 9})))
    residents = _residents({"75": 300, "89": 250, "46": 221})
    c4 = _cells(4)
    shift = pd.DataFrame(
        [(4, c4["75"], c4["75"], 250), (4, c4["75"], c4["89"], 25), (4, c4["89"], c4["89"], 200)],
        columns=["resolution", "origin_cell", "destination_cell", "users"],
    ).astype({"resolution": "int32"})
    _write(residents, apr / "residents")
    _write(shift, apr / "residence_shift")
    _write(_diagnostics(), apr / "diagnostics")
    od, present, home_work = _mobility()
    _write(od, apr / "od_trips")
    _write(present, apr / "present_population")
    _write(home_work, apr / "od_home_work")
    od_deps = pd.DataFrame(
        [
            ("75", "Paris", "75", "Paris", DAY1, "day", 5_100, 3_700),
            ("89", "Yonne", "75", "Paris", DAY1, "day", 60, 41),
            ("89", "Yonne", "89", "Yonne", DAY2, "day", 1_700, 900),
        ],
        columns=["origin_code", "origin_name", "destination_code", "destination_name",
                 "period_start", "period", "trips", "users"],
    )  # fmt: skip
    _write(od_deps, apr / "od_departements")
    expansion = pd.DataFrame(
        [
            ("75", "2020-02", 2_187_526, 1.0, 711.2, "calibrated"),
            ("46", "2020-02", 173_828, 0.98, None, "too_few_residents"),
        ],
        columns=[
            "departement_code",
            "calibration_month",
            "reference_residents",
            "network_coverage",
            "factor",
            "status",
        ],
    )
    _write(expansion, apr / "expansion")
    counts = {"residents": len(residents), "residence_shift": len(shift), "diagnostics": 9}
    counts |= {"od_trips": len(od), "present_population": len(present), "od_home_work": 2}
    counts |= {"od_departements": len(od_deps)}
    (apr / "manifest.json").write_text(json.dumps(_manifest("2020-04", "2020-02", counts)))
    return root


@pytest.fixture
def hand_out(tmp_path) -> Path:
    """A fresh hand-made OUT, for tests that change it."""
    return make_hand_out(tmp_path)


@pytest.fixture(scope="module")
def hand_report(tmp_path_factory) -> tuple[Path, dict]:
    """The hand-made April reported once (read-only: copy it to change it)."""
    out = make_hand_out(tmp_path_factory.mktemp("hand"))
    summary = build_report(None, out / "2020-04")
    return out / "2020-04", summary


def _copy(month: Path, tmp_path: Path) -> Path:
    shutil.copytree(month.parent, tmp_path / "out")
    return tmp_path / "out" / month.name


# --- maps, exports, page on hand-made published tables -------------------------------


def test_maps_of_the_month(hand_report):
    month, summary = hand_report
    assert summary["maps"][:5] == [
        "residents_change_france",
        "residents_change_departements",
        "residence_shift_flows",
        "od_trips_flows",
        "od_home_work_flows",
    ]
    # one map per département of the diagnostics table, in code order
    assert summary["maps"][5:] == [
        "residents_change_46",
        "residents_change_75",
        "residents_change_89",
    ]
    for name in summary["maps"]:
        for ext in ("png", "svg"):
            assert (month / "maps" / f"{name}.{ext}").stat().st_size > 10_000
        svg = (month / "maps" / f"{name}.svg").read_text()
        assert "k = 20" in svg and "INSEE, IGN" in svg  # caption: k, rule, source
    assert summary["notes"] == []


def _published(month: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(month / name)


def test_exports_open_in_geopandas_and_hold_exactly_the_published_rows(hand_report):
    month, _ = hand_report
    ex = month / "exports"
    tables = ("residents", "residence_shift", "diagnostics", "od_trips", "present_population")
    for name in (*tables, "od_departements"):
        table = _published(month, name)
        csv = pd.read_csv(ex / f"{name}.csv", encoding="utf-8-sig", dtype={"code": str})
        gj = gpd.read_file(ex / f"{name}.geojson", engine="pyogrio")
        layers = [
            lay
            for lay in pyogrio.list_layers(ex / f"{name}.gpkg")[:, 0]
            if not lay.endswith((exports.PLACES_SUFFIX, exports.VALUES_SUFFIX))
        ]
        gp = pd.concat([gpd.read_file(ex / f"{name}.gpkg", layer=lay) for lay in layers])
        for df in (csv, gj, gp):
            assert set(table.columns) <= set(df.columns), name
        assert len(csv) == len(gp) == len(table), name
        # GeoJSON leaves the hourly rows out (they are in the CSV and the GeoPackage)
        hourly = (table["period"] == "hour").sum() if "period" in table else 0
        assert len(gj) == len(table) - hourly, name
        count = {"residents": "residents", "diagnostics": "residents"}.get(name, "users")
        assert sorted(csv[count].dropna()) == sorted(table[count].dropna())
    # instants as UTC ISO 8601 text, the same in every format
    od = pd.read_csv(ex / "od_trips.csv")
    assert sorted(set(od["period_start"])) == ["2020-04-01T22:00:00Z", "2020-04-02T22:00:00Z"]
    od_gj = gpd.read_file(ex / "od_trips.geojson")
    assert set(pd.to_datetime(od_gj["period_start"], utc=True)) == {DAY1, DAY2}
    od_gp = gpd.read_file(ex / "od_trips.gpkg", layer="od_trips_r5")
    assert set(pd.to_datetime(od_gp["period_start"], utc=True)) == {DAY1, DAY2}
    # a layer of periods is a view: its values joined to its places, each stored once
    present = ex / "present_population.gpkg"
    hourly = gpd.read_file(present, layer="present_population_r5")
    places = gpd.read_file(present, layer="present_population_r5_places")
    assert hourly["h3_cell"].duplicated().any() and not places["h3_cell"].duplicated().any()
    assert set(places["h3_cell"]) == set(hourly["h3_cell"])
    for cell, geom in zip(hourly["h3_cell"], hourly.geometry, strict=True):
        ring = [(round(lat, 9), round(lng, 9)) for lng, lat in geom.exterior.coords[:-1]]
        assert ring == [(round(a, 9), round(b, 9)) for a, b in h3.cell_to_boundary(cell)]
    assert hourly.crs.to_epsg() == 4326 and (hourly.geom_type == "Polygon").all()
    res = gpd.read_file(ex / "residents.gpkg", layer="residents_r5")
    assert (res.geom_type == "Polygon").all() and (res["resolution"] == 5).all()
    assert res.crs.to_epsg() == 4326
    hexagon = h3.cell_to_boundary(res["h3_cell"].iloc[0])
    assert len(res.geometry.iloc[0].exterior.coords) == len(hexagon) + 1
    shift = gpd.read_file(ex / "residence_shift.geojson")
    moved = shift["origin_cell"] != shift["destination_cell"]
    assert (shift[moved].geom_type == "LineString").all() and shift[~moved].geometry.isna().all()
    assert set(pyogrio.list_layers(ex / "diagnostics.gpkg")[:, 0]) >= {
        "diagnostics_departement",
        "diagnostics_departement_flows",
        "diagnostics_commune",
        "diagnostics_density_class_flows",
        "diagnostics_france",
    }
    # daily trips between départements: outlines for trips inside one, lines between two
    within = gpd.read_file(ex / "od_departements.gpkg", layer="od_departements_within")
    between = gpd.read_file(ex / "od_departements.gpkg", layer="od_departements_between")
    assert within.geom_type.isin(["Polygon", "MultiPolygon"]).all() and len(within) == 2
    assert (between.geom_type == "LineString").all() and list(between["origin_name"]) == ["Yonne"]
    factors = gpd.read_file(ex / "expansion.gpkg")
    assert list(factors["departement_code"]) == ["75", "46"]
    assert factors.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    deps = gpd.read_file(ex / "diagnostics.gpkg", layer="diagnostics_departement")
    assert deps.geom_type.isin(["Polygon", "MultiPolygon"]).all() and len(deps) == 3
    # a spreadsheet reads accents and the CSV has cell centres
    assert "Nièvre" not in (ex / "diagnostics.csv").read_text(encoding="utf-8-sig")
    assert {"lat", "lon"} <= set(pd.read_csv(ex / "residents.csv").columns)


def test_exports_never_show_a_count_below_k(hand_report):
    month, _ = hand_report
    for name, cols in (
        ("residents", ["residents"]),
        ("residence_shift", ["users"]),
        ("od_trips", ["trips", "users"]),
        ("present_population", ["users"]),
        ("diagnostics", ["residents", "residents_baseline", "users"]),
        ("od_departements", ["trips", "users"]),
    ):
        csv = pd.read_csv(month / "exports" / f"{name}.csv", encoding="utf-8-sig")
        for col in cols:
            values = csv[col].dropna()
            assert not values.between(1, K - 1).any(), (name, col)


def test_export_readme_gives_k_the_rule_and_every_column(hand_report):
    month, _ = hand_report
    text = (month / "exports" / "README.md").read_text()
    assert "k = 20" in text and "suppression secondaire" in text
    names = ("residents", "residence_shift", "diagnostics", "od_trips", "od_home_work")
    for name in (*names, "od_departements"):
        assert f"## `{name}`" in text
        for col in _published(month, name).columns:
            assert f"| `{col}` |" in text, col
    assert "| `residents` | usagers |" in text
    # a column named like another table's gets its own meaning
    assert "département d'origine du trajet" in text
    assert "territoire de résidence le mois de référence" in text


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("href", "src"):
                self.refs.append(value)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: Path) -> _Page:
    p = _Page()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def test_page_links_every_map_and_export_relatively_and_escapes_text(hand_report):
    month, summary = hand_report
    page = month / "report" / "index.html"
    parsed = _parse(page)
    local = [r for r in parsed.refs if not r.startswith("data:")]
    assert local and all(r.startswith("../") for r in local)  # relative: file or any server
    for ref in local:
        assert (page.parent / urllib.request.url2pathname(ref)).resolve().is_file(), ref
    exported = {f"../exports/{p.name}" for p in (month / "exports").iterdir()}
    assert exported <= set(local)
    assert {f"../maps/{m}.png" for m in summary["maps"]} <= set(local)
    assert {f"../maps/{m}.svg" for m in summary["maps"]} <= set(local)
    # no external resource, no script at all, the evil name shown as text
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "//" not in "".join(local)
    assert "script" not in parsed.tags
    assert EVIL in "".join(parsed.text) and "&lt;script&gt;" in html


def test_page_headline_and_quality_in_french(hand_report):
    month, _ = hand_report
    text = " ".join(_parse(month / "report" / "index.html").text)
    assert "avril 2020" in text and "février 2020" in text
    assert "−20 (−2,0 %)" in text  # France: 1,000 vs 1,020
    assert "−40 (−11,8 %)" in text  # Paris
    assert "46" in text and "+5,40 pt" in text  # Paris out-moves, small towns share
    assert "1\u202f234" in text and "unknown_cell" in text and "null_user_id" in text
    assert "Qualité des données" in text and "k = 20" in text


def test_page_in_english(hand_out):
    build_report(None, hand_out / "2020-04", lang="en")
    html = (hand_out / "2020-04" / "report" / "index.html").read_text()
    assert '<html lang="en">' in html and "April 2020" in html and "Data quality" in html


def test_a_month_without_baseline_or_diagnostics_still_reports(hand_out):
    feb = hand_out / "2020-02"
    summary = build_report(None, feb)
    assert summary["maps"][0] == "residents_france" and "residents_75" in summary["maps"]
    assert sorted(p.name for p in (feb / "exports").iterdir()) == [
        "README.md",
        "residents.csv",
        "residents.geojson",
        "residents.gpkg",
    ]
    assert any("référence" in n for n in summary["notes"])
    assert (feb / "report" / "index.html").exists()


def test_without_the_baseline_folder_communes_show_the_change(hand_out):
    shutil.rmtree(hand_out / "2020-02")
    summary = build_report(None, hand_out / "2020-04")
    assert summary["maps"][:2] == ["residents_france", "residents_change_departements"]
    # the diagnostics table publishes one commune's change (Auxerre, 89)
    assert summary["maps"][-1] == "residents_change_89"
    svg = (hand_out / "2020-04" / "maps" / "residents_change_89.svg").read_text()
    assert "Yonne (89)" in svg and "Communes dont les résidents sont publiés" in svg
    assert any("pas à côté" in n for n in summary["notes"])


def test_empty_published_tables_do_not_break_the_report(hand_out):
    month = hand_out / "2020-04"
    for name in ("residents", "residence_shift"):
        df = pd.read_parquet(month / name).iloc[:0]
        shutil.rmtree(month / name)
        _write(df, month / name)
    summary = build_report(None, month)
    assert "residents_change_france" not in summary["maps"]
    csv = pd.read_csv(month / "exports" / "residents.csv", encoding="utf-8-sig")
    assert len(csv) == 0 and (month / "exports" / "residents.gpkg").exists()


def test_rerun_replaces_the_outputs_and_leaves_no_scratch(hand_report, tmp_path):
    month = _copy(hand_report[0], tmp_path)
    (month / "maps" / "stale.png").write_bytes(b"x")
    build_report(None, month)
    assert not (month / "maps" / "stale.png").exists()
    assert not [p for p in month.iterdir() if p.name.startswith(".report")]


def test_exports_of_a_big_month_from_a_second_process_are_the_same_files(
    hand_report, tmp_path, monkeypatch
):
    """Above SEPARATE_EXPORT_ROWS the exports are written by a second process beside the
    maps: same files, byte for byte (GeoPackages aside: SQLite pages carry timestamps)."""
    from mobiterra.report import build

    month = _copy(hand_report[0], tmp_path)
    monkeypatch.setattr(build, "SEPARATE_EXPORT_ROWS", 0)
    summary = build_report(None, month)
    assert summary["exports"] == hand_report[1]["exports"]
    inline = {p.name: p for p in (hand_report[0] / "exports").iterdir()}
    spawned = {p.name: p for p in (month / "exports").iterdir()}
    assert sorted(inline) == sorted(spawned)
    for name, path in spawned.items():
        if path.suffix == ".gpkg":
            a, b = (gpd.list_layers(f)["name"].tolist() for f in (inline[name], path))
            assert a == b, name
        else:
            assert path.read_bytes() == inline[name].read_bytes(), name


def test_cli_report_and_its_one_line_error(hand_out, capsys):
    assert cli.main(["report", "--out", str(hand_out), "--month", "2020-04", "--quiet"]) == 0
    assert (hand_out / "2020-04" / "report" / "index.html").exists()
    assert cli.main(["report", "--out", str(hand_out), "--month", "2020-07"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2020-07" in err[0] and "manifest.json" in err[0]


# --- the sample's April 2020, made by the pipeline ------------------------------------


def test_the_sample_report_shows_paris_losing_and_small_towns_gaining(sample_run):
    april = sample_run / "2020-04"
    page = april / "report" / "index.html"
    assert page.exists() and (april / "maps" / "residents_change_france.png").exists()
    for table in ("residents", "residence_shift"):
        for ext in ("csv", "geojson", "gpkg"):
            assert (april / "exports" / f"{table}.{ext}").exists()
    text = " ".join(_parse(page).text)
    assert "avril 2020" in text and "février 2020" in text
    deps = (
        pd.read_parquet(april / "diagnostics").query(
            "kind == 'territory' and unit == 'departement'"
        )
        if (april / "diagnostics").exists()
        else pd.DataFrame()
    )
    if len(deps):
        change = deps.set_index("code")["residents_change"]
        assert change["75"] < 0
        assert (change.reindex(["89", "58", "46", "32", "15"]).dropna() > 0).all()
        assert (april / "maps" / "residents_change_75.png").exists()
    else:  # the H3 cells: the Paris hexagon loses most
        assert "−344" in text or "Plus forte baisse" in text


# --- the page in headless Chromium ------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (CI installs Debian's package: apt-get install chromium)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-allow-origins=*",
    "--window-size=1280,1800",
]


class Chromium:
    """Headless Chromium over the DevTools protocol (websocket), without Playwright."""

    def __init__(self):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="mobiterra-chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            self.events.append(json.loads(self.ws.recv(timeout=60)))
        time.sleep(0.3)  # late console messages
        self.send("Runtime.evaluate", expression="1")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"]["value"]

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads and HTTP errors of the page."""
        found = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                found.append(f"console: {p['args']}")
            elif m == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails']}")
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                found.append(f"failed: {p.get('errorText')}")
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                found.append(f"http {p['response']['status']}: {p['response']['url']}")
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium()
    yield browser
    browser.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """Serve a folder on 127.0.0.1 (any free port) in a thread; yields a start function."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


LINKS_JS = """JSON.stringify({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  images: [...document.images].map(i => ({src: i.currentSrc, ok: i.complete,
                                          w: i.naturalWidth, h: i.naturalHeight})),
  title: document.title, lang: document.documentElement.lang,
  width: document.documentElement.scrollWidth
})"""


def _check_page(browser: Chromium, url: str, shot: Path) -> dict:
    browser.open(url)
    page = json.loads(browser.evaluate(LINKS_JS))
    assert browser.errors() == []
    assert page["images"], "no map on the page"
    for img in page["images"]:
        assert img["ok"] and img["w"] > 0 and img["h"] > 0, img["src"]
    for link in page["links"]:
        if link.startswith("file:"):
            assert Path(urllib.request.url2pathname(link[len("file:") :])).is_file(), link
        else:
            head = urllib.request.Request(link, method="HEAD")  # no download of big files
            with urllib.request.urlopen(head) as r:
                assert r.status == 200, link
    assert page["width"] <= 1280  # nothing wider than the window
    print(f"screenshot: {browser.screenshot(shot)}")
    return page


@needs_chromium
def test_chromium_opens_the_sample_page_over_http_every_link_and_image_resolves(
    sample_run, chromium, serve
):
    base = serve(sample_run)
    page = _check_page(
        chromium, f"{base}/2020-04/report/index.html", ARTIFACTS / "report-2020-04.png"
    )
    assert page["lang"] == "fr" and "avril 2020" in page["title"]
    exports = sorted(p.name for p in (sample_run / "2020-04" / "exports").iterdir())
    assert {f"{base}/2020-04/exports/{name}" for name in exports} <= set(page["links"])


@needs_chromium
def test_chromium_opens_the_page_from_a_file_path(hand_report, chromium):
    month, _ = hand_report
    page = _check_page(
        chromium, (month / "report" / "index.html").as_uri(), ARTIFACTS / "report-hand.png"
    )
    assert len(page["images"]) == 8


@needs_chromium
def test_the_browser_check_catches_a_broken_image(hand_report, chromium, serve, tmp_path):
    month = _copy(hand_report[0], tmp_path)
    os.remove(month / "maps" / "residence_shift_flows.png")
    base = serve(month)
    chromium.open(f"{base}/report/index.html")
    assert any("404" in e for e in chromium.errors())


def test_a_big_month_reported_from_a_plain_script_without_a_main_guard(hand_report, tmp_path):
    """A user's script that calls build_report at top level (no ``if __name__ ==
    "__main__"``) must not be run again by the exports' second process."""
    month = _copy(hand_report[0], tmp_path)
    script = tmp_path / "my_report.py"
    script.write_text(
        "import sys\n"
        "from mobiterra.report import build\n"
        "build.SEPARATE_EXPORT_ROWS = 0\n"
        "print('exports', build.build_report(None, sys.argv[1])['exports'])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(month)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["exports", str(hand_report[1]["exports"])]
    assert sorted(p.name for p in (month / "exports").iterdir()) == sorted(
        p.name for p in (hand_report[0] / "exports").iterdir()
    )


def test_a_failed_export_process_falls_back_to_exports_written_in_process(
    hand_report, tmp_path, monkeypatch, caplog
):
    from mobiterra.report import build

    month = _copy(hand_report[0], tmp_path)
    monkeypatch.setattr(build, "SEPARATE_EXPORT_ROWS", 0)
    monkeypatch.setattr(build, "EXPORT_MODULE", "mobiterra.no_such_module")
    summary = build_report(None, month)
    assert summary["exports"] == hand_report[1]["exports"]
    assert "no_such_module" in caplog.text and "writing the exports here" in caplog.text
    assert sorted(p.name for p in (month / "exports").iterdir()) == sorted(
        p.name for p in (hand_report[0] / "exports").iterdir()
    )
