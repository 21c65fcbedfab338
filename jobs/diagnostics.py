"""Territorial diagnostics: residents, change and residence shift by commune, EPCI,
département, density class and commune size class — the ``diagnostics/`` table.

Every number rests on the users' usual residences (jobs.residence) of the month and of the
baseline month; a home H3 cell belongs to one commune (mobiterra.degurba.commune_of_cells),
so every territory is a set of communes. Nothing leaves without the territorial gate
(jobs.territorial_gate; rules in docs/privacy.md, "Territorial diagnostics").

Schema of ``OUT/MONTH/diagnostics/`` (one Parquet dataset; one row per territory or flow;
a null count is suppressed by the gate, or has no baseline):

column (type): meaning

- ``month`` (string): the month, YYYY-MM
- ``baseline_month`` (string): the baseline month; null without one
- ``kind`` (string): ``territory`` (a territory's residents) or ``flow`` (a residence-shift
  flow between two territories of one unit)
- ``unit`` (string): ``france``, ``departement``, ``epci``, ``commune``, ``density_class``,
  ``size_class``, ``small_towns``
- ``code`` (string): INSEE commune / département code, EPCI SIREN, class code; null on flows
- ``name`` (string): French label (flows: ``origin → destination``)
- ``departement_code`` (string): département of a commune (of an EPCI: the one holding most
  of its population); null for classes
- ``density_class`` (string): commune rows: ``city`` / ``town`` / ``rural`` (DEGURBA)
- ``size_class`` (string): commune rows: ``lt_2k``, ``2k_10k``, ``10k_50k``, ``50k_200k``,
  ``ge_200k`` (INSEE population; the whole city for an arrondissement)
- ``origin_code`` / ``destination_code`` (string): flow rows: territory of the baseline
  home / of this month's home (codes of the row's ``unit``)
- ``residents`` (long): distinct users whose usual residence this month is in the territory
- ``residents_baseline`` (long): the same in the baseline month
- ``residents_change`` (long): ``residents - residents_baseline`` (both published)
- ``residents_change_pct`` (double): ``100 * residents_change / residents_baseline``
- ``share_pct`` / ``share_baseline_pct`` (double): class rows: ``100 * residents`` / residents
  of ``france``, this month / baseline month
- ``share_change_pp`` (double): ``share_pct - share_baseline_pct``, percentage points
- ``movers_in`` (long): users with a home in both months, in another territory of the same
  unit before and here now; ``movers_out``: here before, elsewhere now
- ``net_shift`` (long): ``movers_in - movers_out`` (both published)
- ``users`` (long): flow rows: users with their baseline home in the origin and their home
  this month in the destination
- ``rank_gain`` / ``rank_loss`` (int): commune rows: 1 = largest gain / loss of residents
  among communes with both months published (top ``diagnostics.top_communes``)

Units: ``france`` (code ``FR``, the whole territory seen), ``departement``, ``epci`` and
``commune`` (Paris, Lyon and Marseille as their arrondissements), ``density_class``
(communes by DEGURBA class), ``size_class`` (communes by INSEE population), and
``small_towns`` (code ``small_towns_rural``: the communes of the "toward small towns"
indicator, mobiterra.degurba.is_small_town_or_rural). ``movers_in`` / ``movers_out`` /
``net_shift`` are given for départements, density classes and the small-towns group;
flows (``kind = flow``) between départements and between density classes.

The "toward small towns" indicator is the ``small_towns`` row: ``share_change_pp`` (the
change of the share of residents living in small towns and rural communes) and its
``net_shift`` (movers in minus movers out). Differences (``*_change``, ``net_shift``) are
differences of two published counts, so they may be small; every count is 0 or >= k.
"""

from __future__ import annotations

from pyspark.sql import types as T

# --- the published schema (declared once; the gate selects exactly these columns) ---
MONTH = "month"
BASELINE_MONTH = "baseline_month"
KIND = "kind"
UNIT = "unit"
CODE = "code"
NAME = "name"
DEPARTEMENT_CODE = "departement_code"
DENSITY_CLASS = "density_class"
SIZE_CLASS = "size_class"
ORIGIN_CODE = "origin_code"
DESTINATION_CODE = "destination_code"
RESIDENTS = "residents"
RESIDENTS_BASELINE = "residents_baseline"
RESIDENTS_CHANGE = "residents_change"
RESIDENTS_CHANGE_PCT = "residents_change_pct"
SHARE_PCT = "share_pct"
SHARE_BASELINE_PCT = "share_baseline_pct"
SHARE_CHANGE_PP = "share_change_pp"
MOVERS_IN = "movers_in"
MOVERS_OUT = "movers_out"
NET_SHIFT = "net_shift"
USERS = "users"
RANK_GAIN = "rank_gain"
RANK_LOSS = "rank_loss"

KIND_TERRITORY = "territory"
KIND_FLOW = "flow"
UNITS = ("france", "departement", "epci", "commune", "density_class", "size_class", "small_towns")

DIAGNOSTICS = T.StructType(
    [
        T.StructField(MONTH, T.StringType(), False),
        T.StructField(BASELINE_MONTH, T.StringType(), True),
        T.StructField(KIND, T.StringType(), False),
        T.StructField(UNIT, T.StringType(), False),
        T.StructField(CODE, T.StringType(), True),
        T.StructField(NAME, T.StringType(), True),
        T.StructField(DEPARTEMENT_CODE, T.StringType(), True),
        T.StructField(DENSITY_CLASS, T.StringType(), True),
        T.StructField(SIZE_CLASS, T.StringType(), True),
        T.StructField(ORIGIN_CODE, T.StringType(), True),
        T.StructField(DESTINATION_CODE, T.StringType(), True),
        T.StructField(RESIDENTS, T.LongType(), True),
        T.StructField(RESIDENTS_BASELINE, T.LongType(), True),
        T.StructField(RESIDENTS_CHANGE, T.LongType(), True),
        T.StructField(RESIDENTS_CHANGE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_BASELINE_PCT, T.DoubleType(), True),
        T.StructField(SHARE_CHANGE_PP, T.DoubleType(), True),
        T.StructField(MOVERS_IN, T.LongType(), True),
        T.StructField(MOVERS_OUT, T.LongType(), True),
        T.StructField(NET_SHIFT, T.LongType(), True),
        T.StructField(USERS, T.LongType(), True),
        T.StructField(RANK_GAIN, T.IntegerType(), True),
        T.StructField(RANK_LOSS, T.IntegerType(), True),
    ]
)
COLUMNS = [f.name for f in DIAGNOSTICS.fields]
