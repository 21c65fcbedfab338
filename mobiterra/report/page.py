"""``report/index.html``: one static page, no external resource, every text escaped.

Links are relative to ``report/`` (``../maps/…``, ``../exports/…``), so the page works from
a file path and behind any web server that serves the month folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from mobiterra.report.inputs import MonthOutputs
from mobiterra.report.labels import TEXT, month_label, number

CSS = """
:root { --ink:#1d2733; --muted:#5b6570; --line:#d9dde2; --accent:#1f4e79; --loss:#b2182b;
        --gain:#2166ac; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--ink); background:#f6f7f9; }
header { background:var(--accent); color:#fff; padding:1.4rem 2rem; }
header h1 { margin:0 0 .2rem; font-size:1.6rem; }
header p { margin:0; opacity:.9; }
main { max-width:1180px; margin:0 auto; padding:1rem 2rem 3rem; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:1rem 1.4rem;
          margin:1.2rem 0; }
h2 { font-size:1.2rem; margin:.2rem 0 .8rem; color:var(--accent); }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(210px, 1fr)); gap:.8rem; }
.card { border:1px solid var(--line); border-radius:6px; padding:.7rem .9rem; }
.card .value { font-size:1.6rem; font-weight:700; }
.card .label { font-weight:600; }
.card .note { color:var(--muted); font-size:.85rem; }
.loss { color:var(--loss); } .gain { color:var(--gain); }
figure { margin:0 0 1.6rem; }
figure img { width:100%; height:auto; border:1px solid var(--line); background:#fff; }
figcaption { color:var(--muted); font-size:.85rem; }
table { border-collapse:collapse; width:100%; font-size:.9rem; margin:.4rem 0 1rem; }
th, td { text-align:left; padding:.3rem .5rem; border-bottom:1px solid var(--line); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.notes li { color:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:1rem; }
h3 { font-size:1rem; margin:1rem 0 .4rem; }
footer { color:var(--muted); font-size:.8rem; text-align:center; padding:1rem; }
"""


@dataclass
class Download:
    path: Path  # under the month folder
    table: str
    size: int


@dataclass
class Figure:
    title: str
    note: str  # what is drawn; the full caption (k, rule, source) is printed on the map
    png: str  # relative to the month folder
    svg: str
    scope: str = "france"  # "departement" maps go in a grid


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _href(rel: str) -> str:
    """A link from report/index.html to a file of the month folder (relative, escaped)."""
    from urllib.parse import quote

    return _e("../" + quote(rel))


def _signed_class(value: float | None) -> str:
    if value is None or pd.isna(value) or value == 0:
        return ""
    return "loss" if value < 0 else "gain"


def _card(label: str, value: str, note: str = "", css: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value {css}">{_e(value)}</div>'
        f'<div class="note">{_e(note)}</div></div>'
    )


def _table(head: list[str], rows: list[list[object]], numeric: set[int]) -> str:
    th = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _diag(data: MonthOutputs, **where: str) -> pd.DataFrame:
    df = data.tables.get("diagnostics")
    if df is None:
        return pd.DataFrame()
    mask = pd.Series(True, index=df.index)
    for col, value in where.items():
        mask &= df[col] == value
    return df[mask]


def _val(row: pd.Series, col: str) -> float | None:
    v = row.get(col)
    return None if v is None or pd.isna(v) else float(v)


def headline(data: MonthOutputs, lang: str, extremes: list[dict] = ()) -> list[str]:
    """The key figures: residents and their change, Paris out-moves, small towns, and the
    hexagons of largest loss and gain (``extremes``, from report.figures)."""
    t = TEXT[lang]
    baseline = month_label(data.baseline_month, lang)
    cards = []
    france = _diag(data, kind="territory", unit="france")
    m = data.manifest
    if len(france):
        row = france.iloc[0]
        residents, change, pct = (
            _val(row, "residents"),
            _val(row, "residents_change"),
            _val(row, "residents_change_pct"),
        )
    else:  # the manifest's totals (diagnostics table absent)
        residents = m.get("users_with_home")
        before = (m.get("baseline") or {}).get("users_with_home")
        change = None if before is None or residents is None else residents - before
        pct = None if change is None or not before else 100 * change / before
    cards.append(_card(t["residents"], number(residents, lang), t["residents_note"]))
    if data.baseline_month and change is not None:
        text = number(change, lang, signed=True)
        if pct is not None:
            text += f" ({number(pct, lang, signed=True, digits=1)} %)"
        cards.append(_card(t["change"].format(baseline=baseline), text, "", _signed_class(change)))
    paris = _diag(data, kind="territory", unit="departement", code="75")
    if len(paris) and _val(paris.iloc[0], "residents_change_pct") is not None:
        p = paris.iloc[0]
        text = (
            f"{number(_val(p, 'residents_change'), lang, signed=True)} "
            f"({number(_val(p, 'residents_change_pct'), lang, signed=True, digits=1)} %)"
        )
        cards.append(
            _card(
                f"Paris — {t['change'].format(baseline=baseline)}",
                text,
                "",
                _signed_class(_val(p, "residents_change")),
            )
        )
    out = _diag(data, kind="flow", unit="departement", origin_code="75")
    out = out[(out["destination_code"] != "75") & out["users"].notna()] if len(out) else out
    if len(out):
        cards.append(_card(t["paris_out"], number(out["users"].sum(), lang), t["paris_out_note"]))
    small = _diag(data, kind="territory", unit="small_towns")
    if len(small) and _val(small.iloc[0], "share_change_pp") is not None:
        s = small.iloc[0]
        net = _val(s, "net_shift")
        note = t["small_towns_note"]
        if net is not None:
            note += " ; " + t["small_towns_net"].format(net=number(net, lang, signed=True))
        cards.append(
            _card(
                t["small_towns"],
                f"{number(_val(s, 'share_change_pp'), lang, signed=True, digits=2)} pt",
                note,
                _signed_class(_val(s, "share_change_pp")),
            )
        )
    for x in extremes:
        text = (
            f"{number(x['change'], lang, signed=True)} "
            f"({number(x['pct'], lang, signed=True, digits=1)} %)"
        )
        note = t["hexagon_in"].format(place=x["place"], res=x["resolution"])
        cards.append(_card(t[x["key"]], text, note, _signed_class(x["change"])))
    return cards


def departements_table(data: MonthOutputs, lang: str) -> str:
    rows = _diag(data, kind="territory", unit="departement")
    if rows.empty:
        return ""
    t = TEXT[lang]
    rows = rows.sort_values("residents_change_pct", na_position="last")
    head = [
        t["departement"],
        t["residents_baseline"].format(baseline=month_label(data.baseline_month, lang)),
        t["residents_month"].format(month=month_label(data.month, lang)),
        t["change_people"],
        t["change_pct"],
        t["net_shift"],
    ]
    estimated = "residents_est" in rows and rows["residents_est"].notna().any()
    if estimated:
        head.append(t["population_est"].format(month=month_label(data.month, lang)))
    body = [
        [
            f"{r['code']} {r['name']}",
            number(_val(r, "residents_baseline"), lang),
            number(_val(r, "residents"), lang),
            number(_val(r, "residents_change"), lang, signed=True),
            number(_val(r, "residents_change_pct"), lang, signed=True, digits=1),
            number(_val(r, "net_shift"), lang, signed=True),
        ]
        + ([number(_val(r, "residents_est"), lang)] if estimated else [])
        for _, r in rows.iterrows()
    ]
    if rows["net_shift"].isna().all():  # every net shift suppressed: no empty column
        drop = head.index(t["net_shift"])
        head = head[:drop] + head[drop + 1 :]
        body = [b[:drop] + b[drop + 1 :] for b in body]
    return f"<h3>{_e(t['territories'])}</h3>" + _table(head, body, set(range(1, len(head))))


def quality(data: MonthOutputs, lang: str) -> str:
    """The data-quality manifest: rows read and their fate, quarantine reasons, suppression."""
    t, m = TEXT[lang], data.manifest
    rejected = m.get("rows_rejected") or {}
    rows = [
        [t["rows_read"], number(m.get("rows_read"), lang)],
        [t["rows_accepted"], number(m.get("rows_accepted"), lang)],
        [t["rows_out_of_period"], number(m.get("rows_out_of_period"), lang)],
        [t["rows_duplicate"], number(m.get("rows_duplicate"), lang)],
        [t["quarantined"], number(sum(rejected.values()), lang)],
        [t["invariant"], t["yes"] if m.get("invariant_holds") else t["no"]],
        [t["users"], number(m.get("users"), lang)],
        [t["users_with_home"], number(m.get("users_with_home"), lang)],
    ]
    out = _table(["", ""], rows, {1})
    reasons = [[reason, number(n, lang)] for reason, n in sorted(rejected.items())]
    out += f"<h3>{_e(t['quarantined'])}</h3>"
    out += _table([t["reason"], ""], reasons, {1}) if reasons else f"<p>{_e(t['none'])}</p>"
    tables = m.get("tables") or {}
    supp = [
        [
            name,
            number(v.get("rows_published"), lang),
            number(v.get("rows_suppressed_primary"), lang),
            number(v.get("rows_suppressed_secondary"), lang),
        ]
        for name, v in tables.items()
    ]
    out += f"<h3>{_e(t['suppressed'])} (k = {_e(data.k)})</h3>"
    out += _table(
        [t["table"], t["published"], t["suppressed_primary"], t["suppressed_secondary"]],
        supp,
        {1, 2, 3},
    )
    run = [
        [key, m.get(key)]
        for key in ("code_version", "config_hash", "created_at", "coverage_strategy")
    ]
    run.append(["resolutions", ", ".join(str(r) for r in m.get("resolutions", []))])
    out += f"<h3>{_e(t['run'])}</h3>" + _table(["", ""], run, set())
    return out


def downloads(files: list[Download], lang: str) -> str:
    t = TEXT[lang]
    rows = "".join(
        f'<tr><td><a href="{_href(d.path.as_posix())}">{_e(d.path.name)}</a></td>'
        f"<td>{_e(d.table)}</td><td>{_e(d.path.suffix.lstrip('.').upper())}</td>"
        f'<td class="num">{_e(_size(d.size, lang))}</td></tr>'
        for d in files
    )
    head = "".join(f"<th>{_e(h)}</th>" for h in (t["file"], t["table"], t["format"]))
    return (
        f"<p>{_e(t['downloads_intro'])}</p><table><thead><tr>{head}"
        f'<th class="num">{_e(t["size"])}</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _size(n: int, lang: str) -> str:
    for unit in ("o" if lang == "fr" else "B", "ko" if lang == "fr" else "kB"):
        if n < 1024:
            return f"{number(n, lang)} {unit}"
        n /= 1024
    return f"{number(n, lang, digits=1)} {'Mo' if lang == 'fr' else 'MB'}"


def _figure(f: Figure, k: int, lang: str) -> str:
    t = TEXT[lang]
    return (
        f'<figure><img src="{_href(f.png)}" alt="{_e(f.title)}">'
        f"<figcaption><strong>{_e(f.title)}</strong><br>{_e(f.note)} k = {_e(k)}. "
        f'<a href="{_href(f.png)}">{_e(t["png"])}</a> · '
        f'<a href="{_href(f.svg)}">{_e(t["svg"])}</a></figcaption></figure>'
    )


def figures(figs: list[Figure], k: int, lang: str) -> str:
    """National maps one under the other, département maps in a grid."""
    wide = "".join(_figure(f, k, lang) for f in figs if f.scope != "departement")
    grid = "".join(_figure(f, k, lang) for f in figs if f.scope == "departement")
    if grid:
        grid = f'<h3>{_e(TEXT[lang]["maps_departements"])}</h3><div class="grid">{grid}</div>'
    return wide + grid


def render(
    data: MonthOutputs,
    figs: list[Figure],
    notes: list[str],
    files: list[Download],
    lang: str,
    generated: str,
    extremes: list[dict] = (),
) -> str:
    """The whole page."""
    t = TEXT[lang]
    month = month_label(data.month, lang)
    sub = t["subtitle_baseline"].format(baseline=month_label(data.baseline_month, lang))
    note_list = "".join(f"<li>{_e(n)}</li>" for n in notes)
    rule = t["suppression_rule"].format(k=data.k)
    return f"""<!DOCTYPE html>
<html lang="{_e(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(t["title"].format(month=month))}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header><h1>{_e(t["title"].format(month=month))}</h1>
<p>{_e(sub) if data.baseline_month else ""}</p></header>
<main>
<section id="chiffres"><h2>{_e(t["headline"])}</h2>
<div class="cards">{"".join(headline(data, lang, extremes))}</div>
{departements_table(data, lang)}</section>
<section id="cartes"><h2>{_e(t["maps"])}</h2>
{f'<ul class="notes">{note_list}</ul>' if notes else ""}
{figures(figs, data.k, lang)}</section>
<section id="telechargements"><h2>{_e(t["downloads"])}</h2>{downloads(files, lang)}</section>
<section id="qualite"><h2>{_e(t["quality"])}</h2>{quality(data, lang)}</section>
<section id="methode"><h2>{_e(t["method"])}</h2>
<p>{_e(rule)}</p><p>{_e(t["residents_def"])}</p></section>
</main>
<footer>{_e(generated)}</footer>
</body>
</html>
"""
