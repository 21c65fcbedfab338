"""Schemas of every input and output dataset, declared once (nullability included)."""

from pyspark.sql import types as T

from mobiterra import columns as C

# Inputs: the columns a file must have; extra columns are ignored.
EVENTS_REQUIRED = (C.USER_ID, C.TIMESTAMP, C.CELL_ID)
CELLS_REQUIRED = (C.CELL_ID, C.LAT, C.LON)
CELLS_OPTIONAL = (C.AZIMUTH_DEG, C.RANGE_M, C.VALID_FROM, C.VALID_TO)

EVENTS = T.StructType(
    [
        T.StructField(C.USER_ID, T.StringType(), True),
        T.StructField(C.TIMESTAMP, T.TimestampType(), True),
        T.StructField(C.CELL_ID, T.StringType(), True),
    ]
)

CELLS = T.StructType(
    [
        T.StructField(C.CELL_ID, T.StringType(), True),
        T.StructField(C.LAT, T.DoubleType(), True),
        T.StructField(C.LON, T.DoubleType(), True),
        T.StructField(C.AZIMUTH_DEG, T.DoubleType(), True),
        T.StructField(C.RANGE_M, T.DoubleType(), True),
        T.StructField(C.VALID_FROM, T.DateType(), True),
        T.StructField(C.VALID_TO, T.DateType(), True),
    ]
)

# Internal: events that passed ingest, keyed by pseudonym.
ACCEPTED_EVENTS = T.StructType(
    [
        T.StructField(C.USER_KEY, T.StringType(), False),
        T.StructField(C.TIMESTAMP, T.TimestampType(), False),
        T.StructField(C.CELL_ID, T.StringType(), False),
    ]
)

# Internal: antenna cell -> H3 cell at the finest resolution, with a coverage weight.
COVERAGE = T.StructType(
    [
        T.StructField(C.CELL_ID, T.StringType(), False),
        T.StructField(C.VALID_FROM, T.DateType(), True),
        T.StructField(C.VALID_TO, T.DateType(), True),
        T.StructField(C.H3_ID, T.LongType(), False),
        T.StructField(C.WEIGHT, T.DoubleType(), False),
    ]
)

# Internal: one usual residence per user and month.
HOMES = T.StructType(
    [
        T.StructField(C.USER_KEY, T.StringType(), False),
        T.StructField(C.HOME_H3, T.LongType(), False),
        T.StructField(C.NIGHTS, T.LongType(), False),
    ]
)

# Internal: stays (continuous time segmentation), one row per stay.
STAYS = T.StructType(
    [
        T.StructField(C.USER_KEY, T.StringType(), False),
        T.StructField(C.STAY_H3, T.LongType(), False),
        T.StructField(C.STAY_START, T.TimestampType(), False),
        T.StructField(C.STAY_END, T.TimestampType(), False),
    ]
)

# Internal: trips between two consecutive stays at different places.
TRIPS = T.StructType(
    [
        T.StructField(C.USER_KEY, T.StringType(), False),
        T.StructField(C.ORIGIN_H3, T.LongType(), False),
        T.StructField(C.DESTINATION_H3, T.LongType(), False),
        T.StructField(C.DEPARTURE, T.TimestampType(), False),
        T.StructField(C.ARRIVAL, T.TimestampType(), False),
    ]
)

# Internal: one daytime anchor (work) per user and month.
ANCHORS = T.StructType(
    [
        T.StructField(C.USER_KEY, T.StringType(), False),
        T.StructField(C.ANCHOR_H3, T.LongType(), False),
        T.StructField(C.DAYS, T.LongType(), False),
    ]
)

# Quarantine: rejected input rows with the reason. The user id is deliberately left out
# (DESIGN.md "No identifiers out"); the raw input stays the system of record.
QUARANTINE = T.StructType(
    [
        T.StructField(C.REASON, T.StringType(), False),
        T.StructField(C.SOURCE_FILE, T.StringType(), True),
        T.StructField(C.TIMESTAMP_RAW, T.StringType(), True),
        T.StructField(C.CELL_ID, T.StringType(), True),
    ]
)

# Published tables.
RESIDENTS = T.StructType(
    [
        T.StructField(C.RESOLUTION, T.IntegerType(), False),
        T.StructField(C.H3_CELL, T.StringType(), False),
        T.StructField(C.RESIDENTS, T.LongType(), False),
        T.StructField(C.RESIDENTS_EST, T.LongType(), True),
    ]
)

RESIDENCE_SHIFT = T.StructType(
    [
        T.StructField(C.RESOLUTION, T.IntegerType(), False),
        T.StructField(C.ORIGIN_CELL, T.StringType(), False),
        T.StructField(C.DESTINATION_CELL, T.StringType(), False),
        T.StructField(C.USERS, T.LongType(), False),
    ]
)

PRESENT_POPULATION = T.StructType(
    [
        T.StructField(C.RESOLUTION, T.IntegerType(), False),
        T.StructField(C.H3_CELL, T.StringType(), False),
        T.StructField(C.PERIOD_START, T.TimestampType(), False),
        T.StructField(C.PERIOD, T.StringType(), False),
        T.StructField(C.USERS, T.LongType(), False),
        T.StructField(C.USERS_EST, T.LongType(), True),
    ]
)

OD_TRIPS = T.StructType(
    [
        T.StructField(C.RESOLUTION, T.IntegerType(), False),
        T.StructField(C.ORIGIN_CELL, T.StringType(), False),
        T.StructField(C.DESTINATION_CELL, T.StringType(), False),
        T.StructField(C.PERIOD_START, T.TimestampType(), False),
        T.StructField(C.PERIOD, T.StringType(), False),
        T.StructField(C.TRIPS, T.LongType(), False),
        T.StructField(C.USERS, T.LongType(), False),
    ]
)

# Daily trips between départements (jobs.od_departements; its own gate, no H3 column).
OD_DEPARTEMENTS = T.StructType(
    [
        T.StructField(C.ORIGIN_CODE, T.StringType(), False),
        T.StructField(C.ORIGIN_NAME, T.StringType(), True),
        T.StructField(C.DESTINATION_CODE, T.StringType(), False),
        T.StructField(C.DESTINATION_NAME, T.StringType(), True),
        T.StructField(C.PERIOD_START, T.TimestampType(), False),
        T.StructField(C.PERIOD, T.StringType(), False),
        T.StructField(C.TRIPS, T.LongType(), False),
        T.StructField(C.USERS, T.LongType(), False),
    ]
)

# Expansion factors per département (no subscriber count: a factor is published only
# where it rests on at least max(min_residents, k) detected residents).
EXPANSION = T.StructType(
    [
        T.StructField(C.DEPARTEMENT_CODE, T.StringType(), False),
        T.StructField(C.CALIBRATION_MONTH, T.StringType(), False),
        T.StructField(C.REFERENCE_RESIDENTS, T.LongType(), False),
        T.StructField(C.NETWORK_COVERAGE, T.DoubleType(), False),
        T.StructField(C.FACTOR, T.DoubleType(), True),
        T.StructField(C.STATUS, T.StringType(), False),
    ]
)

PUBLISHED = {
    "residents": RESIDENTS,
    "residence_shift": RESIDENCE_SHIFT,
    "present_population": PRESENT_POPULATION,
    "od_trips": OD_TRIPS,
    "od_home_work": OD_TRIPS,
}
