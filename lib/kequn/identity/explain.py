"""Why records share a one_id: the identifiers that joined them, day by day.

``silver.identity_edges(as_of, source, source_key, id_type, id_token)`` holds each day's linking
edges (valid identifiers that passed the shared-point guard). Two records of one person are linked
when they hold the same (id_type, id_token); a one_id's records are connected through such pairs.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .edges import record_vertex

log = logging.getLogger(__name__)

EDGES = "silver.identity_edges"
HISTORY = "silver.one_id_map_history"
EDGES_DDL = "as_of date, source string, source_key string, id_type string, id_token string"
HISTORY_DDL = "as_of date, source string, source_key string, one_id bigint"
EXPLAIN_VIEW = "gold.identity_explain"
EXPLAIN_COLUMNS = ["as_of", "one_id", "source", "source_key", "linked_source", "linked_source_key",
                   "id_type", "id_token"]


def history_day(wh, as_of: Optional[str] = None, strictly_before: bool = False) -> Optional[str]:
    """The latest ``silver.one_id_map_history`` day <= ``as_of`` (< with ``strictly_before``); None if none."""
    if not wh.exists(HISTORY):
        return None
    days = wh.read(HISTORY).select("as_of").distinct()
    if as_of is not None:
        bound = F.lit(as_of).cast("date")
        days = days.where(F.col("as_of") < bound if strictly_before else F.col("as_of") <= bound)
    day = days.agg(F.max("as_of")).collect()[0][0]
    return None if day is None else day.isoformat()


def one_id_map_as_of(wh, as_of: str) -> DataFrame:
    """``(source, source_key, one_id)`` of the latest history day <= ``as_of`` (empty if none)."""
    day = history_day(wh, as_of)
    if day is None:
        return wh.spark.createDataFrame([], "source string, source_key string, one_id bigint")
    return (wh.read(HISTORY).where(F.col("as_of") == F.lit(day).cast("date"))
            .select("source", "source_key", "one_id"))


# Readers join facts to the day's map (record -> one_id). A map of up to this many records is broadcast:
# the facts are then joined where they are read, not shuffled and sorted by record first. At 1,000,000
# persons (2.6M records, 42M transactions) the tags' transaction pass took 44.7 s broadcast and 87.2 s
# shuffled. Each task holds the hashed map, some 80 bytes a record (200 MB there).
BROADCAST_MAP_ROWS = 6_000_000


def small_map(id_map: DataFrame, limit: Optional[int] = None) -> DataFrame:
    """``id_map`` with a broadcast hint when it has at most ``limit`` (``BROADCAST_MAP_ROWS``) rows.

    A session that turned broadcast joins off (``spark.sql.autoBroadcastJoinThreshold`` -1, as a
    cluster with small executors may) gets no hint: the hint would override that choice.
    """
    if id_map.sparkSession.conf.get("spark.sql.autoBroadcastJoinThreshold", "10MB").strip() == "-1":
        log.info("identity: broadcast joins are off in this session; the day's map is joined by shuffle")
        return id_map
    limit = BROADCAST_MAP_ROWS if limit is None else limit
    n = id_map.count()
    log.info("identity: the day's map holds %d records; %s", n,
             "broadcast to its readers" if n <= limit else f"above {limit}, joined by shuffle")
    return F.broadcast(id_map) if n <= limit else id_map


def with_one_id(df: DataFrame, id_map: DataFrame, source: Column | str, source_key: Column,
                hashed: Callable[[Column, Column], Column] = record_vertex) -> DataFrame:
    """The rows of ``df`` whose record (``source``, ``source_key``: column expressions over ``df``) is in
    ``id_map``, each with the record's ``one_id``; the other rows are left out. ``source`` a string: every
    row names a record of that source.

    Joined on the record's 64-bit hash (``hashed``), the two strings compared on each match: a broadcast
    map is then probed by a long, not hashed and compared as two strings. At 1,000,000 persons 10M
    transactions were joined in 4.6-4.7 s against 6.0-7.6 s (warm, 2026-12-07). The comparison sits in
    ``coalesce`` so that Spark keeps it out of the join keys; records whose hashes collide stay apart.
    Hidden there, it no longer tells Spark that rows of one source need only that source's records: the
    map is cut to them here (in one session the holdings' pass, 6M rows, took 9.3-9.5 s with the whole
    map and 7.9-8.5 s with the cut one).
    """
    if isinstance(source, str):
        id_map, source = id_map.where(F.col("source") == source), F.lit(source)
    m = id_map.select(hashed(F.col("source"), F.col("source_key")).alias("_mh"), F.col("source").alias("_ms"),
                      F.col("source_key").alias("_mk"), "one_id")
    d = df.withColumns({"_ds": source.cast("string"), "_dk": source_key.cast("string")})
    d = d.withColumn("_dh", hashed(F.col("_ds"), F.col("_dk")))
    same = F.coalesce((F.col("_ds") == F.col("_ms")) & (F.col("_dk") == F.col("_mk")), F.lit(False))
    return d.join(m, (F.col("_dh") == F.col("_mh")) & same).drop("_ds", "_dk", "_dh", "_mh", "_ms", "_mk")


def linked_pairs(edges: DataFrame, members: DataFrame) -> DataFrame:
    """Pairs of member records holding the same identifier, each pair once (smaller record first).

    ``edges(source, source_key, id_type, id_token)``, ``members(source, source_key, one_id)``.
    """
    e = edges.join(members, ["source", "source_key"])
    a = e.select("one_id", "source", "source_key", "id_type", "id_token")
    b = e.select(F.col("one_id").alias("_b_one_id"), F.col("source").alias("linked_source"),
                 F.col("source_key").alias("linked_source_key"), F.col("id_type").alias("_b_type"),
                 F.col("id_token").alias("_b_token"))
    return (a.join(b, (a.id_type == b._b_type) & (a.id_token == b._b_token) & (a.one_id == b._b_one_id))
            .where(F.struct("source", "source_key") < F.struct("linked_source", "linked_source_key"))
            .select("one_id", "source", "source_key", "linked_source", "linked_source_key", "id_type", "id_token"))


def explain(wh, one_id: int, as_of: Optional[str] = None) -> DataFrame:
    """The records ``one_id`` holds and, for each linked pair, the identifier that joined them.

    Columns: as_of, one_id, source, source_key, linked_source, linked_source_key, id_type, id_token.
    One row per record with the linked_* and id_* columns null, then one row per (pair, identifier).
    ``as_of`` defaults to the latest identity run.
    """
    spark = wh.spark
    day = history_day(wh, as_of)
    if day is None:
        return spark.createDataFrame([], ", ".join(
            f"{c} {'date' if c == 'as_of' else 'bigint' if c == 'one_id' else 'string'}" for c in EXPLAIN_COLUMNS))
    day_col = F.lit(day).cast("date")
    members = (wh.read(HISTORY).where((F.col("as_of") == day_col) & (F.col("one_id") == F.lit(int(one_id))))
               .select("source", "source_key", "one_id"))
    edges = (wh.read_or_empty(EDGES, EDGES_DDL).where(F.col("as_of") == day_col)
             .select("source", "source_key", "id_type", "id_token"))
    null = F.lit(None).cast("string")
    records = members.select("one_id", "source", "source_key", null.alias("linked_source"),
                             null.alias("linked_source_key"), null.alias("id_type"), null.alias("id_token"))
    out = records.unionByName(linked_pairs(edges, members)).withColumn("as_of", day_col)
    return out.select(*EXPLAIN_COLUMNS).orderBy(
        F.col("linked_source").isNotNull(), "source", "source_key", "linked_source", "linked_source_key",
        "id_type", "id_token")


def create_explain_view(wh) -> None:
    """``gold.identity_explain``: every day's linked pairs per one_id, as a SQL view (session catalog)."""
    if not (wh.exists(EDGES) and wh.exists(HISTORY)):
        return
    wh.register(EDGES)
    wh.register(HISTORY)
    wh.spark.sql(f"""
        CREATE OR REPLACE VIEW {EXPLAIN_VIEW} AS
        WITH e AS (
          SELECT e.as_of, h.one_id, e.source, e.source_key, e.id_type, e.id_token
          FROM {EDGES} e JOIN {HISTORY} h
            ON h.as_of = e.as_of AND h.source = e.source AND h.source_key = e.source_key)
        SELECT a.as_of, a.one_id, a.source, a.source_key, b.source AS linked_source,
               b.source_key AS linked_source_key, a.id_type, a.id_token
        FROM e a JOIN e b
          ON a.as_of = b.as_of AND a.one_id = b.one_id AND a.id_type = b.id_type AND a.id_token = b.id_token
         AND struct(a.source, a.source_key) < struct(b.source, b.source_key)
    """)
