"""The bronze layer read as of a day: what every later stage starts from.

Bronze keeps every delivered version (master data) and every delivered fact
with the batch date it came in (``_batch_dt``), so any day ``D`` can be
re-derived: master data is the latest ``updated_at`` per key among batches
dated on or before ``D``; facts count when their batch and their event time are
both on or before ``D``. Re-running an old day therefore reproduces it.

Bronze columns are the landing columns with personal data replaced by tokens
(``name`` -> ``name_token``, ``id_no`` -> ``id_no_token``, ``mobile`` ->
``mobile_token``, ``card_no`` -> ``card_no_token``), plus per identifier
``<id>_valid`` and ``<id>_invalid_reason``, plus ``_batch_dt``, ``_file``,
``_line``, ``_row_hash``, ``_extra`` and ``_ingested_at``.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .landing import MASTER, SOURCES
from .tables import Warehouse


def table_name(source: str) -> str:
    return f"bronze.{source}"


def _up_to(df: DataFrame, as_of: str) -> DataFrame:
    return df.where(F.col("_batch_dt") <= F.lit(as_of).cast("date"))


def master_as_of(wh: Warehouse, source: str, as_of: str) -> DataFrame:
    """One row per key: the version with the latest ``updated_at`` delivered by ``as_of``."""
    spec = SOURCES[source]
    assert spec.kind == MASTER, source
    df = _up_to(wh.read(table_name(source)), as_of)
    return latest_version(df, list(spec.key), spec.version_column)


def latest_version(df: DataFrame, keys: list[str], version_column: str) -> DataFrame:
    # Ties on updated_at are broken by the row's content hash, so the winner never depends on file order.
    w = Window.partitionBy(*keys).orderBy(F.col(version_column).desc_nulls_last(), F.col("_row_hash").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def facts_as_of(wh: Warehouse, source: str, as_of: str) -> DataFrame:
    """Facts delivered by ``as_of`` whose own time is on or before ``as_of``."""
    spec = SOURCES[source]
    df = _up_to(wh.read(table_name(source)), as_of)
    if source == "touch":
        df = touches_resolved(df)
    return df.where(F.to_date(F.col(spec.time_column)) <= F.lit(as_of).cast("date"))


def touches_resolved(df: DataFrame) -> DataFrame:
    """Per touch_id the row of the latest batch; within a batch the one with more timestamps filled."""
    filled = (F.col("opened_time").isNotNull().cast("int") + F.col("converted_time").isNotNull().cast("int"))
    w = Window.partitionBy("touch_id").orderBy(F.col("_batch_dt").desc(), filled.desc(), F.col("_row_hash").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")
