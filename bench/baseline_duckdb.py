"""The baseline: the pipeline's shared tables by plain single-machine DuckDB SQL.

What a data scientist would write without Spark, on the same input files and the same
coverage table (the Parquet the pipeline cached in .state/cache): residents,
residence_shift, and the ``day`` periods of present_population and od_trips, as count
tables before the publication gate (int64 H3 cells at every resolution).

Same rules as the jobs, written independently:
- ingest (jobs.ingest, jobs.cells): blank ids, null timestamps, unknown cells, cells not
  active on the local day, invalid coordinates, ambiguous ids are rejected; the month is
  [local month start, next month start + night end hour); exact duplicates dropped; the
  baseline month keeps its night-time rows only (its residences are all it serves);
- usual residence (jobs.residence): nights 22-06 local labelled by their evening; the
  place of an antenna cell is its main hexagon (highest weight, lowest id); most distinct
  nights, then night events, then lowest place, then the cell within the place; at least
  ``min_nights``; the hexagon drawn from the home cell's weights by Spark's
  ``xxhash64("home", user_key)`` (user_key: HMAC-SHA256 of the user id, in SQL; the
  xxhash64 in numpy, bench/sparkhash.py, once per user with a home);
- stays and trips (jobs.stays): each event at its cell's main hexagon, the mast's for
  sectors of one compact mast (jobs.stays.main_cells, the one piece taken from the jobs:
  a table of one row per antenna cell); segments per user over time (new place at the
  same-place resolution, or a silence > max missing), short segments between two of one
  other place dropped (and handovers: at most handover_max_events events on the mast of
  the segments around), neighbours at one place merged, then stays shorter than min stay
  dropped and neighbours merged again, trips between consecutive stays at different places;
- present population per local day (jobs.presence): a stay covers the UTC hour slots from
  its first to its last event; a user is present on a local day in a cell when one of
  those slots starts in that day;
- od_trips per local day (jobs.od): trips by the local day of departure, trips and
  distinct users.
H3 parents are integer bit operations (mobiterra.h3cols), no h3 extension.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.sparkhash import user_uniform
from jobs import stays
from jobs.readers import read_cells_pandas
from mobiterra.config import Month, RunConfig, month_bounds_utc

KEY_HEX_CHARS = 32  # jobs.pseudonym


def parent_sql(cell: str, res: str) -> str:
    """H3 parent of an int64 cell at resolution ``res`` (both SQL expressions)."""
    return (
        f"(({cell} & ~(15::BIGINT << 52)) | ({res}::BIGINT << 52)"
        f" | ((1::BIGINT << (3 * (15 - {res}))) - 1))"
    )


def _ts(value) -> str:
    return f"TIMESTAMPTZ '{pd.Timestamp(value).isoformat()}+00:00'"


def _hmac_pads(key: bytes) -> tuple[str, str]:
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key).hex(), bytes(b ^ 0x5C for b in key).hex()


class Baseline:
    """One DuckDB connection; ``run()`` computes the four tables and times each step."""

    def __init__(self, cfg: RunConfig, events: Path, coverage: Path, key: bytes, threads: int):
        self.cfg = cfg
        self.events = Path(events)
        self.coverage = Path(coverage)
        self.key = key
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {threads}")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        self.tz = cfg.timezone
        self.seconds: dict[str, float] = {}

    def _sql(self, step: str, sql: str) -> None:
        t0 = time.perf_counter()
        self.con.execute(sql)
        self.seconds[step] = round(self.seconds.get(step, 0.0) + time.perf_counter() - t0, 3)

    def _local(self, col: str) -> str:
        return f"timezone('{self.tz}', {col})"

    def _events_source(self) -> str:
        path = self.events
        glob = f"{path}/**/*.parquet" if path.is_dir() else str(path)
        return f"read_parquet('{glob}', hive_partitioning = false)"

    # ---------------------------------------------------------------- ingest
    def ingest(self) -> None:
        """Cells with a status, then the accepted events of both months in one scan."""
        self._sql(
            "ingest",
            f"""
            CREATE OR REPLACE TEMP TABLE cells_v AS
            WITH raw AS (
              SELECT DISTINCT nullif(trim(cell_id), '') AS cell_id,
                     try_cast(lat AS DOUBLE) AS lat, try_cast(lon AS DOUBLE) AS lon,
                     try_cast(azimuth_deg AS DOUBLE) AS az, try_cast(range_m AS DOUBLE) AS rng,
                     try_cast(valid_from AS DATE) AS valid_from,
                     try_cast(valid_to AS DATE) AS valid_to
              FROM read_csv('{self.cfg.cells}', all_varchar = true, header = true)
            ), keyed AS (
              SELECT *, row_number() OVER () AS rid FROM raw WHERE cell_id IS NOT NULL
            ), ambiguous AS (
              SELECT DISTINCT a.cell_id FROM keyed a JOIN keyed b
                ON a.cell_id = b.cell_id AND a.rid < b.rid
               AND coalesce(a.valid_from, DATE '0001-01-01')
                   <= coalesce(b.valid_to, DATE '9999-12-31')
               AND coalesce(b.valid_from, DATE '0001-01-01')
                   <= coalesce(a.valid_to, DATE '9999-12-31')
            )
            SELECT cell_id, valid_from, valid_to,
                   CASE WHEN lat IS NULL OR lon IS NULL OR NOT isfinite(lat) OR NOT isfinite(lon)
                          OR abs(lat) > 90 OR abs(lon) > 180 OR (lat = 0 AND lon = 0)
                        THEN 'invalid_cell_coordinates' ELSE 'ok' END AS status
            FROM keyed WHERE cell_id NOT IN (SELECT cell_id FROM ambiguous)
            UNION ALL
            SELECT cell_id, NULL, NULL, 'ambiguous_cell' FROM ambiguous
            """,
        )
        windows = []
        for label, month in (("m", self.cfg.month), ("b", self.cfg.baseline_month)):
            if month:
                start, end = month_bounds_utc(month, self.tz, self.cfg.residence.night_end_hour)
                windows.append(f"WHEN ts >= {_ts(start)} AND ts < {_ts(end)} THEN '{label}'")
        day = f"CAST({self._local('ev.ts')} AS DATE)"
        # the baseline month serves its usual residences only: its night-time rows
        b_night = self._night(self._local("ts"))[0]
        self._sql(
            "ingest",
            f"""
            CREATE OR REPLACE TEMP TABLE events AS
            WITH ev AS (
              SELECT CAST(user_id AS VARCHAR) AS user_id, CAST("timestamp" AS TIMESTAMPTZ) AS ts,
                     CAST(cell_id AS VARCHAR) AS cell_id
              FROM {self._events_source()}
            ), good AS (
              SELECT ev.* FROM ev
              WHERE coalesce(trim(user_id), '') <> '' AND ts IS NOT NULL
                AND coalesce(trim(cell_id), '') <> ''
                AND EXISTS (
                  SELECT 1 FROM cells_v c
                  WHERE c.cell_id = ev.cell_id AND c.status = 'ok'
                    AND (c.valid_from IS NULL OR {day} >= c.valid_from)
                    AND (c.valid_to IS NULL OR {day} <= c.valid_to))
            )
            SELECT DISTINCT CASE {" ".join(windows)} END AS mon, user_id, ts, cell_id,
                   {self._local("ts")} AS local_ts
            FROM good WHERE CASE {" ".join(windows)} END IS NOT NULL
              AND (CASE {" ".join(windows)} END = 'm' OR {b_night})
            """,
        )

    # ---------------------------------------------------------------- coverage
    def coverage_tables(self) -> None:
        """Each antenna cell piece's main hexagon and its cumulative weights (small).

        The stays' main hexagons (the sectors of a compact mast share the mast's) are
        jobs.stays.main_cells's: one row per antenna cell, made in pandas, since hexagon
        centres need H3, which this DuckDB has not (its extension is a download)."""
        stay_main = stays.main_cells(
            pq.read_table(self.coverage).to_pandas(),
            stays.cell_sites(read_cells_pandas(self.cfg.cells)),
            self.cfg.stays.same_mast_max_distance_m,
        )
        self.con.register("stay_main", pa.Table.from_pandas(stay_main, preserve_index=False))
        self._sql(
            "coverage",
            f"""
            CREATE OR REPLACE TEMP TABLE cov AS SELECT * FROM read_parquet('{self.coverage}');
            CREATE OR REPLACE TEMP TABLE sites AS  -- jobs.stays.cell_sites
            SELECT cell_id, first(site ORDER BY valid_from DESC NULLS LAST, lat DESC, lon DESC)
                   AS site
            FROM (
              SELECT nullif(trim(cell_id), '') AS cell_id, valid_from, lat, lon,
                     CAST(floor((lat + 90.0) * 1e5 + 0.5) AS BIGINT) * 40000000
                     + CAST(floor((lon + 180.0) * 1e5 + 0.5) AS BIGINT) AS site
              FROM (SELECT cell_id, valid_from, try_cast(lat AS DOUBLE) AS lat,
                           try_cast(lon AS DOUBLE) AS lon
                    FROM read_csv('{self.cfg.cells}', all_varchar = true, header = true))
              WHERE isfinite(lat) AND isfinite(lon))
            WHERE cell_id IS NOT NULL GROUP BY cell_id;
            CREATE OR REPLACE TEMP TABLE main_cov AS
            SELECT m.*, s.site FROM (
              SELECT cell_id, valid_from, valid_to, h3_id AS place FROM (
                SELECT *, row_number() OVER (PARTITION BY cell_id, valid_from, valid_to
                                             ORDER BY weight DESC, h3_id) AS rk FROM cov)
              WHERE rk = 1) m LEFT JOIN sites s USING (cell_id);
            CREATE OR REPLACE TEMP TABLE stay_cov AS  -- the stays' places (main_cells)
            SELECT m.cell_id, m.valid_from, m.valid_to, m.h3_id AS place, s.site
            FROM stay_main m LEFT JOIN sites s USING (cell_id);
            CREATE OR REPLACE TEMP TABLE cum_cov AS
            SELECT cell_id, valid_from, valid_to, h3_id,
                   hi - weight / total AS lo,
                   CASE WHEN h3_id = max(h3_id) OVER piece THEN 2.0 ELSE hi END AS hi
            FROM (
              SELECT *, sum(weight) OVER (PARTITION BY cell_id, valid_from, valid_to ORDER BY h3_id
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                        / sum(weight) OVER (PARTITION BY cell_id, valid_from, valid_to) AS hi,
                        sum(weight) OVER (PARTITION BY cell_id, valid_from, valid_to) AS total
              FROM cov)
            WINDOW piece AS (PARTITION BY cell_id, valid_from, valid_to)
            """,
        )

    def _located(self, places: str = "main_cov") -> str:
        return f"""
            JOIN {places} p ON p.cell_id = e.cell_id
             AND (p.valid_from IS NULL OR CAST(e.local_ts AS DATE) >= p.valid_from)
             AND (p.valid_to IS NULL OR CAST(e.local_ts AS DATE) <= p.valid_to)"""

    # ---------------------------------------------------------------- residence
    def _night(self, local_ts: str) -> tuple[str, int]:
        """(is the local timestamp in the night window, hours to shift it to its evening)."""
        r, hour = self.cfg.residence, f"hour({local_ts})"
        if r.night_start_hour > r.night_end_hour:
            return (
                f"({hour} >= {r.night_start_hour} OR {hour} < {r.night_end_hour})",
                r.night_end_hour,
            )  # noqa: E501
        return f"({hour} >= {r.night_start_hour} AND {hour} < {r.night_end_hour})", 0

    def homes(self, label: str, month: str) -> None:
        r = self.cfg.residence
        m = Month(month)
        first, last = m.first_day, m.last_day
        at_night, shift = self._night("e.local_ts")
        self._sql(
            "residence",
            f"""
            CREATE OR REPLACE TEMP TABLE home_cell_{label} AS
            WITH night_ev AS (
              SELECT e.user_id, p.place, p.cell_id, p.valid_from, p.valid_to,
                     CAST(e.local_ts - INTERVAL {shift} HOUR AS DATE) AS night
              FROM events e {self._located()}
              WHERE e.mon = '{label}' AND {at_night}
            ), per_night AS (
              SELECT user_id, place, cell_id, valid_from, valid_to, night, count(*) AS n
              FROM night_ev WHERE night BETWEEN DATE '{first}' AND DATE '{last}'
              GROUP BY ALL
            ), per_cell AS (
              SELECT user_id, place, cell_id, valid_from, valid_to,
                     count(*) AS cell_nights, sum(n) AS cell_events
              FROM per_night GROUP BY ALL
            ), per_place AS (
              SELECT user_id, place, count(DISTINCT night) AS nights, sum(n) AS place_events
              FROM per_night GROUP BY ALL
            ), ranked AS (
              SELECT c.*, pp.nights, pp.place_events,
                     row_number() OVER (PARTITION BY c.user_id ORDER BY pp.nights DESC,
                       pp.place_events DESC, c.place, c.cell_nights DESC, c.cell_events DESC,
                       c.cell_id, c.valid_from NULLS FIRST) AS rk
              FROM per_cell c JOIN per_place pp USING (user_id, place)
            )
            SELECT user_id, cell_id, valid_from, valid_to,
                   substr(sha256(unhex('{_hmac_pads(self.key)[1]}') || unhex(sha256(
                       unhex('{_hmac_pads(self.key)[0]}') || encode(user_id)))),
                          1, {KEY_HEX_CHARS}) AS user_key
            FROM ranked WHERE rk = 1 AND nights >= {r.min_nights}
            """,
        )
        t0 = time.perf_counter()
        homes = self.con.execute(f"SELECT user_key FROM home_cell_{label}").fetchnumpy()
        draws = pd.DataFrame(  # noqa: F841 - read by the SQL below
            {"user_key": homes["user_key"], "u": user_uniform("home", homes["user_key"])}
        )
        self.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE homes_{label} AS
            SELECT h.user_id, c.h3_id AS home_h3
            FROM home_cell_{label} h JOIN draws d USING (user_key)
            JOIN cum_cov c ON c.cell_id = h.cell_id
             AND c.valid_from IS NOT DISTINCT FROM h.valid_from
             AND c.valid_to IS NOT DISTINCT FROM h.valid_to
             AND c.lo <= d.u AND d.u < c.hi
            """
        )
        self.seconds["residence"] += round(time.perf_counter() - t0, 3)

    def _resolutions(self) -> str:
        return f"(SELECT unnest({list(self.cfg.resolutions)}) AS r) res"

    def residents(self) -> pd.DataFrame:
        t0 = time.perf_counter()
        df = self.con.execute(
            f"""
            SELECT r AS resolution, {parent_sql("home_h3", "r")} AS h3_cell, count(*) AS residents
            FROM homes_m CROSS JOIN {self._resolutions()} GROUP BY ALL
            """
        ).df()
        self.seconds["residents"] = round(time.perf_counter() - t0, 3)
        return df

    def residence_shift(self) -> pd.DataFrame:
        t0 = time.perf_counter()
        df = self.con.execute(
            f"""
            SELECT r AS resolution, {parent_sql("b.home_h3", "r")} AS origin_cell,
                   {parent_sql("m.home_h3", "r")} AS destination_cell, count(*) AS users
            FROM homes_b b JOIN homes_m m USING (user_id) CROSS JOIN {self._resolutions()}
            GROUP BY ALL
            """
        ).df()
        self.seconds["residence_shift"] = round(time.perf_counter() - t0, 3)
        return df

    # ---------------------------------------------------------------- stays, trips
    def stays(self) -> None:
        s = self.cfg.stays
        gap, sp = s.max_time_missing_stay_s, s.same_place_resolution
        handover = s.handover_max_events
        secs = "(epoch_us({}) // 1000000)"
        dur = f"({secs.format('stay_end')} - {secs.format('stay_start')})"

        def merge(name: str, source: str) -> str:
            """jobs.stays.merge_stays: consecutive stays at one place within the gap."""
            return f"""{name}_f AS (
              SELECT *, CASE WHEN lag(stay_h3) OVER w IS NULL
                               OR {parent_sql("stay_h3", str(sp))}
                                  <> {parent_sql("lag(stay_h3) OVER w", str(sp))}
                               OR {secs.format("stay_start")}
                                  - {secs.format("lag(stay_end) OVER w")} > {gap}
                             THEN 1 ELSE 0 END AS starts
              FROM {source} WINDOW w AS (PARTITION BY user_id ORDER BY stay_start, stay_h3)
            ), {name}_g AS (
              SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY stay_start, stay_h3
                                          ROWS UNBOUNDED PRECEDING) AS grp
              FROM {name}_f
            ), {name} AS (
              SELECT user_id, first(stay_h3 ORDER BY {dur} DESC, stay_h3) AS stay_h3,
                     min(stay_start) AS stay_start, max(stay_end) AS stay_end
              FROM {name}_g GROUP BY user_id, grp
            )"""

        self._sql(
            "stays",
            f"""
            CREATE OR REPLACE TEMP TABLE stays AS
            WITH located AS (
              SELECT e.user_id, e.ts, p.place AS h3, {parent_sql("p.place", str(sp))} AS pl,
                     p.site
              FROM events e {self._located("stay_cov")} WHERE e.mon = 'm'
            ), flagged AS (
              SELECT *, CASE WHEN lag(pl) OVER w IS NULL OR pl <> lag(pl) OVER w
                               OR {secs.format("ts")} - {secs.format("lag(ts) OVER w")} > {gap}
                             THEN 1 ELSE 0 END AS starts
              FROM located WINDOW w AS (PARTITION BY user_id ORDER BY ts, h3)
            ), segmented AS (
              SELECT *, sum(starts) OVER (PARTITION BY user_id ORDER BY ts, h3
                                          ROWS UNBOUNDED PRECEDING) AS seg
              FROM flagged
            ), per_cell AS (
              SELECT user_id, seg, h3, count(*) AS n, min(ts) AS t0, max(ts) AS t1
              FROM segmented GROUP BY ALL
            ), per_site AS (
              SELECT user_id, seg, site, count(*) AS n
              FROM segmented WHERE site IS NOT NULL GROUP BY ALL
            ), seg_sites AS (
              SELECT user_id, seg, first(site ORDER BY n DESC, site) AS site
              FROM per_site GROUP BY user_id, seg
            ), segs AS (
              SELECT c.*, ss.site FROM (
                SELECT user_id, seg, first(h3 ORDER BY n DESC, h3) AS stay_h3,
                       min(t0) AS stay_start, max(t1) AS stay_end, sum(n) AS ev_n
                FROM per_cell GROUP BY user_id, seg) c
              LEFT JOIN seg_sites ss USING (user_id, seg)
            ), sandwich AS (  -- jobs.stays.filter_sandwiched_passes
              SELECT *, coalesce(({dur} < {s.min_time_stay_s} OR ({handover} > 0
                                   AND ev_n <= {handover} AND site = lag(site) OVER w
                                   AND site = lead(site) OVER w))
                                 AND lag(spl) OVER w = lead(spl) OVER w
                                 AND spl <> lag(spl) OVER w, false) AS sw
              FROM (SELECT *, {parent_sql("stay_h3", str(sp))} AS spl FROM segs)
              WINDOW w AS (PARTITION BY user_id ORDER BY stay_start, stay_h3)
            ), unsandwiched AS (
              SELECT user_id, stay_h3, stay_start, stay_end FROM (
                SELECT *, coalesce(lead(sw) OVER w, false) AS next_sw FROM sandwich
                WINDOW w AS (PARTITION BY user_id ORDER BY stay_start, stay_h3)
              ) WHERE NOT (sw AND NOT next_sw)
            ), {merge("merged1", "unsandwiched")}, long_stays AS (
              SELECT * FROM merged1 WHERE {dur} >= {s.min_time_stay_s}
            ), {merge("merged2", "long_stays")}
            SELECT * FROM merged2
            """,
        )

    def _month_bounds(self):
        return month_bounds_utc(self.cfg.month, self.tz, tail_hours=0)

    def od_daily(self) -> pd.DataFrame:
        sp = self.cfg.stays.same_place_resolution
        start, end = self._month_bounds()
        t0 = time.perf_counter()
        df = self.con.execute(
            f"""
            WITH nxt AS (
              SELECT user_id, stay_h3 AS origin_h3, stay_end AS departure,
                     lead(stay_h3) OVER w AS destination_h3
              FROM stays WINDOW w AS (PARTITION BY user_id ORDER BY stay_start, stay_h3)
            ), trips AS (
              SELECT *, timezone('{self.tz}', CAST({self._local("departure")} AS DATE)::TIMESTAMP)
                        AS period_start
              FROM nxt WHERE destination_h3 IS NOT NULL
                AND {parent_sql("origin_h3", str(sp))} <> {parent_sql("destination_h3", str(sp))}
            )
            SELECT r AS resolution, {parent_sql("origin_h3", "r")} AS origin_cell,
                   {parent_sql("destination_h3", "r")} AS destination_cell,
                   period_start, 'day' AS period,
                   count(*) AS trips, count(DISTINCT user_id) AS users
            FROM trips CROSS JOIN {self._resolutions()}
            WHERE period_start >= {_ts(start)} AND period_start < {_ts(end)}
            GROUP BY ALL
            """
        ).df()
        self.seconds["od_daily"] = round(time.perf_counter() - t0, 3)
        return df

    def presence_daily(self) -> pd.DataFrame:
        """A stay covers its hour slots [trunc(first), trunc(last)] clipped to the month
        (+ 1 day); the local days holding one of those slot starts are the days it spans,
        since local midnights fall on whole UTC hours (checked by the equality test)."""
        start, end = self._month_bounds()
        until = pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        t0 = time.perf_counter()
        df = self.con.execute(
            f"""
            WITH slots AS (
              SELECT user_id, stay_h3,
                     date_trunc('hour', greatest(stay_start, {_ts(start)})) AS first_slot,
                     date_trunc('hour', least(stay_end, {_ts(until)})) AS last_slot
              FROM stays WHERE greatest(stay_start, {_ts(start)}) <= least(stay_end, {_ts(until)})
            ), local_days AS (
              SELECT user_id, stay_h3,
                     unnest(generate_series(
                        CAST({self._local("first_slot")} AS DATE)::TIMESTAMP,
                        CAST({self._local("last_slot")} AS DATE)::TIMESTAMP,
                        INTERVAL 1 DAY)) AS local_day
              FROM slots
            ), days AS (
              SELECT user_id, stay_h3, timezone('{self.tz}', local_day) AS period_start
              FROM local_days
            )
            SELECT r AS resolution, {parent_sql("stay_h3", "r")} AS h3_cell, period_start,
                   'day' AS period, count(DISTINCT user_id) AS users
            FROM days CROSS JOIN {self._resolutions()}
            WHERE period_start >= {_ts(start)} AND period_start < {_ts(end)}
            GROUP BY ALL
            """
        ).df()
        self.seconds["presence_daily"] = round(time.perf_counter() - t0, 3)
        return df

    def run(self, tables: set[str]) -> dict[str, pd.DataFrame]:
        """The requested tables (residents, residence_shift, present_population, od_trips)."""
        self.ingest()
        self.coverage_tables()
        self.homes("m", self.cfg.month)
        out = {"residents": self.residents()}
        if self.cfg.baseline_month and "residence_shift" in tables:
            self.homes("b", self.cfg.baseline_month)
            out["residence_shift"] = self.residence_shift()
        if tables & {"present_population", "od_trips"}:
            self.stays()
            if "present_population" in tables:
                out["present_population"] = self.presence_daily()
            if "od_trips" in tables:
                out["od_trips"] = self.od_daily()
        return out

    def close(self) -> None:
        self.con.close()
