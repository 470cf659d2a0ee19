"""Consecutive numbers in a total order, without gathering every row into one task.

Vertex ids and new one_ids are numbered 1, 2, 3... in key order so that a re-run issues the same
ids. ``row_number()`` over a window with no partition does that by moving all rows to a single
task (Spark warns "No Partition Defined for Window operation"): fine for a daily handful of new
keys, a one-core sort of every key on a first run at millions of persons.

Here the rows are range-partitioned on the order, so that every row of partition ``p`` sorts
before every row of ``p + 1``; each partition numbers its own rows, and adds the row counts of the
partitions before it (a table of one row per partition, broadcast). The numbers are those of
``row_number()`` over the whole frame.
"""
from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def numbered(df: DataFrame, order: list[str], column: str = "_n", partitions: Optional[int] = None) -> DataFrame:
    """``df`` with ``column`` = 1, 2, ... in ``order`` (ascending, keys distinct).

    ``partitions``: how many ranges (default: the session's shuffle partitions, coalesced by AQE).
    """
    ranged = (df.repartitionByRange(partitions, *order) if partitions else df.repartitionByRange(*order))
    ranged = ranged.withColumn("_part", F.spark_partition_id())
    # Materialised once: each use of a range exchange samples its input again, and the bounds (so the
    # partition of a row) could differ between the numbering and the counting if the input's row
    # order did.
    local = (ranged.withColumn("_i", F.row_number().over(Window.partitionBy("_part").orderBy(*order)))
             .localCheckpoint(eager=True))
    # Rows before each partition: a join of the per-partition counts with themselves (a few hundred
    # rows at most), where a running sum would be another window without a partition.
    sizes = local.groupBy("_part").agg(F.count(F.lit(1)).alias("_rows"))
    before = (sizes.select("_part").join(sizes.select(F.col("_part").alias("_p"), "_rows"),
                                         F.col("_p") < F.col("_part"), "left")
              .groupBy("_part").agg(F.coalesce(F.sum("_rows"), F.lit(0)).alias("_before")))
    return (local.join(F.broadcast(before), "_part")
            .withColumn(column, F.col("_before") + F.col("_i"))
            .drop("_part", "_i", "_before"))
