"""The population reference a run may be given (``--population``): people per H3 cell,
for the dasymetric weights of the coverage (jobs.coverage) in place of the INSEE commune
populations spread evenly over each commune.

Rows are ``h3_cell,population`` (any resolution; coarser cells are split evenly over their
children at the coverage's resolution, finer ones summed into their parent) or
``lat,lon,population`` (a point's people in the cell holding it). CSV or Parquet. A gridded
census such as INSEE's 200 m grid, or the simulator's ``population.csv``, fits either form.
"""

from __future__ import annotations

from pathlib import Path

import h3.api.numpy_int as h3n
import numpy as np
import pandas as pd

from jobs.readers import read_small_table
from mobiterra import columns as C
from mobiterra.errors import InputError
from mobiterra.geo.grid import latlng_to_h3
from mobiterra.h3tree import parent_np

POPULATION = "population"
H3_FORM = (C.H3_CELL, POPULATION)
POINT_FORM = (C.LAT, C.LON, POPULATION)


def read_population(path: Path) -> pd.DataFrame:
    """The reference file as strings (checked by :func:`population_by_h3`)."""
    return read_small_table(path, "population")


def _h3_ids(cells: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 H3 ids of hex strings (0 where not a valid cell) and a validity mask."""
    text = cells.fillna("").astype(str).str.strip().str.lower()
    ids = np.zeros(len(text), dtype=np.int64)
    ok = text.str.fullmatch(r"[0-9a-f]{15}").to_numpy()
    ids[ok] = np.array([int(t, 16) for t in text[ok]], dtype=np.uint64).astype(np.int64)
    valid = np.zeros(len(text), dtype=bool)
    if ok.any():
        valid[ok] = np.array([h3n.is_valid_cell(int(i)) for i in ids[ok].astype(np.uint64)])
    return ids, valid


def _at_resolution(ids: np.ndarray, people: np.ndarray, resolution: int) -> pd.Series:
    """People per cell at ``resolution`` from cells at any resolution."""
    res = (ids >> 52) & 0xF  # the resolution bits, as mobiterra.h3cols.h3_resolution
    out_ids, out_people = [], []
    for r in np.unique(res):
        mine = res == r
        mass = people[mine]
        if r >= resolution:
            out_ids.append(parent_np(ids[mine], resolution))
            out_people.append(mass)
        else:
            kids = [h3n.cell_to_children(int(c), resolution) for c in ids[mine].astype(np.uint64)]
            sizes = np.array([len(k) for k in kids])
            # int64 throughout: mixing int64 with uint64 arrays would promote ids to float
            out_ids.append(np.concatenate(kids).astype(np.uint64).astype(np.int64))
            out_people.append(np.repeat(mass / sizes, sizes))
    if not out_ids:
        return pd.Series(dtype=float, name=POPULATION, index=pd.Index([], dtype=np.int64))
    s = pd.Series(np.concatenate(out_people), index=np.concatenate(out_ids))
    return s.groupby(level=0).sum().rename(POPULATION)


def population_by_h3(raw: pd.DataFrame, resolution: int, path: Path | str) -> pd.Series:
    """People per H3 cell at ``resolution`` (int64 index), from a reference table.

    Any unusable row (bad cell, coordinates out of range, a population that is missing,
    negative or not a number) is an InputError naming how many and the first one: a
    reference that silently lost rows would tilt the weights without a trace.
    """
    cols = list(raw.columns)
    if all(c in cols for c in H3_FORM):
        form = "h3"
    elif all(c in cols for c in POINT_FORM):
        form = "point"
    else:
        raise InputError(
            f"{path}: population file needs columns h3_cell,population or lat,lon,population; "
            f"found: {', '.join(cols) or '(none)'}"
        )
    people = pd.to_numeric(raw[POPULATION], errors="coerce").to_numpy(dtype=float)
    bad = np.where(~np.isfinite(people) | (people < 0), "population is not a number >= 0", "")
    if form == "h3":
        ids, valid = _h3_ids(raw[C.H3_CELL])
        bad = np.where((bad == "") & ~valid, "h3_cell is not an H3 cell", bad)
    else:
        lat = pd.to_numeric(raw[C.LAT], errors="coerce").to_numpy(dtype=float)
        lon = pd.to_numeric(raw[C.LON], errors="coerce").to_numpy(dtype=float)
        ok = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        bad = np.where((bad == "") & ~ok, "lat/lon out of range", bad)
        ids = np.zeros(len(raw), dtype=np.int64)
        ids[ok] = latlng_to_h3(lat[ok], lon[ok], resolution)
    wrong = np.flatnonzero(bad != "")
    if len(wrong):
        first = wrong[0]
        raise InputError(
            f"{path}: {len(wrong):,} unusable population row(s); first: row {first + 1} "
            f"({bad[first]}: {raw.iloc[first].to_dict()})"
        )
    return _at_resolution(ids, people, resolution)
