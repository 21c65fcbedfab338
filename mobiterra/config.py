"""Typed run configuration: every threshold named, defaulted and sourced.

Loaded from a TOML or JSON file (``--config``) and overridden by command-line flags.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mobiterra.errors import InputError

MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class Month(str):
    """A calendar month written YYYY-MM."""

    @property
    def first_day(self) -> date:
        return date(int(self[:4]), int(self[5:7]), 1)

    @property
    def next_first_day(self) -> date:
        d = self.first_day
        return date(d.year + (d.month == 12), d.month % 12 + 1, 1)

    @property
    def last_day(self) -> date:
        return self.next_first_day - timedelta(days=1)

    def previous(self) -> Month:
        d = self.first_day - timedelta(days=1)
        return Month(f"{d.year:04d}-{d.month:02d}")

    def next(self) -> Month:
        d = self.next_first_day
        return Month(f"{d.year:04d}-{d.month:02d}")


def parse_month(value: str) -> Month:
    if not isinstance(value, str) or not MONTH_RE.match(value):
        raise InputError(f"month {value!r} is not of the form YYYY-MM")
    return Month(value)


class ResidenceParams(BaseModel):
    """Usual residence: the place seen on the most distinct nights of the month."""

    model_config = ConfigDict(extra="forbid")
    # Night window in local time; the usual "night-time" window of mobile-phone residence
    # studies (Eurostat Multi-MNO usual environment uses a 22:00-06:00 night time interval).
    night_start_hour: int = Field(22, ge=0, le=23)
    night_end_hour: int = Field(6, ge=0, le=23)
    # A home needs at least this many distinct nights in the month (about one a week; a
    # user seen fewer nights has no usual residence that month).
    min_nights: int = Field(4, ge=1, le=31)
    # Daytime anchor (work): weekdays 09:00-17:00 local.
    day_start_hour: int = Field(9, ge=0, le=23)
    day_end_hour: int = Field(17, ge=0, le=24)
    min_days: int = Field(4, ge=1, le=31)


class StayParams(BaseModel):
    """Stays: consecutive events of a user at one place (Multi-MNO continuous time
    segmentation; parameter names follow its ``continuous_time_segmentation.ini``)."""

    model_config = ConfigDict(extra="forbid")
    # A stay lasts at least this long; shorter runs are passes (Multi-MNO min_time_stay_s,
    # default 900 s = 15 min).
    min_time_stay_s: int = Field(900, ge=0)
    # Largest gap between two events of one stay; a longer silence splits it. Multi-MNO's
    # default is 12 h "to support devices being offline at home or work addresses": a phone
    # silent from 01:00 to 07:00 at home is still at home, which night presence relies on.
    max_time_missing_stay_s: int = Field(12 * 3600, ge=1)
    # Same place = same H3 parent at this resolution (res 7 edge ~1.4 km, about one urban
    # antenna's reach): neighbouring antennas' hexagons ping-ponging inside it stay one stay.
    # Multi-MNO uses intersecting cell footprints; H3 parents keep it a bitwise Column op.
    same_place_resolution: int = Field(7, ge=0, le=15)
    # A run of at most this many events on another sector of the mast of the stay around
    # it is a handover, not a stay (0: off). The phone did not move; the network handed it
    # to the neighbouring sector. Two such events hours apart made false stays and trips
    # (a lockdown Sunday in Paris read +89 % trips, +26 % with this rule; docs/accuracy.md).
    handover_max_events: int = Field(2, ge=0)
    # Sectors of one mast whose own main hexagons are at most this far apart (centre to
    # centre) are one place: they all take the mast's main hexagon (0: off). 1,000 m joins
    # sectors whose res-8 main hexagons are neighbours (~0.9 km), as in a city, and keeps
    # the rural masts' sectors (several km apart) distinct. A phone that stays put near
    # such a mast is served by two of its sectors in turn; when their hexagons fell in two
    # res-7 cells, each switch was a trip (lockdown weekends in Paris +26 %, +1 % with this
    # rule; docs/accuracy.md).
    same_mast_max_distance_m: float = Field(1000.0, ge=0)


class DayPartParams(BaseModel):
    """Day-parts in local hours [start, end); a part whose start > end crosses midnight and
    is labelled by the date of its evening (as nights are in ResidenceParams)."""

    model_config = ConfigDict(extra="forbid")
    # 22:00-06:00: Multi-MNO usual environment night-time interval (as ResidenceParams).
    night: tuple[int, int] = (22, 6)
    # 09:00-17:00: the working-hours window also used for the daytime anchor.
    daytime: tuple[int, int] = (9, 17)
    # 17:00-22:00: between work and night (Flux Vision publishes similar day-part slices).
    evening: tuple[int, int] = (17, 22)

    @field_validator("night", "daytime", "evening")
    @classmethod
    def _hours(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (0 <= v[0] <= 23 and 0 <= v[1] <= 24) or v[0] == v[1]:
            raise ValueError(f"a day-part is (start, end) local hours 0..24, start != end; got {v}")
        return v


PresencePeriod = Literal["hour", "day", "night", "daytime", "evening"]
OdPeriod = Literal["day", "night", "daytime", "evening"]


class PresenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Periods published for present population. `hour` dominates the volume (user-hours x
    # resolutions); drop it here for a lighter run.
    periods: list[PresencePeriod] = Field(
        default_factory=lambda: ["hour", "day", "night", "daytime", "evening"]
    )


class OdParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Periods of the trip OD matrices, by departure local time (the home -> daytime-anchor
    # matrix is always monthly).
    periods: list[OdPeriod] = Field(default_factory=lambda: ["day", "night", "daytime", "evening"])
    # The home -> daytime-anchor (work) matrix, od_home_work. Off, the month publishes no
    # od_home_work and its daytime anchors are not computed.
    home_work: bool = True


class ExpansionParams(BaseModel):
    """Expansion of subscriber counts to the whole population (``*_est`` columns): a factor
    per département = reference residents (INSEE) / detected resident subscribers."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # Calibrate on the baseline month when there is one: the census describes ordinary
    # times, so a month of mass relocation (the 2020 lockdown) keeps its change in the
    # estimates instead of being scaled back to the census. "month" calibrates every
    # month on itself (Eurostat Multi-MNO's per-period factors).
    calibrate_on: Literal["baseline", "month"] = "baseline"
    # A département gets a factor from at least this many detected resident subscribers
    # (sampling error ~ 1/sqrt(n): 7 % at 200); fewer means it lies outside the network's
    # territory (e.g. a neighbour's edge). Never below k: reference / factor = the count.
    min_residents: int = Field(200, ge=1)
    # Network coverage diagnostic: share of a département's reference population in H3
    # hexagons of this resolution (res 6 ~ 36 km2) holding a covered finest hexagon.
    coverage_resolution: int = Field(6, ge=0, le=15)
    # ... and a factor only where the network covers at least this share of the
    # département's reference population: a neighbour reached by border antennas (50-65 %
    # of the petite couronne from Paris's sites in the simulator, under 20 % elsewhere) is
    # not the network's territory. A national network covers ~100 % of every département.
    min_network_coverage: float = Field(0.9, ge=0, le=1)


class PrivacyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # k-anonymity on distinct users; 20 is Orange Flux Vision's floor (FlowKit uses 15).
    k: int = Field(20, ge=2)
    # Optional noise before thresholding (jobs.noise), off by default.
    noise: Literal["none", "laplace", "gaussian"] = "none"
    # Privacy budget per published metric: Google's COVID-19 Community Mobility Reports
    # used eps = 0.44 per metric and day (Aktay et al. 2020, "Google COVID-19 Community
    # Mobility Reports: Anonymization Process Description").
    epsilon: float = Field(0.44, gt=0)
    # Gaussian mechanism only: delta well below 1 / number of users (1e-6 for ~27 M).
    delta: float = Field(1e-6, gt=0, lt=1)
    # Contribution bound c (with noise only): stays and trips one user may contribute per
    # local day; the rest are dropped before counting (jobs.noise.bound_stays/bound_trips).
    # Residents, shift and home -> work are bounded by construction (one home per user).
    # 4 keeps most users' days whole on the sample (median ~2 stays a day) while the
    # presence noise scale stays (2c + 1) / eps ~ 20 people (jobs.noise.sensitivity).
    max_contributions: int = Field(4, ge=1)
    # Seed of the noise; like the pseudonym key it must stay secret in production.
    noise_seed: str = "mobiterra-noise"


class CoverageParams(BaseModel):
    """Antenna cell -> H3 cells (jobs.coverage): `voronoi` areas, or the site's `point`."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["point", "voronoi"] = "voronoi"
    # Weights over a cell's hexagons: `population` (dasymetric on INSEE commune populations,
    # mobiterra.geo; area where there is none, e.g. outside France) or `area`.
    weights: Literal["population", "area"] = "population"
    # range_m absent: factor x distance to the nearest other site, clipped to [min, max]
    # (DESIGN.md: ~2 km urban, ~10 km rural).
    default_range_factor: float = Field(2.0, gt=0)
    min_default_range_m: float = Field(2_000.0, gt=0)
    max_default_range_m: float = Field(10_000.0, gt=0)
    # Sites outside France: their territory is their convex hull buffered by this much
    # (one rural range).
    hull_buffer_m: float = Field(10_000.0, ge=0)


class DegurbaParams(BaseModel):
    """Degree of urbanisation on the H3 grid (mobiterra.degurba): Eurostat's DEGURBA
    (Methodological manual on territorial typologies, 2018 ed., ch. 2) on res-8 cells."""

    model_config = ConfigDict(extra="forbid")
    # Res 8 (~0.74 km2) is the H3 resolution closest to DEGURBA's 1 km2 grid cells.
    resolution: int = Field(8, ge=6, le=9)
    # Urban centre: cells >= 1,500 inh/km2, contiguous, cluster >= 50,000 (Eurostat).
    centre_density: float = Field(1500.0, gt=0)
    centre_population: float = Field(50_000.0, gt=0)
    # Gap filling of urban centres: a cell with at least this many of its 6 neighbours in one
    # centre joins it, repeatedly (Eurostat: 5 of the 8 neighbours of a square cell).
    centre_fill_neighbours: int = Field(4, ge=1, le=6)
    # Urban cluster: cells >= 300 inh/km2, contiguous, cluster >= 5,000 (Eurostat).
    cluster_density: float = Field(300.0, gt=0)
    cluster_population: float = Field(5_000.0, gt=0)
    # A commune is "city" if at least this share of its people live in urban-centre cells,
    # else "town" if at least this share live in centre or cluster cells, else "rural"
    # (Eurostat's classification of local units; INSEE's grille communale de densite).
    commune_majority: float = Field(0.5, gt=0, le=1)
    # Commune size classes: upper bounds (INSEE population, inhabitants) of each class but
    # the last: < 2,000 (INSEE's rural threshold), 2,000-10,000, 10,000-50,000,
    # 50,000-200,000, >= 200,000.
    size_bounds: list[int] = Field(default_factory=lambda: [2_000, 10_000, 50_000, 200_000])
    # "Small towns and rural" (the toward-small-towns indicator): rural communes, and
    # "town" communes below this population (INSEE's petites villes stop near 10,000).
    small_town_max_population: int = Field(10_000, ge=0)


class DiagnosticsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Communes listed in the top gains and the top losses of residents.
    top_communes: int = Field(10, ge=0)


class ReportParams(BaseModel):
    """The planner's page, maps and exports (mobiterra.report)."""

    model_config = ConfigDict(extra="forbid")
    # Labels of the page and maps: French for French planners, English on request.
    lang: Literal["fr", "en"] = "fr"
    # Départements given their own maps; None = every département present in the data.
    departements: list[str] | None = None
    # Flows drawn per flow map, largest first (more arrows become unreadable).
    max_flows: int = Field(20, ge=1)
    # Credit on every map caption: who made the events, and the geography (INSEE, IGN).
    source: str = "mobiterra synthetic / INSEE, IGN"


# Java's throughput collector: the jobs are batch work on a heap of a few GiB, where the
# default G1's concurrent work and write barriers cost CPU the tasks need. The 10 M-event
# bench month on this 2-core machine, fresh JVM each: 81.9 / 82.1 s with G1, 73.2 / 71.3 s
# with ParallelGC (SerialGC 77.2 s; C1 only, -XX:TieredStopAtLevel=1, 111.8 s).
JAVA_OPTIONS = "-XX:+UseParallelGC"


class EngineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    master: str | None = None  # e.g. spark://127.0.0.1:7077; None = local[*]
    remote: str | None = None  # Spark Connect, e.g. sc://127.0.0.1:15002
    # Few shuffle partitions suit a 2-core machine; raise it on a cluster.
    shuffle_partitions: int = Field(8, ge=1)
    driver_memory: str = "4g"
    # JVM options of the driver (local mode) and of a cluster's executors.
    java_options: str = JAVA_OPTIONS


class RunConfig(BaseModel):
    """Everything one monthly run needs."""

    model_config = ConfigDict(extra="forbid")

    events: Path | None = None
    cells: Path | None = None
    population: Path | None = None
    # Simulator ground truth (mobiterra simulate): when set, the run scores itself
    # (validation.json in the month, mobiterra.validate).
    truth: Path | None = None
    month: str | None = None
    baseline_month: str | None = None
    out: Path = Path("out")
    work_dir: Path = Path(".state/work")
    # Keep the run's intermediate tables (events, homes, stays: pseudonymous user keys) in
    # work_dir/MONTH-xxxxxxxx for inspection instead of deleting them; off by default.
    keep_work: bool = False
    resolutions: list[int] = Field(default_factory=lambda: [4, 5, 6, 7, 8])
    timezone: str = "Europe/Paris"
    residence: ResidenceParams = Field(default_factory=ResidenceParams)
    stays: StayParams = Field(default_factory=StayParams)
    day_parts: DayPartParams = Field(default_factory=DayPartParams)
    presence: PresenceParams = Field(default_factory=PresenceParams)
    od: OdParams = Field(default_factory=OdParams)
    expansion: ExpansionParams = Field(default_factory=ExpansionParams)
    privacy: PrivacyParams = Field(default_factory=PrivacyParams)
    coverage: CoverageParams = Field(default_factory=CoverageParams)
    degurba: DegurbaParams = Field(default_factory=DegurbaParams)
    diagnostics: DiagnosticsParams = Field(default_factory=DiagnosticsParams)
    report: ReportParams = Field(default_factory=ReportParams)
    engine: EngineParams = Field(default_factory=EngineParams)
    quiet: bool = False

    @field_validator("month", "baseline_month")
    @classmethod
    def _month(cls, v: str | None) -> str | None:
        return None if v is None else parse_month(v)

    @field_validator("resolutions")
    @classmethod
    def _resolutions(cls, v: list[int]) -> list[int]:
        if not v or any(r < 0 or r > 15 for r in v):
            raise ValueError(f"resolutions must be H3 resolutions 0..15, got {v}")
        return sorted(set(v))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        ZoneInfo(v)
        return v

    @model_validator(mode="after")
    def _baseline_before(self) -> RunConfig:
        if self.month and self.baseline_month and self.baseline_month == self.month:
            raise ValueError("baseline month must differ from the month")
        return self

    @property
    def finest_resolution(self) -> int:
        return max(self.resolutions)

    @property
    def k(self) -> int:
        return self.privacy.k

    def config_hash(self) -> str:
        """Hash of the settings that shape the outputs (paths excluded)."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "events",
                "cells",
                "population",
                "out",
                "work_dir",
                "keep_work",
                "quiet",
                "engine",
            },
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: Path | None, overrides: dict) -> RunConfig:
    """Read a TOML/JSON config file (optional), apply non-None overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_bytes()
        except OSError as e:
            raise InputError(f"{path}: cannot read config file ({e.strerror})") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise InputError(
                f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {e}"
            ) from None
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return RunConfig.model_validate(data)
    except Exception as e:  # pydantic.ValidationError: make it one line
        first = str(e).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(e)
        raise InputError(f"invalid configuration: {detail}") from None


def month_bounds_utc(month: str, tz: str, tail_hours: int) -> tuple[datetime, datetime]:
    """UTC bounds of a local calendar month, extended by ``tail_hours`` after its end.

    The tail keeps the last night of the month (e.g. 31 Mar 22:00 -> 1 Apr 06:00 local),
    which belongs to the month because nights are labelled by their evening's date.
    """
    m = Month(month)
    zone = ZoneInfo(tz)
    start = datetime.combine(m.first_day, time(0), zone).astimezone(ZoneInfo("UTC"))
    end_local = datetime.combine(m.next_first_day, time(0), zone) + timedelta(hours=tail_hours)
    end = end_local.astimezone(ZoneInfo("UTC"))
    return start.replace(tzinfo=None), end.replace(tzinfo=None)
