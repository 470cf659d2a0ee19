"""Draws that depend on what a row is, not where it sits.

Spark's seeded ``sample`` and ``randomSplit`` draw per partition in row order, so the same seed picks
other rows when a plan stores them in another order (a join strategy, adaptive execution, the number
of tasks). A hash of the row's key and a salt gives each row the same draw in every plan and every run,
and a person's draw does not move when other persons come or go.
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

RESOLUTION = 1_000_000


def unit_draw(*parts: Column) -> Column:
    """A deterministic draw in [0, 1) with steps of 1 / RESOLUTION, from xxhash64 of ``parts``."""
    return F.pmod(F.xxhash64(*parts), F.lit(RESOLUTION)) / float(RESOLUTION)
