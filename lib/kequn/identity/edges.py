"""Records, their valid identifiers, and integral vertex ids for both.

A *record* is one master-data row (source, source_key) as of a day. Its *identifiers* are the
normalised tokens of ``kequn.landing.IDENTIFIER_COLUMNS`` that are valid: ``<id>_valid`` where bronze
has such a flag (mobile, id_no, device_id), non-empty otherwise (cust_no, unionid). ``app_user.cust_no``
names the bound core customer, so it is the same identifier as ``core_customer.cust_no``.

A record's vertex id is a 64-bit hash of ``(source, source_key)`` (:func:`record_vertex`): computed
where a row names its record, with no table to keep and no join to look it up. Only records are
vertices (the graph is contracted over identifiers). Should two of the day's records ever share a
hash, the day numbers its records instead (:func:`graph_vertices`), so no two records are one vertex.
"""
from __future__ import annotations

from functools import reduce
from typing import Mapping, Optional

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ..landing import IDENTIFIER_COLUMNS, MASTER_SOURCES, SOURCES
from .numbering import numbered

RECORD_IDS_DDL = "source string, source_key string, id_type string, id_token string"


def _valid(df: DataFrame, column: str) -> F.Column:
    value = F.col(column)
    present = value.isNotNull() & (F.trim(value) != "")
    flag = column[:-len("_token")] + "_valid" if column.endswith("_token") else column + "_valid"
    if flag in df.columns:
        return present & F.coalesce(F.col(flag), F.lit(False))
    return present


def listed_identifiers(master: DataFrame, source: str) -> DataFrame:
    """``(source, source_key, ids)``: each record of one master source (already as of the day) with the
    array of its distinct valid identifiers, ``struct(id_type, id_token)`` (empty when it has none).

    Records and their identifiers are both read from this one frame, so that the day's master versions
    are resolved once rather than once for each.
    """
    key = SOURCES[source].key[0]
    ids = [F.when(_valid(master, column), F.struct(F.lit(id_type).alias("id_type"),
                                                   F.col(column).cast("string").alias("id_token")))
           for column, id_type in IDENTIFIER_COLUMNS[source].items()]
    return master.select(F.lit(source).alias("source"), F.col(key).cast("string").alias("source_key"),
                         F.array_distinct(F.array_compact(F.array(*ids))).alias("ids"))


def records_of(listed: DataFrame) -> DataFrame:
    """``(source, source_key)`` of each record of :func:`listed_identifiers`."""
    return listed.select("source", "source_key")


def identifiers_in(listed: DataFrame) -> DataFrame:
    """``(source, source_key, id_type, id_token)``: one row per valid identifier of each record."""
    return (listed.select("source", "source_key", F.explode("ids").alias("_id"))
            .select("source", "source_key", "_id.id_type", "_id.id_token"))


def master_frames(wh, as_of: str) -> dict[str, DataFrame]:
    """Each master source's rows as of the day (sources not yet loaded are skipped)."""
    from ..bronze import master_as_of, table_name

    return {s: master_as_of(wh, s, as_of) for s in MASTER_SOURCES if wh.exists(table_name(s))}


def all_listed_identifiers(masters: Mapping[str, DataFrame]) -> DataFrame:
    return reduce(DataFrame.unionByName, [listed_identifiers(df, s) for s, df in masters.items()])


# ----------------------------------------------------------------------------------- vertex ids

def record_vertex(source: Optional[Column] = None, source_key: Optional[Column] = None) -> Column:
    """A record's vertex id, from the ``source`` and ``source_key`` columns of the row naming it (or the
    columns given).

    Spark's xxhash64: the same id for a record every day and in every job, without an id table (an
    append-only dictionary of records and identifiers was joined with every key of the day: at
    5,000,000 persons 143 s of the first run's identity stage and 73 s of the daily one).
    """
    return F.xxhash64(F.col("source") if source is None else source,
                      F.col("source_key") if source_key is None else source_key)


def shared_vertices(record_ids: DataFrame) -> int:
    """How many vertex ids of ``record_ids(source, source_key, record_vertex)`` two records or more hold."""
    return record_ids.groupBy("record_vertex").count().where("count > 1").count()


def graph_vertices(records: DataFrame, linking: DataFrame, vertex: Optional[Column] = None
                   ) -> tuple[DataFrame, DataFrame, int]:
    """``(record_ids, linked, shared)``: each record with its vertex (``source, source_key,
    record_vertex``), each linking row of ``linking(source, source_key, id_type, id_token)`` with its
    record's vertex, and how many hashed ids two records held.

    ``vertex`` (default :func:`record_vertex`) gives the ids. Two records sharing one would be one
    vertex, merging strangers; with a 64-bit hash the chance is n^2 / 2^65 a day for n records (once in
    5 million days at 2.6M records, in 200,000 at 13M, 3 % a day at a billion). Then the day's records
    are numbered 1, 2, ... in ``(source, source_key)`` order instead, and the linking rows join them.
    """
    vertex = vertex if vertex is not None else record_vertex()
    record_ids = records.select("source", "source_key", vertex.alias("record_vertex"))
    shared = shared_vertices(record_ids)
    if not shared:
        return record_ids, linking.withColumn("record_vertex", vertex), 0
    numbered_ids = numbered(records.select("source", "source_key"), ["source", "source_key"], "record_vertex")
    numbered_ids = numbered_ids.localCheckpoint(eager=True)
    return numbered_ids, linking.join(numbered_ids, ["source", "source_key"]), shared


# ----------------------------------------------------------------------------------- graph edges

def contracted_edges(linked: DataFrame, by=("id_type", "id_token")) -> DataFrame:
    """Record -- record edges: each identifier links its records to its smallest record (one aggregation).

    The components over records are those of the bipartite graph, with no identifier vertices and
    ``sum(degree - 1)`` edges instead of ``sum(degree)``.
    """
    w = Window.partitionBy(*by)
    return (linked.select("record_vertex", F.min("record_vertex").over(w).alias("_root"))
            .where(F.col("record_vertex") != F.col("_root"))
            .select(F.col("record_vertex").alias("src"), F.col("_root").alias("dst"))
            .distinct())
