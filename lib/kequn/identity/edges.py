"""Records, their valid identifiers, and integral vertex ids for both.

A *record* is one master-data row (source, source_key) as of a day. Its *identifiers* are the
normalised tokens of ``kequn.landing.IDENTIFIER_COLUMNS`` that are valid: ``<id>_valid`` where bronze
has such a flag (mobile, id_no, device_id), non-empty otherwise (cust_no, unionid). ``app_user.cust_no``
names the bound core customer, so it is the same identifier as ``core_customer.cust_no``.

Vertex ids come from the append-only dictionary ``silver.identity_vertex_dictionary(kind, ns, key,
vertex)``: ``kind`` is ``record`` (ns = source, key = source_key) or ``identifier`` (ns = id_type,
key = id_token). A key keeps its id forever; new keys get ids above the current maximum, in key order.
"""
from __future__ import annotations

from functools import reduce
from typing import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..landing import IDENTIFIER_COLUMNS, MASTER_SOURCES, SOURCES
from .numbering import numbered

RECORD = "record"
IDENTIFIER = "identifier"
DICTIONARY = "silver.identity_vertex_dictionary"
DICTIONARY_DDL = "kind string, ns string, key string, vertex bigint"
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

def vertex_keys(records: DataFrame, identifiers: DataFrame) -> DataFrame:
    """Every dictionary key the day needs: its records ``(source, source_key)`` and its linking
    identifiers ``(id_type, id_token)``, each given once (records as of a day are; identifiers are
    once the guard's degrees have grouped them).

    Not made distinct here: the keys of 1,000,000 persons took 3-8 s more to key that way, the
    identifiers being repeated once per record holding them.
    """
    return (records.select(F.lit(RECORD).alias("kind"), F.col("source").alias("ns"), F.col("source_key").alias("key"))
            .unionByName(identifiers.select(F.lit(IDENTIFIER).alias("kind"), F.col("id_type").alias("ns"),
                                            F.col("id_token").alias("key"))))


def keyed_vertices(keys: DataFrame, dictionary: DataFrame) -> DataFrame:
    """``(kind, ns, key, vertex)``: each of ``keys`` with its dictionary vertex, null when it has none yet.

    One join tells both which keys are new and the vertex of every other one.
    """
    return keys.join(dictionary.select("kind", "ns", "key", "vertex"), ["kind", "ns", "key"], "left")


def new_dictionary_entries(keyed: DataFrame, top: int) -> DataFrame:
    """The keys of ``keyed`` without a vertex, numbered ``top`` + 1, + 2, ... in (kind, ns, key) order
    (``top``: the dictionary's largest vertex, 0 when empty)."""
    missing = keyed.where(F.col("vertex").isNull()).select("kind", "ns", "key")
    return numbered(missing, ["kind", "ns", "key"]).select(
        "kind", "ns", "key", (F.lit(int(top)) + F.col("_n")).cast("bigint").alias("vertex"))


def record_vertices(vertices: DataFrame) -> DataFrame:
    """``(source, source_key, record_vertex)`` of the records among ``vertices(kind, ns, key, vertex)``."""
    return vertices.where(F.col("kind") == RECORD).select(
        F.col("ns").alias("source"), F.col("key").alias("source_key"), F.col("vertex").alias("record_vertex"))


# ----------------------------------------------------------------------------------- graph edges

def bipartite_edges(linked: DataFrame) -> DataFrame:
    """Record vertex -- identifier vertex, from rows carrying ``record_vertex`` and ``identifier_vertex``."""
    return linked.select(F.col("record_vertex").alias("src"), F.col("identifier_vertex").alias("dst"))


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
