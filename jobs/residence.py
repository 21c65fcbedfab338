"""Usual residence: per user, the place seen on the most distinct nights of the month, and
one H3 cell (finest resolution) drawn from that place's coverage."""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.periods import local_time, wall_date, wall_hour
from mobiterra import columns as C
from mobiterra.config import ResidenceParams
from mobiterra.h3cols import h3_parent

LOCAL_TS = "local_ts"


def with_local_time(
    events_df: DataFrame, timezone: str, first: date | None = None, last: date | None = None
) -> DataFrame:
    """``local_ts``: the UTC timestamp as wall-clock time in ``timezone`` (DST-aware).

    With the local dates ``first`` .. ``last`` the events are about (a month), by the
    offsets in force then (jobs.periods.local_time: the same values, cheaper per row)."""
    ts = F.col(C.TIMESTAMP)
    if first is None or last is None:
        return events_df.withColumn(LOCAL_TS, F.from_utc_timestamp(ts, timezone))
    return events_df.withColumn(LOCAL_TS, local_time(ts, timezone, first, last))


def with_coverage(events_df: DataFrame, coverage_df: DataFrame) -> DataFrame:
    """Attach the H3 cells (finest resolution) and weights of each event's antenna cell.

    The coverage table is small and broadcast; validity is checked on the local day.
    """
    day = wall_date(F.col(LOCAL_TS))
    known = (C.CELL_ID, C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT)
    extra = [c for c in coverage_df.columns if c not in known]  # e.g. stays' antenna site
    cov_df = coverage_df.select(
        F.col(C.CELL_ID).alias("_cid"), C.VALID_FROM, C.VALID_TO, C.H3_ID, C.WEIGHT, *extra
    )
    active = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col(C.VALID_FROM).isNull() | (day >= F.col(C.VALID_FROM)))
        & (F.col(C.VALID_TO).isNull() | (day <= F.col(C.VALID_TO)))
    )
    return events_df.join(F.broadcast(cov_df), on=active, how="inner").drop(
        "_cid", C.VALID_FROM, C.VALID_TO
    )


def is_night(local_ts: Column, params: ResidenceParams) -> Column:
    """Whether a local wall-clock timestamp falls in the night window."""
    hour = wall_hour(local_ts)
    if params.night_start_hour > params.night_end_hour:  # the window crosses midnight
        return (hour >= params.night_start_hour) | (hour < params.night_end_hour)
    return (hour >= params.night_start_hour) & (hour < params.night_end_hour)


def filter_night(
    events_df: DataFrame, params: ResidenceParams, first: date, last: date
) -> DataFrame:
    """Keep night-time events (local) and label each with its night.

    A night is labelled by the date of its evening: with a 22:00-06:00 window, 23:00 on
    the 3rd and 02:00 on the 4th both belong to night 3. Only nights first..last are kept.
    """
    at_night = is_night(F.col(LOCAL_TS), params)
    shift = params.night_end_hour if params.night_start_hour > params.night_end_hour else 0
    night = wall_date(F.col(LOCAL_TS), hours_back=shift)
    return (
        events_df.filter(at_night)
        .withColumn(C.NIGHT, night)
        .filter(F.col(C.NIGHT).between(F.lit(first), F.lit(last)))
    )


# Internal columns of the home choice.
PLACE_H3 = "_place_h3"
PLACE_EVENTS = "_place_events"
CELL_NIGHTS = "_cell_nights"
CELL_EVENTS = "_cell_events"
DRAW = "_draw"
_CELL_KEY = [C.CELL_ID, C.VALID_FROM, C.VALID_TO]


def cell_places(coverage_df: DataFrame) -> DataFrame:
    """(cell_id, valid_from, valid_to, _place_h3): each antenna cell's *place*, its main
    hexagon (highest weight, lowest id on ties), as jobs.stays.main_coverage (the stays
    add their same-mast rule, jobs.stays.main_cells; a home's nights need none: the
    place of most nights wins whatever the sector a few of them fell on).

    Under ``point`` coverage all cells of a site share their place (the site's hexagon), so
    a user seen on two sectors of one site counts their nights at one place.
    """
    rank = Window.partitionBy(*_CELL_KEY).orderBy(F.col(C.WEIGHT).desc(), F.col(C.H3_ID).asc())
    return (
        coverage_df.withColumn("_rank", F.row_number().over(rank))
        .filter(F.col("_rank") == 1)
        .select(*_CELL_KEY, F.col(C.H3_ID).alias(PLACE_H3))
    )


def with_cell_place(events_df: DataFrame, coverage_df: DataFrame) -> DataFrame:
    """Attach the coverage key (validity piece) and place of each event's antenna cell.

    One row per event (the coverage table's hexagons are not joined in); events on cells
    unknown to or inactive in the coverage table are dropped. Needs ``local_ts``.
    """
    day = wall_date(F.col(LOCAL_TS))
    places_df = cell_places(coverage_df).withColumnRenamed(C.CELL_ID, "_cid")
    active = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & (F.col(C.VALID_FROM).isNull() | (day >= F.col(C.VALID_FROM)))
        & (F.col(C.VALID_TO).isNull() | (day <= F.col(C.VALID_TO)))
    )
    return events_df.join(F.broadcast(places_df), on=active, how="inner").drop("_cid")


def count_nights(night_events_df: DataFrame, first: date) -> DataFrame:
    """Per (user, place, antenna cell piece): the place's and the cell's nights and events.

    A place's nights are the distinct nights on any of its cells; the cell's own nights and
    events pick, inside the home place, the cell whose coverage the home is drawn from.
    Nights are bits of a mask (bit i = night ``first`` + i; a month's nights fit), so the
    union over a place's cells is a bitwise OR: one aggregation and a window of longs.
    """
    bit = F.datediff(F.col(C.NIGHT), F.lit(first))
    in_mask = F.when(bit.between(0, 62), bit).otherwise(
        F.raise_error(F.lit(f"count_nights: a night outside {first} + 0..62 days"))
    )
    place = Window.partitionBy(C.USER_KEY, PLACE_H3)
    cells_df = (
        night_events_df.withColumn("_bit", in_mask)
        .groupBy(C.USER_KEY, PLACE_H3, *_CELL_KEY)
        .agg(
            F.bit_or(F.expr("shiftleft(CAST(1 AS BIGINT), _bit)")).alias("_nights"),
            F.count(F.lit(1)).alias(CELL_EVENTS),
        )
        .withColumn(CELL_NIGHTS, F.bit_count("_nights").cast("long"))
    )
    return (
        cells_df.withColumn(C.NIGHTS, F.bit_count(F.bit_or("_nights").over(place)).cast("long"))
        .withColumn(PLACE_EVENTS, F.sum(CELL_EVENTS).over(place))
        .drop("_nights")
    )


def with_home_cell(night_counts_df: DataFrame, min_nights: int) -> DataFrame:
    """One home place per user, and the antenna cell within it the home is drawn from.

    Place: most nights, then most night events, then lowest place id. Cell within the
    place: most nights, then most events, then lowest cell id (then earliest piece).
    Users whose best place has fewer than ``min_nights`` nights have no usual residence.
    Output: user_key, cell_id, valid_from, valid_to, nights.
    """
    rank = Window.partitionBy(C.USER_KEY).orderBy(
        F.col(C.NIGHTS).desc(),
        F.col(PLACE_EVENTS).desc(),
        F.col(PLACE_H3).asc(),
        F.col(CELL_NIGHTS).desc(),
        F.col(CELL_EVENTS).desc(),
        F.col(C.CELL_ID).asc(),
        F.col(C.VALID_FROM).asc_nulls_first(),
    )
    return (
        night_counts_df.withColumn("_rank", F.row_number().over(rank))
        .filter((F.col("_rank") == 1) & (F.col(C.NIGHTS) >= min_nights))
        .select(C.USER_KEY, *_CELL_KEY, F.col(C.NIGHTS).cast("long"))
    )


def user_uniform(salt: str) -> Column:
    """A uniform number in [0, 1) from the user key: deterministic, so a user whose home
    cell does not change between months keeps the same hexagon (no spurious shifts)."""
    two53 = 2**53
    h = F.xxhash64(F.lit(salt), F.col(C.USER_KEY))
    return F.pmod(h, F.lit(two53)).cast("double") / F.lit(float(two53))


def with_cumulative_weights(coverage_df: DataFrame) -> DataFrame:
    """Coverage rows with [_lo, _hi): each hexagon's slice of [0, 1) within its cell piece.

    The last slice is open to 2.0 so that rounding in the running sum never loses a draw.
    """
    piece = Window.partitionBy(*_CELL_KEY)
    upto = piece.orderBy(C.H3_ID).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    last = F.row_number().over(piece.orderBy(F.col(C.H3_ID).desc())) == 1
    total = F.sum(C.WEIGHT).over(piece)
    hi = F.sum(C.WEIGHT).over(upto) / total
    return coverage_df.select(
        *_CELL_KEY,
        C.H3_ID,
        (hi - F.col(C.WEIGHT) / total).alias("_lo"),
        F.when(last, F.lit(2.0)).otherwise(hi).alias("_hi"),
    )


def with_drawn_hexagon(
    keyed_df: DataFrame, coverage_df: DataFrame, out: str, salt: str = "home"
) -> DataFrame:
    """Replace each row's antenna cell (cell_id, valid_from, valid_to) by ONE hexagon of its
    coverage, drawn with probability equal to the coverage weight (``out`` column, int64).

    With fractional weights (voronoi coverage) this spreads the users of a cell over its
    area in proportion to the weights, while each user still counts once, in one hexagon:
    counts of distinct users stay integers and sum over hexagons to the users of the cell.
    """
    cum_df = with_cumulative_weights(coverage_df).select(
        F.col(C.CELL_ID).alias("_cid"),
        F.col(C.VALID_FROM).alias("_vf"),
        F.col(C.VALID_TO).alias("_vt"),
        F.col(C.H3_ID).alias(out),
        "_lo",
        "_hi",
    )
    hit = (
        (F.col(C.CELL_ID) == F.col("_cid"))
        & F.col(C.VALID_FROM).eqNullSafe(F.col("_vf"))
        & F.col(C.VALID_TO).eqNullSafe(F.col("_vt"))
        & (F.col("_lo") <= F.col(DRAW))
        & (F.col(DRAW) < F.col("_hi"))
    )
    return (
        keyed_df.withColumn(DRAW, user_uniform(salt))
        .join(F.broadcast(cum_df), on=hit, how="inner")
        .drop("_cid", "_vf", "_vt", "_lo", "_hi", DRAW, *_CELL_KEY)
    )


def usual_residence(
    events_df: DataFrame,
    coverage_df: DataFrame,
    params: ResidenceParams,
    timezone: str,
    first: date,
    last: date,
) -> DataFrame:
    """Accepted events -> one usual residence per user (schema HOMES).

    The home place is chosen on whole antenna cells (nights are never split by weights);
    the home hexagon is then drawn from the home cell's coverage weights (see
    ``with_drawn_hexagon``), so a voronoi cell's residents spread over its area.
    (Shuffling the night events by user first, as daytime_anchor does, was measured: at
    30 M events it shuffled 134 MB instead of 20 MB for the same time, since the nights
    per cell aggregate well before their exchange.)
    """
    return (
        events_df.transform(with_local_time, timezone, first, last)
        .transform(filter_night, params, first, last)
        .transform(with_cell_place, coverage_df)
        .transform(count_nights, first)
        .transform(with_home_cell, params.min_nights)
        .transform(with_drawn_hexagon, coverage_df, C.HOME_H3)
        .select(C.USER_KEY, C.HOME_H3, C.NIGHTS)
    )


def with_resolutions(
    df: DataFrame, cell_columns: dict[str, str], resolutions: list[int]
) -> DataFrame:
    """One row per input row and resolution, each cell column replaced by its parent.

    ``cell_columns`` maps an int64 finest-resolution column to its output name; rows are
    multiplied by len(resolutions) in one pass (no group-by per resolution).
    """
    levels = F.array(
        *[
            F.struct(
                F.lit(r).alias(C.RESOLUTION),
                *[h3_parent(src, r).alias(dst) for src, dst in cell_columns.items()],
            )
            for r in resolutions
        ]
    )
    return df.withColumn("_level", F.explode(levels)).select(
        *[c for c in df.columns if c not in cell_columns], "_level.*"
    )


def count_residents(homes_df: DataFrame, resolutions: list[int]) -> DataFrame:
    """Distinct users per home cell at every resolution: (resolution, h3_cell int64, residents)."""
    return (
        homes_df.select(C.USER_KEY, C.HOME_H3)
        .transform(with_resolutions, {C.HOME_H3: C.H3_CELL}, resolutions)
        .groupBy(C.RESOLUTION, C.H3_CELL)
        .agg(F.count(F.lit(1)).alias(C.RESIDENTS))
    )
