"""mobiterra: privacy-safe mobility statistics on the H3 grid from antenna traces."""

__version__ = "0.1.0"
