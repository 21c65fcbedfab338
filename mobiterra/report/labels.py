"""Words of the page, maps and export README, in French (default) and English."""

from __future__ import annotations

MONTHS = {
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}

TEXT = {
    "fr": {
        "title": "Mobilité et résidence — {month}",
        "subtitle_baseline": "comparé à {baseline}",
        "generated": "Produit le {date} par mobiterra {version}",
        "headline": "Chiffres clés",
        "residents": "Résidents détectés",
        "residents_note": "abonnés dont la résidence habituelle est connue",
        "change": "Évolution depuis {baseline}",
        "paris_out": "Départs de Paris vers un autre département",
        "paris_out_note": "usagers, flux publiés (≥ k)",
        "small_towns": "Part des résidents en petites villes et rural",
        "small_towns_note": "évolution en points de pourcentage",
        "small_towns_net": "solde des déménagements {net}",
        "top_loss": "Plus forte baisse",
        "top_gain": "Plus forte hausse",
        "maps": "Cartes",
        "maps_departements": "Par département",
        "hexagon_in": "hexagone H3 de résolution {res}, centre : {place}",
        "svg": "SVG (vectoriel)",
        "png": "PNG",
        "territories": "Départements",
        "departement": "Département",
        "residents_baseline": "Résidents {baseline}",
        "residents_month": "Résidents {month}",
        "population_est": "Population estimée {month}",
        "change_people": "Évolution",
        "change_pct": "Évolution (%)",
        "net_shift": "Solde des déménagements",
        "downloads": "Téléchargements",
        "downloads_intro": "Chaque table publiée en CSV (tableur), GeoJSON et GeoPackage (QGIS). "
        "Le fichier README.md décrit les colonnes, les unités et la règle de secret.",
        "file": "Fichier",
        "format": "Format",
        "size": "Taille",
        "table": "Table",
        "quality": "Qualité des données",
        "rows_read": "Lignes lues",
        "rows_accepted": "Lignes retenues",
        "rows_out_of_period": "Hors période",
        "rows_duplicate": "Doublons",
        "quarantined": "Mises en quarantaine",
        "reason": "Motif",
        "none": "aucune",
        "invariant": "Bilan des lignes équilibré",
        "yes": "oui",
        "no": "non",
        "users": "Abonnés observés",
        "users_with_home": "dont avec résidence habituelle",
        "published": "Lignes publiées",
        "suppressed_primary": "Supprimées (< k)",
        "suppressed_secondary": "Supprimées (secondaire)",
        "suppressed": "Secret statistique par table",
        "run": "Exécution",
        "method": "Méthode et secret statistique",
        "no_flow": "Aucun flux de déménagement entre deux zones n'atteint k = {k} usagers "
        "à l'échelle des hexagones ; aucune carte de flux n'est produite.",
        "no_baseline_month": "Pas de mois de référence : les cartes montrent les résidents du "
        "mois, pas leur évolution.",
        "no_baseline": "Le dossier du mois de référence n'est pas à côté de ce mois : la carte "
        "des hexagones montre les résidents du mois ; l'évolution est donnée par département "
        "et par commune (table diagnostics) quand elle est publiée.",
        "map_residents": "Résidents détectés, {month}",
        "map_residents_dep": "{name} ({code}) — résidents détectés, {month}",
        "legend_residents": "Résidents (usagers)",
        "hex_note_one": "Hexagones H3 de résolution {res} (≈ {area} km²) publiés.",
        "suppression_rule": "Secret statistique : k = {k}. Aucune valeur publiée ne repose sur "
        "moins de {k} usagers distincts (comptés avant tout redressement) ; les valeurs sous ce "
        "seuil, et celles qui permettraient de les retrouver par différence (suppression "
        "secondaire), ne sont pas publiées : elles sont absentes des cartes et des fichiers, "
        "jamais remplacées par une estimation.",
        "residents_def": "Résident : abonné dont le lieu le plus fréquenté la nuit (22 h–6 h) "
        "pendant le mois est dans la zone.",
        "map_change": "Évolution des résidents détectés, {month} vs {baseline}",
        "map_change_dep": "{name} ({code}) — évolution des résidents, {month} vs {baseline}",
        "map_change_deps": "Évolution des résidents par département, {month} vs {baseline}",
        "map_shift_net": "Solde des déménagements publiés, {month}",
        "map_shift_flows": "Principaux déménagements (résidence {baseline} → {month})",
        "map_od_flows": "Principaux déplacements entre hexagones, {month}",
        "map_home_work": "Principaux trajets domicile → travail, {month}",
        "legend_change": "Évolution des résidents",
        "legend_net": "Solde (usagers)",
        "legend_users": "Usagers",
        "legend_trips": "Trajets",
        "hex_note": "Hexagones H3 de résolution {res} (≈ {area} km²), publiés les deux mois.",
        "communes_note": "Communes dont les résidents sont publiés les deux mois (table "
        "diagnostics) ; en gris, communes sans évolution publiée.",
        "deps_note": "Départements dont les résidents sont publiés les deux mois (table "
        "diagnostics).",
        "flows_dep_note": "Flux entre départements (table diagnostics) ; flèche de l'ancien "
        "vers le nouveau département de résidence.",
        "flows_hex_note": "Flux entre hexagones H3 de résolution {res}, la plus grossière "
        "ayant des flux publiés.",
        "od_note": "Flux entre hexagones H3 de résolution {res} (≈ {area} km²), celle où les "
        "flux publiés entre deux hexagones sont les plus forts{period_note}.",
        "od_period_sum": " ; trajets sommés sur les périodes « {period} » publiées",
        "lang_other": "English",
    },
    "en": {
        "title": "Mobility and residence — {month}",
        "subtitle_baseline": "compared with {baseline}",
        "generated": "Produced on {date} by mobiterra {version}",
        "headline": "Headline figures",
        "residents": "Residents detected",
        "residents_note": "subscribers with a known usual residence",
        "change": "Change since {baseline}",
        "paris_out": "Moves out of Paris to another département",
        "paris_out_note": "users, published flows (≥ k)",
        "small_towns": "Share of residents in small towns and rural areas",
        "small_towns_note": "change in percentage points",
        "small_towns_net": "net moves {net}",
        "top_loss": "Largest loss",
        "top_gain": "Largest gain",
        "maps": "Maps",
        "maps_departements": "By département",
        "hexagon_in": "H3 hexagon of resolution {res}, centre in {place}",
        "svg": "SVG (vector)",
        "png": "PNG",
        "territories": "Départements",
        "departement": "Département",
        "residents_baseline": "Residents {baseline}",
        "residents_month": "Residents {month}",
        "population_est": "Estimated population {month}",
        "change_people": "Change",
        "change_pct": "Change (%)",
        "net_shift": "Net moves",
        "downloads": "Downloads",
        "downloads_intro": "Every published table as CSV (spreadsheet), GeoJSON and GeoPackage "
        "(QGIS). The README gives the columns, units and the suppression rule.",
        "file": "File",
        "format": "Format",
        "size": "Size",
        "table": "Table",
        "quality": "Data quality",
        "rows_read": "Rows read",
        "rows_accepted": "Rows accepted",
        "rows_out_of_period": "Out of period",
        "rows_duplicate": "Duplicates",
        "quarantined": "Quarantined",
        "reason": "Reason",
        "none": "none",
        "invariant": "Row balance holds",
        "yes": "yes",
        "no": "no",
        "users": "Subscribers seen",
        "users_with_home": "with a usual residence",
        "published": "Rows published",
        "suppressed_primary": "Suppressed (< k)",
        "suppressed_secondary": "Suppressed (secondary)",
        "suppressed": "Suppression per table",
        "run": "Run",
        "method": "Method and suppression",
        "no_flow": "No residence move between two areas reaches k = {k} users at the hexagon "
        "level; no flow map is produced.",
        "no_baseline_month": "No baseline month: the maps show the month's residents, not "
        "their change.",
        "no_baseline": "The baseline month's folder is not beside this month: the hexagon map "
        "shows the month's residents; the change is given by département and commune "
        "(diagnostics table) where published.",
        "map_residents": "Residents detected, {month}",
        "map_residents_dep": "{name} ({code}) — residents detected, {month}",
        "legend_residents": "Residents (users)",
        "hex_note_one": "Published H3 hexagons of resolution {res} (≈ {area} km²).",
        "suppression_rule": "Suppression: k = {k}. No published value rests on fewer than {k} "
        "distinct users (counted before any expansion); values below that, and values that "
        "would let them be recovered by subtraction (secondary suppression), are not published: "
        "they are absent from the maps and files, never replaced by an estimate.",
        "residents_def": "Resident: a subscriber whose most frequent night-time place "
        "(22:00–06:00) over the month is in the area.",
        "map_change": "Change in residents detected, {month} vs {baseline}",
        "map_change_dep": "{name} ({code}) — change in residents, {month} vs {baseline}",
        "map_change_deps": "Change in residents by département, {month} vs {baseline}",
        "map_shift_net": "Net published moves, {month}",
        "map_shift_flows": "Largest residence moves ({baseline} home → {month} home)",
        "map_od_flows": "Largest trip flows between hexagons, {month}",
        "map_home_work": "Largest home → work flows, {month}",
        "legend_change": "Change in residents",
        "legend_net": "Net (users)",
        "legend_users": "Users",
        "legend_trips": "Trips",
        "hex_note": "H3 hexagons of resolution {res} (≈ {area} km²) published in both months.",
        "communes_note": "Communes whose residents are published in both months (diagnostics "
        "table); in grey, communes without a published change.",
        "deps_note": "Départements whose residents are published in both months (diagnostics "
        "table).",
        "flows_dep_note": "Flows between départements (diagnostics table); arrow from the "
        "former to the new département of residence.",
        "flows_hex_note": "Flows between H3 hexagons of resolution {res}, the coarsest with "
        "published flows.",
        "od_note": "Flows between H3 hexagons of resolution {res} (≈ {area} km²), where the "
        "published flows between two hexagons are largest{period_note}.",
        "od_period_sum": "; trips summed over the published '{period}' periods",
        "lang_other": "Français",
    },
}


def month_label(month: str | None, lang: str) -> str:
    """The month in words: 2020-04 -> avril 2020 / April 2020."""
    if not month:
        return ""
    year, m = month.split("-")
    return f"{MONTHS[lang][int(m) - 1]} {year}"


def number(value: float | int | None, lang: str, *, signed: bool = False, digits: int = 0) -> str:
    """Thousands separated the local way (narrow no-break space in French)."""
    if value is None:
        return "—"
    text = f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text.replace("-", "−")
