"""Tag values in their published shapes: the wide profile, the long form and the catalog table."""
from __future__ import annotations

import json
from typing import Iterable, Mapping, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .catalog import Catalog

# File statistics of gold.tag_values: the columns `kequn maintain` may Z-order it by (pipeline.yaml), which
# Delta requires statistics for. Each file holds every tag of its persons, so tag_value's min and max skip
# nothing unless the table is clustered by it; collecting them cost 5 s of a 28 s write of 89M rows
# (1,000,000 persons, 2026-12-06).
TAG_VALUES_STATS = ("one_id", "tag_code")

TAG_CATALOG_SCHEMA = ("tag_code string, name_zh string, name_en string, category string, kind string, "
                      "value_type string, description string, coverage double, as_of date, definition string, "
                      "value_distribution string, gate_status string, gate_reason string")


def profile(wide: DataFrame, codes: Iterable[str], catalog: Catalog, as_of: str) -> DataFrame:
    """one_id, as_of, then one typed column per tag (in ``codes`` order)."""
    by = catalog.by_code
    cols = [F.col(c).cast(by[c].spark_type).alias(c) if c in wide.columns
            else F.lit(None).cast(by[c].spark_type).alias(c) for c in codes]
    return wide.select(F.col("one_id").cast("bigint"), F.lit(as_of).cast("date").alias("as_of"), *cols)


def long_form(profile_df: DataFrame, codes: list[str], keys: tuple[str, ...] = ("as_of", "one_id")) -> DataFrame:
    """(as_of, one_id, tag_code, tag_value): one row per person per tag, tag_value (the string form) null
    when no value. ``keys``: the columns kept before tag_code."""
    if not codes:
        return profile_df.select(*keys, F.lit(None).cast("string").alias("tag_code"),
                                 F.lit(None).cast("string").alias("tag_value")).where("false")
    # One array of (tag_code, tag_value) per person, made rows by inline(). stack() would be the plainer
    # spelling, but Spark compiles it only up to 50 rows (Stack.supportCodegen) and evaluates it row by row
    # beyond: the 72 tags of 1.24M persons (89M rows, to a no-op sink) took 13.0-18.1 s as one stack and
    # 6.6-7.5 s this way (2026-12-07, BENCHMARKS.md).
    pairs = [F.struct(F.lit(c).alias("tag_code"), F.col(f"`{c}`").cast("string").alias("tag_value")) for c in codes]
    return profile_df.select(*keys, F.inline(F.array(*pairs)))


def wide_form(long_df: DataFrame, types: Mapping[str, str]) -> DataFrame:
    """The inverse of :func:`long_form`: one row per person of ``long_df``, one column per tag of ``types``
    (tag -> Spark type) cast back from its string form, null where the person has no value.

    One map of the wanted tags per person (empty for a person with none of them), then one column per
    tag: one aggregation where pivot() also needed the distinct persons and a join (the 8.8M rows of
    100,000 persons and 72 tags: 65 s with pivot, 43 s this way, both including the tag gates' bins).
    """
    tv = long_df.select(F.col("one_id").cast("bigint").alias("one_id"), "tag_code", "tag_value")
    if not types:
        return tv.select("one_id").distinct()
    wanted = F.when(F.col("tag_code").isin(list(types)), F.struct("tag_code", "tag_value"))
    wide = tv.groupBy("one_id").agg(F.map_from_entries(F.collect_list(wanted)).alias("_m"))
    return wide.select("one_id", *[_from_string(F.col("_m")[t], st).alias(t) for t, st in types.items()])


def _from_string(col, spark_type: str):
    if spark_type == "boolean":
        return F.lower(F.trim(col)).cast("boolean")
    return col.cast(spark_type) if spark_type != "string" else col


def withheld_nulled(profile_df: DataFrame, withheld: Iterable[str]) -> DataFrame:
    """The profile with the columns of withheld tags set to null (schema unchanged)."""
    withheld = set(withheld)
    return profile_df.select(*[F.lit(None).cast(f.dataType).alias(f.name) if f.name in withheld else F.col(f.name)
                               for f in profile_df.schema.fields])


def catalog_rows(catalog: Catalog, codes: list[str], as_of: str, gate: dict, distribution: dict) -> list[tuple]:
    """Rows of gold.tag_catalog (one per tag) from the gate results and value distributions."""
    import datetime as dt
    day = dt.date.fromisoformat(as_of)
    rows = []
    for c in codes:
        t = catalog.get(c)
        g = gate.get(c)
        rows.append((t.code, t.name_zh, t.name_en, t.category, t.kind, t.value_type, t.description.strip(),
                     None if g is None or g.coverage is None else float(g.coverage), day, t.definition_sql(),
                     json.dumps(distribution.get(c, {}), ensure_ascii=False, sort_keys=True),
                     None if g is None else g.status, None if g is None else g.reason))
    return rows


def catalog_frame(spark, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, TAG_CATALOG_SCHEMA)
