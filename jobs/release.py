"""What an earlier monthly release published, recomputed (a margin of this month's tables).

The gate and the optional noise are deterministic functions of the homes, the config and
the release's month, so re-gating the baseline month's homes gives back exactly what
that month's own run published.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from jobs import gate, noise, residence
from mobiterra.config import RunConfig


def released_residents(
    homes_df: DataFrame, cfg: RunConfig, month: str
) -> tuple[DataFrame, DataFrame]:
    """(published_df, marked_df) of the ``residents`` table of ``month``'s release."""
    counts_df = residence.count_residents(homes_df, cfg.resolutions)
    counts_df = noise.with_configured_noise(counts_df, gate.RESIDENTS, cfg.privacy, month)
    return gate.apply(counts_df, gate.RESIDENTS, cfg.k)
