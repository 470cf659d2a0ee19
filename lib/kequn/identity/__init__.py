"""The identity stage (ONE_ID): master-data records linked into persons with stable one_ids.

Per run day ``as_of``:

1. records of the four master sources as of the day, and their valid identifiers (:mod:`.edges`);
2. the shared-point guard: blocklist and per-type degree limits (:mod:`.guard`);
3. each record's vertex id, a hash of its key (:func:`.edges.graph_vertices`); the bipartite
   record--identifier graph contracted to record--record edges; connected components by the
   configured engine (:mod:`.components`);
4. components mapped onto the previous day's one_ids (:mod:`.stable`);
5. outputs staged, checked by the quality gate, then written (idempotent per day).

Tables written: ``gold.one_id_map`` (replaced), ``silver.one_id_map_history`` (as_of partition),
``gold.one_id_lineage`` (as_of partition), ``gold.identity_shared_identifiers`` (replaced),
``gold.identity_health`` (as_of partition), ``silver.identity_edges`` (as_of partition).
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .components import components
from .edges import all_listed_identifiers, contracted_edges, graph_vertices, identifiers_in, master_frames, records_of
from .explain import (EDGES, HISTORY, create_explain_view, explain, history_day, one_id_map_as_of, small_map,
                      with_one_id)
from .guard import blocklisted, degrees, linking_identifiers, over_limit
from .stable import HISTORY_DDL, event_counts, lineage, one_id_decisions, one_id_map

__all__ = ["run", "one_id_map_as_of", "small_map", "with_one_id", "explain", "components", "previous_map"]

log = logging.getLogger(__name__)

MAP = "gold.one_id_map"
SHARED = "gold.identity_shared_identifiers"
LINEAGE = "gold.one_id_lineage"
HEALTH = "gold.identity_health"
WRITES = (MAP, SHARED, LINEAGE, HEALTH, EDGES, HISTORY)  # kequn.pipeline.tables_written_by

# Written until b25ae96 (vertex ids from a dictionary; now hashes of the records' keys). It holds the record keys
# and identifier tokens of every person ever seen, and having no source/source_key columns it was out of reach of
# ``kequn forget``'s deletes. Nothing reads it now: the next identity run or forget removes it whole.
LEGACY_DICTIONARY = "silver.identity_vertex_dictionary"

HEALTH_COLUMNS = ["records", "identifiers", "edges", "graph_edges", "components", "largest_component",
                  "blocked_identifiers", "shared_identifiers", "one_ids_kept", "one_ids_merged",
                  "one_ids_split", "one_ids_created"]


def previous_map(wh, as_of: str) -> tuple[DataFrame, int]:
    """The map of the latest history day strictly before ``as_of``, and the largest id issued before it."""
    day = history_day(wh, as_of, strictly_before=True)
    if day is None:
        return wh.spark.createDataFrame([], "source string, source_key string, one_id bigint"), 0
    hist = wh.read(HISTORY)
    prev = hist.where(F.col("as_of") == F.lit(day).cast("date")).select("source", "source_key", "one_id")
    if wh.holds_day_after(HISTORY, day):
        # A re-run or a backfill: only the days before this one count.
        top = hist.where(F.col("as_of") < F.lit(as_of).cast("date")).agg(F.max("one_id")).first()[0]
    else:
        # Every day held is before this one. Unfiltered, Delta answers MAX from its file statistics; a
        # filter on the day would read every day's map again, a cost growing with the history kept.
        top = hist.agg(F.max("one_id")).first()[0]
    return prev, int(top or 0)


def drop_legacy_dictionary(wh) -> Optional[int]:
    """Remove :data:`LEGACY_DICTIONARY` if the warehouse still has it: the rows it held, or None."""
    if not wh.exists(LEGACY_DICTIONARY):
        return None
    rows = wh.read(LEGACY_DICTIONARY).count()   # from the table's log: no data file is read
    wh.drop(LEGACY_DICTIONARY)
    log.info("identity: %s removed (%d rows): no longer used (vertex ids are hashes of the records' keys), and "
             "it held every person's record keys and identifier tokens", LEGACY_DICTIONARY, rows)
    return rows


def run(spark: SparkSession, wh, as_of: str, config) -> dict[str, int]:
    """Link records into persons for day ``as_of``; returns row counts per written table."""
    from ..quality import gate

    icfg = config.identity
    t_start = time.perf_counter()
    masters = master_frames(wh, as_of)
    if not masters:
        raise RuntimeError(f"identity {as_of}: no master-data table in bronze; run ingest first")
    log.info("identity %s: sources %s", as_of, sorted(masters))

    record_lists = all_listed_identifiers(masters).localCheckpoint(eager=True)
    records = records_of(record_lists)
    record_ids = identifiers_in(record_lists)
    log.info("identity %s: records and their identifiers read at %.1f s", as_of, time.perf_counter() - t_start)

    # Shared-point guard.
    deg = degrees(record_ids).localCheckpoint(eager=True)
    shared = over_limit(deg, icfg.degree_limits)
    listed = blocklisted(deg, icfg.blocklist)
    blocked = shared.unionByName(listed).select("id_type", "id_token").distinct()
    linking = linking_identifiers(record_ids, blocked)
    day = F.lit(as_of).cast("date")
    staged_shared = wh.stage(shared, SHARED)
    staged_edges = wh.stage(linking.select(day.alias("as_of"), "source", "source_key", "id_type", "id_token"), EDGES)
    linking = staged_edges.drop("as_of")
    log.info("identity %s: shared points guarded, edges staged at %.1f s", as_of, time.perf_counter() - t_start)

    # Graph and components.
    rec_v, linked, shared_ids = graph_vertices(records, linking)
    if shared_ids:
        log.warning("identity %s: %d record hash(es) held by two records or more; the day's records are "
                    "numbered instead", as_of, shared_ids)
    graph = contracted_edges(linked).localCheckpoint(eager=True)
    n_graph = graph.count()
    t0 = time.perf_counter()
    comps = components(graph, icfg.engine, local_max_edges=icfg.local_max_edges).localCheckpoint(eager=True)
    t_cc = time.perf_counter() - t0
    log.info("identity %s: graph of %d edges built, components found at %.1f s", as_of, n_graph,
             time.perf_counter() - t_start)
    current = (rec_v.join(comps.withColumnRenamed("vertex", "record_vertex"), "record_vertex", "left")
               .select("source", "source_key", F.coalesce("component", "record_vertex").alias("component"))
               .localCheckpoint(eager=True))

    # Stable ids.
    previous, max_issued = previous_map(wh, as_of)
    staged_decisions = one_id_decisions(current, previous, max_issued).localCheckpoint(eager=True)
    staged_map = wh.stage(one_id_map(current, staged_decisions), MAP)
    staged_lineage = wh.stage(lineage(staged_decisions, as_of), LINEAGE)
    log.info("identity %s: one_ids matched with the previous day at %.1f s", as_of, time.perf_counter() - t_start)

    sizes = staged_map.groupBy("one_id").count()
    size_row = sizes.agg(F.count(F.lit(1)).alias("n"), F.max("count").alias("mx")).collect()[0]
    figures = {
        "records": staged_map.count(),
        "identifiers": deg.count(),
        "edges": staged_edges.count(),
        "graph_edges": n_graph,
        "components": int(size_row["n"] or 0),
        "largest_component": int(size_row["mx"] or 0),
        "blocked_identifiers": blocked.count(),
        "shared_identifiers": staged_shared.count(),
        **event_counts(staged_decisions),
    }
    # Share of distinct valid identifiers that link nothing (quality bounds it).
    blocked_share = figures["blocked_identifiers"] / figures["identifiers"] if figures["identifiers"] else 0.0
    health = spark.createDataFrame(
        [tuple([None] + [int(figures[c]) for c in HEALTH_COLUMNS] + [float(blocked_share), None, round(t_cc, 3)])],
        "as_of date, " + ", ".join(f"{c} bigint" for c in HEALTH_COLUMNS)
        + ", blocked_share double, engine string, components_seconds double",
    ).withColumn("as_of", day).withColumn("engine", F.lit(icfg.engine))
    staged_health = wh.stage(health, HEALTH)
    log.info("identity %s health: %s (components %.1f s, engine %s) at %.1f s", as_of,
             ", ".join(f"{k}={v}" for k, v in figures.items()), t_cc, icfg.engine, time.perf_counter() - t_start)

    staged_history = staged_map.select(day.alias("as_of"), "source", "source_key", "one_id")
    gate(wh, as_of, {MAP: staged_map, SHARED: staged_shared, LINEAGE: staged_lineage, HEALTH: staged_health,
                     EDGES: staged_edges, HISTORY: staged_history})
    log.info("identity %s: quality gate passed at %.1f s", as_of, time.perf_counter() - t_start)

    # Publication: every write replaces a table or its day, so a re-run after a failure anywhere here
    # converges to the same tables.
    wh.replace_day(staged_edges, EDGES, as_of)
    wh.replace_day(staged_history, HISTORY, as_of)
    if not wh.holds_day_after(HISTORY, as_of):
        # Replaced, not merged: the day's map holds every record, and a MERGE rewrote every file of the
        # table anyway (1M persons: 22 s, where the same rows take 3.3 s as the history's day). Written as
        # gated, the quality stage need not read it again.
        wh.overwrite(staged_map, MAP)
        wh.overwrite(staged_shared, SHARED)
    else:
        # A backfill of an older day: its map is in the history; the current map stays the latest day's.
        log.info("identity %s: a later day is published; %s and %s kept", as_of, MAP, SHARED)
    wh.replace_day(staged_lineage, LINEAGE, as_of)
    wh.replace_day(staged_health, HEALTH, as_of)
    create_explain_view(wh)
    drop_legacy_dictionary(wh)
    log.info("identity %s: published in %.1f s", as_of, time.perf_counter() - t_start)
    return {MAP: figures["records"], HISTORY: figures["records"], EDGES: figures["edges"],
            SHARED: figures["shared_identifiers"], LINEAGE: staged_lineage.count(), HEALTH: 1}
