"""``exports/README.md``: files, columns, units, k and the suppression rule."""

from __future__ import annotations

import pandas as pd

from mobiterra.report.labels import TEXT

# column: (unit, French meaning, English meaning)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "resolution": (
        "H3",
        "résolution H3 (4 ≈ 1 770 km² … 8 ≈ 0,74 km²)",
        "H3 resolution (4 ≈ 1,770 km² … 8 ≈ 0.74 km²)",
    ),
    "h3_cell": ("", "hexagone H3 (15 caractères hexadécimaux)", "H3 cell (15 hex characters)"),
    "origin_cell": ("", "hexagone H3 d'origine", "origin H3 cell"),
    "destination_cell": ("", "hexagone H3 de destination", "destination H3 cell"),
    "residents": (
        "usagers",
        "usagers distincts dont la résidence habituelle est dans la zone",
        "distinct users whose usual residence is in the area",
    ),
    "residents_est": (
        "habitants",
        "résidents redressés à la population totale (vide sans population de référence)",
        "residents expanded to the whole population (empty without a population reference)",
    ),
    "users": ("usagers", "usagers distincts", "distinct users"),
    "users_est": (
        "habitants",
        "usagers redressés à la population totale",
        "users expanded to the whole population",
    ),
    "trips": (
        "trajets",
        "trajets (déplacement entre deux séjours)",
        "trips (a move between two stays)",
    ),
    "period": (
        "",
        "période : hour, day, night, daytime, evening ou month",
        "period: hour, day, night, daytime, evening or month",
    ),
    "period_start": (
        "UTC",
        "début de la période (instant UTC, ISO 8601) ; jours et parties de "
        "journée suivent l'heure de Paris",
        "start of the period (UTC instant, ISO 8601); days and day-parts follow Paris local time",
    ),
    "lat": ("degrés", "latitude du centre de l'hexagone (WGS84)", "cell centre latitude (WGS84)"),
    "lon": ("degrés", "longitude du centre de l'hexagone (WGS84)", "cell centre longitude"),
    "origin_lat": ("degrés", "latitude du centre d'origine", "origin centre latitude"),
    "origin_lon": ("degrés", "longitude du centre d'origine", "origin centre longitude"),
    "destination_lat": (
        "degrés",
        "latitude du centre de destination",
        "destination centre latitude",
    ),
    "destination_lon": (
        "degrés",
        "longitude du centre de destination",
        "destination centre longitude",
    ),
    "month": ("AAAA-MM", "mois", "month"),
    "baseline_month": ("AAAA-MM", "mois de référence", "baseline month"),
    "kind": (
        "",
        "territory (un territoire) ou flow (un flux entre deux territoires)",
        "territory or flow (between two territories)",
    ),
    "unit": (
        "",
        "france, departement, epci, commune, density_class, size_class, small_towns",
        "france, departement, epci, commune, density_class, size_class, small_towns",
    ),
    "code": (
        "",
        "code INSEE (commune, département), SIREN (EPCI) ou code de classe",
        "INSEE code, EPCI SIREN or class code",
    ),
    "name": ("", "libellé", "label"),
    "departement_code": ("", "département de la commune / de l'EPCI", "département"),
    "density_class": (
        "",
        "grille de densité (DEGURBA) : city, town, rural",
        "DEGURBA density class: city, town, rural",
    ),
    "size_class": ("", "taille de commune (population INSEE)", "commune size class"),
    "origin_code": (
        "",
        "territoire de résidence le mois de référence",
        "territory of the baseline home",
    ),
    "destination_code": ("", "territoire de résidence ce mois", "territory of this month's home"),
    "residents_baseline": (
        "usagers",
        "résidents le mois de référence",
        "residents in the baseline month",
    ),
    "residents_baseline_est": (
        "habitants",
        "résidents du mois de référence redressés (facteur du département)",
        "baseline residents expanded (the département's factor)",
    ),
    "residents_change": (
        "usagers",
        "résidents − résidents du mois de référence",
        "residents − baseline residents",
    ),
    "residents_change_pct": ("%", "évolution relative", "relative change"),
    "share_pct": ("%", "part des résidents de France", "share of France's residents"),
    "share_baseline_pct": ("%", "part le mois de référence", "share in the baseline month"),
    "share_change_pp": ("points", "évolution de la part", "change of the share"),
    "movers_in": ("usagers", "arrivés d'un autre territoire", "moved in from another territory"),
    "movers_out": ("usagers", "partis vers un autre territoire", "moved out to another territory"),
    "net_shift": ("usagers", "arrivées − départs", "moved in − moved out"),
    "calibration_month": (
        "AAAA-MM",
        "mois dont les résidents calibrent le facteur",
        "month whose residents calibrate the factor",
    ),
    "reference_residents": (
        "habitants",
        "population INSEE du département",
        "INSEE population of the département",
    ),
    "network_coverage": (
        "part",
        "part de la population INSEE vivant sous la couverture du réseau (0 à 1)",
        "share of the INSEE population living under the network's coverage (0 to 1)",
    ),
    "factor": (
        "habitants / usager",
        "facteur de redressement (vide : trop peu de résidents détectés)",
        "expansion factor (empty: too few residents detected)",
    ),
    "status": (
        "",
        "calibrated, too_few_residents ou low_network_coverage",
        "calibrated, too_few_residents or low_network_coverage",
    ),
    "rank_gain": ("rang", "rang parmi les plus fortes hausses", "rank among the largest gains"),
    "rank_loss": ("rang", "rang parmi les plus fortes baisses", "rank among the largest losses"),
}

INTRO = {
    "fr": """# Exports — {month}

Tables publiées par mobiterra pour {month}, chacune en trois formats :

- `TABLE.csv` — tableur ; UTF-8 avec BOM, séparateur virgule, point décimal, une ligne par
  ligne publiée ; le centre des hexagones est ajouté (`lat`, `lon`).
- `TABLE.geojson` — toutes les lignes sauf les lignes horaires (`period` = `hour`, trop
  volumineuses : elles sont dans le CSV et le GeoPackage), hexagones en polygones, flux en
  lignes droites (géométrie vide quand l'origine et la destination sont la même zone), WGS84.
- `TABLE.gpkg` — GeoPackage pour QGIS, une couche par résolution H3 (`TABLE_r4` …) — les
  hexagones de résolutions différentes se recouvrent — ou, pour `diagnostics`, par unité
  territoriale (flux à part ; classes sans géométrie). Dans les tables par période
  (`present_population`, `od_trips`), chaque couche `TABLE_rN` est une vue qui joint
  `TABLE_rN_values` (les valeurs, sans géométrie) à `TABLE_rN_places` (chaque hexagone ou
  flux une seule fois) : le fichier reste petit ; ouvrez `TABLE_rN`.

## Secret statistique

{rule}

Les évolutions (`residents_change`, `net_shift`) sont des différences de deux valeurs publiées.
Les comptes sont des usagers d'un opérateur (abonnés), pas des habitants, sauf les colonnes
`*_est` redressées. {residents_def}
""",
    "en": """# Exports — {month}

Tables published by mobiterra for {month}, each in three formats:

- `TABLE.csv` — spreadsheet; UTF-8 with BOM, comma separator, decimal point, one line per
  published row; the cell centre is added (`lat`, `lon`).
- `TABLE.geojson` — every row but the hourly ones (`period` = `hour`, too big: they are in the
  CSV and the GeoPackage), hexagons as polygons, flows as straight lines (no geometry when
  origin and destination are the same area), WGS84.
- `TABLE.gpkg` — GeoPackage for QGIS, one layer per H3 resolution (`TABLE_r4` …) — hexagons of
  different resolutions overlap — or, for `diagnostics`, per territorial unit (flows apart;
  classes without geometry). In the tables by period (`present_population`, `od_trips`), each
  layer `TABLE_rN` is a view joining `TABLE_rN_values` (the values, no geometry) to
  `TABLE_rN_places` (each hexagon or flow once): the file stays small; open `TABLE_rN`.

## Suppression

{rule}

Changes (`residents_change`, `net_shift`) are differences of two published values. Counts are
users of one operator (subscribers), not inhabitants, except the expanded `*_est` columns.
{residents_def}
""",
}

# Where a column means something else in one table (the diagnostics' origin_code is a
# territory of residence; od_departements' is a trip's origin).
TABLE_COLUMNS: dict[str, dict[str, tuple[str, str, str]]] = {
    "diagnostics": {
        "residents_est": ("habitants", "résidents × facteur du département (table expansion), "
                          "arrondi ; vide pour les classes",
                          "residents × the département's factor (expansion table), rounded; "
                          "empty for classes"),
    },  # fmt: skip
    "od_departements": {
        "origin_code": ("", "département d'origine du trajet (code INSEE)",
                        "département the trip starts in (INSEE code)"),
        "origin_name": ("", "nom du département d'origine", "name of the origin département"),
        "destination_code": ("", "département d'arrivée du trajet (code INSEE)",
                             "département the trip ends in (INSEE code)"),
        "destination_name": ("", "nom du département d'arrivée",
                             "name of the destination département"),
        "trips": ("trajets", "trajets partis ce jour-là (heure locale)",
                  "trips that left on that local day"),
        "users": ("usagers", "usagers distincts ayant fait ces trajets",
                  "distinct users who made those trips"),
    },
}  # fmt: skip

TABLE_TITLES = {
    "residents": ("Résidents par hexagone", "Residents per hexagon"),
    "residence_shift": (
        "Déménagements (résidence du mois de référence → de ce mois)",
        "Residence shift (baseline-month home → this month's home)",
    ),
    "present_population": (
        "Population présente par hexagone et période",
        "Present population per hexagon and period",
    ),
    "od_trips": ("Trajets origine-destination par période", "Origin-destination trips per period"),
    "od_home_work": (
        "Domicile → lieu de travail (période month)",
        "Home -> daytime anchor (work), period month",
    ),
    "od_departements": (
        "Trajets quotidiens entre départements",
        "Daily trips between départements",
    ),
    "diagnostics": ("Diagnostics territoriaux", "Territorial diagnostics"),
    "expansion": (
        "Facteurs de redressement par département",
        "Expansion factors per département",
    ),
}


def readme_text(tables: dict[str, pd.DataFrame], k: int, lang: str, month: str = "") -> str:
    """The README: formats, the suppression rule, then each table's columns and units."""
    t = TEXT[lang]
    fr = lang == "fr"
    parts = [
        INTRO[lang].format(
            month=month, rule=t["suppression_rule"].format(k=k), residents_def=t["residents_def"]
        )
    ]
    for name, df in tables.items():
        title = TABLE_TITLES.get(name, (name, name))[0 if fr else 1]
        rows = f"{len(df):,}".replace(",", "\u202f" if fr else ",")
        parts.append(f"\n## `{name}` — {title}\n\n{rows} {'lignes' if fr else 'rows'}.\n")
        head = "| colonne | unité | signification |" if fr else "| column | unit | meaning |"
        parts += [head, "|---|---|---|"]
        extra = [
            c
            for c in (
                "lat",
                "lon",
                "origin_lat",
                "origin_lon",
                "destination_lat",
                "destination_lon",
            )
            if _has_place(df, c)
        ]
        for col in [*df.columns, *extra]:
            unit, fr_text, en_text = TABLE_COLUMNS.get(name, {}).get(col) or COLUMNS.get(
                col, ("", "", "")
            )
            parts.append(f"| `{col}` | {unit} | {fr_text if fr else en_text} |")
    return "\n".join(parts) + "\n"


def _has_place(df: pd.DataFrame, col: str) -> bool:
    if col in ("lat", "lon"):
        return "h3_cell" in df
    return col.split("_")[0] + "_cell" in df
