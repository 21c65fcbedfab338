"""Column names: the one home for every name in the input and output contracts."""

# --- inputs (DESIGN.md "Inputs") ---
USER_ID = "user_id"
TIMESTAMP = "timestamp"
CELL_ID = "cell_id"
LAT = "lat"
LON = "lon"
AZIMUTH_DEG = "azimuth_deg"
RANGE_M = "range_m"
VALID_FROM = "valid_from"
VALID_TO = "valid_to"
POPULATION = "population"

# --- internal (inside jobs; never published) ---
USER_KEY = "user_key"  # pseudonymous key of a user inside the jobs (see jobs.pseudonym)
H3_ID = "h3_id"  # H3 cell as int64 at the finest resolution
WEIGHT = "weight"  # share of an antenna cell's coverage falling in an H3 cell
NIGHT = "night"  # local date of the evening that starts a night
NIGHTS = "nights"
NIGHT_EVENTS = "night_events"
HOME_H3 = "home_h3"
BASELINE_HOME_H3 = "baseline_home_h3"
SOURCE_FILE = "source_file"
TIMESTAMP_RAW = "timestamp_raw"
REASON = "reason"
EVENT_DATE = "event_date"
# stays and trips (jobs.stays)
STAY_H3 = "stay_h3"  # main H3 cell of a stay, finest resolution
STAY_START = "stay_start"  # first event of the stay (UTC)
STAY_END = "stay_end"  # last event of the stay (UTC)
ORIGIN_H3 = "origin_h3"
DESTINATION_H3 = "destination_h3"
DEPARTURE = "departure"  # end of the origin stay (UTC)
ARRIVAL = "arrival"  # start of the destination stay (UTC)
HOUR_START = "hour_start"  # UTC start of an hour slot a stay overlaps
# daytime anchor (jobs.od)
DAY = "day"  # local date of a daytime event
DAYS = "days"
DAY_EVENTS = "day_events"
ANCHOR_H3 = "anchor_h3"

# --- outputs (DESIGN.md "Outputs") ---
RESOLUTION = "resolution"
H3_CELL = "h3_cell"
RESIDENTS = "residents"
RESIDENTS_EST = "residents_est"
ORIGIN_CELL = "origin_cell"
DESTINATION_CELL = "destination_cell"
USERS = "users"
USERS_EST = "users_est"
TRIPS = "trips"
PERIOD_START = "period_start"
PERIOD = "period"
# daily trips between départements (jobs.od_departements)
ORIGIN_CODE = "origin_code"  # INSEE code of the origin's département
DESTINATION_CODE = "destination_code"
ORIGIN_NAME = "origin_name"
DESTINATION_NAME = "destination_name"
# expansion factors (jobs.expansion)
DEPARTEMENT_CODE = "departement_code"
CALIBRATION_MONTH = "calibration_month"  # month whose residents calibrate the factors
REFERENCE_RESIDENTS = "reference_residents"  # INSEE population of the territory
NETWORK_COVERAGE = "network_coverage"
FACTOR = "factor"  # people per detected resident subscriber
STATUS = "status"
