"""Draws that depend on what a row is, not where it sits.

Spark's seeded ``sample`` and ``randomSplit`` draw per partition in row order, so the same seed picks
other rows when a plan stores them in another order (a join strategy, adaptive execution, the number
of tasks). A hash of the row's key and a salt gives each row the same draw in every plan and every run,
and a person's draw does not move when other persons come or go.
"""
from __future__ import annotations

from typing import Optional

from pyspark.sql import Column
from pyspark.sql import functions as F

RESOLUTION = 1_000_000


def unit_draw(*parts: Column) -> Column:
    """A deterministic draw in [0, 1) with steps of 1 / RESOLUTION, from xxhash64 of ``parts``."""
    return F.pmod(F.xxhash64(*parts), F.lit(RESOLUTION)) / float(RESOLUTION)


def person_draw(seed: int) -> Column:
    """A person's draw for a fit seeded with ``seed`` (the need models' sample and split, k-means' sample)."""
    return unit_draw(F.lit(int(seed)), F.col("one_id"))


def fraction_for(n: int, at_most: Optional[int]) -> float:
    """The share of ``n`` persons to draw for about ``at_most`` of them: 1 without a bound or above it."""
    return 1.0 if at_most is None or n <= at_most else at_most / n
