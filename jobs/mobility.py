"""Mobility indicators of one month as gate-ready count frames."""

from __future__ import annotations

from pyspark.sql import DataFrame

from jobs import noise, od, presence, stays
from mobiterra.config import Month, RunConfig, month_bounds_utc


def mobility_counts(
    events_df: DataFrame,
    coverage_df: DataFrame,
    homes_df: DataFrame,
    cfg: RunConfig,
    month: str | None = None,
    stays_df: DataFrame | None = None,
    sites_df: DataFrame | None = None,
    trips_df: DataFrame | None = None,
) -> dict[str, DataFrame]:
    """Count frames for the gate: present_population, od_trips, od_home_work.

    ``events_df``: accepted events (ACCEPTED_EVENTS) of the month; ``coverage_df``: the
    COVERAGE table; ``homes_df``: HOMES of the month; ``month`` defaults to ``cfg.month``.
    ``stays_df`` (schema STAYS) skips the segmentation when the caller has materialized
    ``stays.stays_from_events`` once (it feeds two tables; lazily it is computed twice);
    else ``sites_df`` (stays.cell_sites) gives the segmentation its antenna masts.
    ``trips_df`` (schema TRIPS): the trips of ``stays_df``, when materialized too.

    Cells are int64; present_population has (resolution, h3_cell, period_start, period,
    users); od_trips and od_home_work have (resolution, origin_cell, destination_cell,
    period_start, period, trips, users); od_home_work's period is ``month``. Without
    ``cfg.od.home_work`` there is no od_home_work.
    """
    if not (month or cfg.month):
        raise ValueError("mobility_counts needs a month (argument or cfg.month), got none")
    month = Month(month or cfg.month)
    start, end = month_bounds_utc(month, cfg.timezone, tail_hours=0)
    first, last = month.first_day, month.last_day
    if stays_df is None:
        stays_df = stays.stays_from_events(
            events_df, coverage_df, cfg.stays, cfg.timezone, sites_df, (first, last)
        )
    if trips_df is None:
        trips_df = stays.trips_from_stays(stays_df, cfg.stays.same_place_resolution)
    if cfg.privacy.noise != "none":
        # bounded contributions before counting (jobs.noise.sensitivity); trips are made
        # from all stays first, so no trip joins two stays that were not consecutive
        trips_df = noise.bound_trips(trips_df, cfg.privacy, cfg.timezone)
        stays_df = noise.bound_stays(stays_df, cfg.privacy, cfg.timezone)
    counts = {
        "present_population": presence.count_present_population(
            stays_df,
            cfg.timezone,
            cfg.day_parts,
            cfg.presence.periods,
            cfg.resolutions,
            start,
            end,
        ),
        "od_trips": od.count_od(
            trips_df, cfg.timezone, cfg.day_parts, cfg.od.periods, cfg.resolutions, start, end
        ),
    }
    if cfg.od.home_work:
        anchors_df = od.daytime_anchor(
            events_df, coverage_df, cfg.residence, cfg.timezone, first, last
        )
        counts["od_home_work"] = od.count_home_work(homes_df, anchors_df, cfg.resolutions, start)
    return counts
