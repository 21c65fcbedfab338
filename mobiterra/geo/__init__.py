"""Real French geography, offline (data: INSEE, IGN — Licence Ouverte 2.0)."""

from mobiterra.geo.france import cache_dir, communes, departements, regions
from mobiterra.geo.grid import cells_to_communes, population_grid

__all__ = [
    "cache_dir",
    "cells_to_communes",
    "communes",
    "departements",
    "population_grid",
    "regions",
]
