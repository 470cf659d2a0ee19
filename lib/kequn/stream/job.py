"""The streaming query and what each micro-batch does (``foreachBatch``).

A micro-batch, in this order, every step safe to repeat:

1. parse (batch ingest's parser), validate, pseudonymise -- ``kequn.ingest.parse``;
2. bad rows -> ``bronze.quarantine`` (+ verbatim to ``bronze.pii_vault``), MERGE on (source, file, line);
3. good rows, deduplicated on event_id (``kequn.ingest.deduplicated``) -> ``bronze.event``, MERGE on
   event_id with batch ingest's own rule (insert; an earlier ``_batch_dt`` replaces a later one), so
   stream and daily batch, in either order and any number of times, leave one row per event;
4. this batch's events plus the queue of unresolved ones, joined to ``gold.one_id_map``;
5. ``gold.realtime_activity`` and ``gold.realtime_segment_members`` re-derived for the people touched;
6. ``silver.realtime_unresolved`` rewritten (still unknown, within retention);
7. one row of metrics appended to ``silver.stream_batches`` with Delta's idempotent-write options
   (``txnAppId`` = the query's id, ``txnVersion`` = batch id), so a replayed batch adds no second row.

The checkpoint (``<warehouse>/_checkpoints/stream_event``) records which files/offsets each batch
holds; a batch interrupted anywhere is replayed whole and, by the above, changes nothing twice.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from functools import reduce
from typing import Callable, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..ingest import QUARANTINE, VAULT, deduplicated, merge_into_bronze
from ..ingest.parse import CORRUPT, bronze_rows, checked_rows, quarantine_rows, value_col, vault_rows
from ..tables import Warehouse
from . import activity as A
from .rows import COLUMNS, EVENT, MISSING, csv_rows, json_rows, kafka_rows, missing_columns_rule, with_event_date
from .settings import StreamSettings

log = logging.getLogger(__name__)

BRONZE = "bronze.event"
ID_MAP = "gold.one_id_map"
ACTIVITY = "gold.realtime_activity"
MEMBERS = "gold.realtime_segment_members"
UNRESOLVED = "silver.realtime_unresolved"
BATCHES = "silver.stream_batches"
CHECKPOINT = "_checkpoints/stream_event"
BATCHES_SCHEMA = ("query_id string, batch_id bigint, files int, input_rows bigint, loaded bigint, quarantined bigint, "
                  "unresolved bigint, resolved_late bigint, people bigint, segment_triggers bigint, "
                  "started_at timestamp, committed_at timestamp, processing_s double, "
                  "event_latency_s double, arrival_latency_s double")

# Test-only hooks, called with the batch id at the named point ("after_bronze").
HOOKS: dict[str, Callable[[int], None]] = {}


def _concurrency_errors() -> tuple[type, ...]:
    from delta.exceptions import (ConcurrentAppendException, ConcurrentDeleteReadException,
                                  ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException)
    return (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentTransactionException,
            ConcurrentWriteException, MetadataChangedException)


def _retrying(what: str, fn: Callable[[], None], attempts: int = 4) -> None:
    """Run a Delta write; retry when the daily batch committed to the same table meanwhile."""
    errors = _concurrency_errors()
    for i in range(attempts):
        try:
            fn()
            return
        except errors as e:
            if i == attempts - 1:
                raise
            log.warning("stream %s: concurrent Delta commit (%s), retry %d", what, type(e).__name__, i + 1)
            time.sleep(0.5 * (i + 1))


class MicroBatch:
    """The ``foreachBatch`` function; also runs queue-only passes (no new events) on demand."""

    def __init__(self, wh: Warehouse, settings: StreamSettings, key: bytes, checkpoint: str):
        self.wh = wh
        self.settings = settings
        self.key = key
        self.checkpoint = checkpoint
        self.lock = threading.Lock()
        self.batches = 0
        self.failed: Optional[BaseException] = None

    # ------------------------------------------------------------------ entry points
    def __call__(self, df: DataFrame, batch_id: int) -> None:
        started = time.time()
        spark = self.wh.spark
        held = None
        if self.settings.format == "kafka":
            # Read from the broker once: the records feed both the metrics and the parse.
            held = df.persist(StorageLevel.MEMORY_AND_DISK)
            first = held.agg(F.min("timestamp").alias("t")).collect()[0]
            arrival, nfiles = (first["t"].timestamp() if first["t"] else None), 0
            raw = kafka_rows(held, self.settings.kafka.get("value.format", "json"))
        else:
            found = df.select("path", "modificationTime").collect()  # at most max_files_per_trigger rows
            files = [r["path"] for r in found]
            arrival = min((r["modificationTime"].timestamp() for r in found), default=None)
            nfiles = len(files)
            if not files:
                return
            raw = csv_rows(spark, files) if self.settings.format == "csv" else json_rows(spark, files)
        with self.lock:
            try:
                self._process(raw, batch_id, started, arrival, nfiles)
            except BaseException as e:  # noqa: BLE001 - kept for run_stream's report, then re-raised
                self.failed = e
                raise
            finally:
                if held is not None:
                    held.unpersist()

    def drain_queue(self) -> None:
        """Resolve queued events of unknown users against the current map (no new events)."""
        if not self.wh.exists(UNRESOLVED) or self.wh.read(UNRESOLVED).isEmpty():
            return
        empty = self.wh.spark.createDataFrame(
            [], ", ".join(f"`{c}` string" for c in COLUMNS) + ", _extra map<string,string>, "
            f"`{CORRUPT}` string, _file string, _batch_dt date, _line long, _raw_fields string, {MISSING} string")
        with self.lock:
            self._process(empty, None, time.time(), None, 0)

    # ------------------------------------------------------------------ the work
    def _process(self, raw: DataFrame, batch_id: Optional[int], started: float, arrival: Optional[float],
                 nfiles: int) -> None:
        wh = self.wh
        spark = wh.spark
        now = time.time()
        now_col = F.timestamp_micros(F.lit(int(now * 1e6)))
        as_of = dt.datetime.fromtimestamp(now, _zone(spark)).date().isoformat()

        checked = with_event_date(checked_rows(raw, EVENT, self.key, [missing_columns_rule()]))
        # Cached, not staged as a table: the rows may hold clear personal data (as in batch ingest).
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
        cached = [checked]
        try:
            t = checked.agg(F.count(F.lit(1)).alias("n"),
                            F.count(F.when(F.col("_reason").isNotNull(), 1)).alias("bad"),
                            F.max(F.when(F.col("_reason").isNull(),
                                         F.unix_micros(F.col(value_col("event_time")))))
                            .alias("max_event")).collect()[0]
            n_in, n_bad, max_event = t["n"], t["bad"], t["max_event"]

            if n_bad:
                q = quarantine_rows(checked.where("_reason IS NOT NULL"), EVENT, as_of)
                vault = reduce(DataFrame.unionByName, vault_rows(checked, EVENT) + [
                    q.select(F.col("raw_token").alias("token"), F.lit("raw_record").alias("pii_type"),
                             F.col("_verbatim").alias("value"))]).dropDuplicates(["token"])
                _retrying("vault", lambda: wh.merge(vault, VAULT, ["token"], update_when="false"))
                _retrying("quarantine", lambda: wh.merge(q.drop("_verbatim"), QUARANTINE,
                                                         ["source", "file", "line"], update_when="false"))

            rows = deduplicated(bronze_rows(checked.where("_reason IS NULL"), EVENT), EVENT)
            if n_in - n_bad:
                rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
                cached.append(rows)
                _retrying("bronze", lambda: merge_into_bronze(wh, rows, EVENT, n_rows=n_in - n_bad))
            if batch_id is not None and "after_bronze" in HOOKS:
                HOOKS["after_bronze"](batch_id)

            people, triggers, unresolved, late = self._realtime(rows, now_col, cached)
            committed = time.time()
            metrics = dict(
                files=nfiles, input_rows=n_in, loaded=n_in - n_bad, quarantined=n_bad, unresolved=unresolved,
                resolved_late=late, people=people, segment_triggers=triggers,
                processing_s=round(committed - started, 3),
                event_latency_s=round(committed - max_event / 1e6, 3) if max_event is not None else None,
                arrival_latency_s=round(committed - arrival, 3) if arrival is not None else None)
            if batch_id is None:
                if late or unresolved:
                    log.info("stream queue pass: resolved_late=%d still_unresolved=%d people=%d", late, unresolved,
                             people)
                return
            self.batches += 1
            log.info("stream batch=%d files=%d input_rows=%d loaded=%d quarantined=%d unresolved=%d "
                     "resolved_late=%d people=%d segment_triggers=%d processing=%.2fs "
                     "latency_event_to_commit=%ss latency_arrival_to_commit=%ss", batch_id, nfiles, n_in,
                     n_in - n_bad, n_bad, unresolved, late, people, triggers, metrics["processing_s"],
                     metrics["event_latency_s"], metrics["arrival_latency_s"])
            self._record(batch_id, started, committed, metrics)
        finally:
            for df in cached:
                df.unpersist()

    def _realtime(self, rows: DataFrame, now_col, cached: list) -> tuple[int, int, int, int]:
        """Steps 4-6; returns (people updated, segment triggers, still unresolved, resolved from queue)."""
        wh = self.wh
        spark = wh.spark
        pending = wh.read_or_empty(UNRESOLVED, A.UNRESOLVED_SCHEMA)
        id_map = wh.read_or_empty(ID_MAP, "source string, source_key string, one_id bigint")
        cand = A.resolved_events(A.candidate_events(rows, pending), id_map).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(cand)
        c = cand.agg(F.count(F.when(F.col("one_id").isNull(), 1)).alias("unknown"),
                     F.count(F.when(F.col("one_id").isNotNull() & F.col("from_queue"), 1)).alias("late"),
                     F.count(F.when(F.col("from_queue"), 1)).alias("queued"),
                     F.count(F.lit(1)).alias("n"), F.count_distinct("one_id").alias("people"),
                     # Days as dates (computed in the session time zone), never via Python datetimes.
                     F.min(F.when(F.col("one_id").isNotNull(), F.to_date("event_time"))).alias("lo"),
                     F.max(F.when(F.col("one_id").isNotNull(), F.to_date("event_time"))).alias("hi")).collect()[0]
        people = triggers = 0
        if c["n"] - c["unknown"]:
            updates = A.activity_updates(cand).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(updates)
            days = updates.select("one_id", "activity_date")
            lo, hi = c["lo"], c["hi"] + dt.timedelta(days=1)
            # Read after the bronze MERGE above, cut to the batch's days (Delta skips other files).
            bronze = wh.read(BRONZE).where((F.col("event_time") >= F.lit(lo).cast("timestamp"))
                                           & (F.col("event_time") < F.lit(hi).cast("timestamp")))
            counts = A.day_counts(bronze, id_map, days)
            current = wh.read_or_empty(ACTIVITY, A.ACTIVITY_SCHEMA).join(F.broadcast(days.select("one_id")), "one_id")
            new = A.merged_activity(current, updates, counts, now_col)
            _retrying("activity", lambda: wh.merge(new, ACTIVITY, ["one_id"]))
            people = c["people"]
            if self.settings.segments:
                trig = A.segment_triggers(cand, self.settings.segments, now_col).persist(StorageLevel.MEMORY_AND_DISK)
                cached.append(trig)
                triggers = trig.count()
                if triggers:
                    cur = wh.read_or_empty(MEMBERS, A.MEMBERS_SCHEMA)
                    _retrying("segments", lambda: wh.merge(A.merged_members(cur, trig, now_col), MEMBERS,
                                                           ["segment_code", "one_id"]))
        if c["unknown"] or c["queued"]:
            keep_from = now_col - F.expr(f"INTERVAL {self.settings.unresolved_retention_seconds} SECONDS")
            queue = A.queue_after(pending, cand, keep_from, now_col)
            # Overwrite (atomic) is right for a small queue only this stream writes.
            _retrying("unresolved", lambda: wh.overwrite(queue, UNRESOLVED))
        return people, triggers, c["unknown"], c["late"]

    def _record(self, batch_id: int, started: float, committed: float, metrics: dict) -> None:
        """One metrics row per batch, appended idempotently (Delta txnAppId / txnVersion)."""
        wh = self.wh
        query_id = wh.spark.sparkContext.getLocalProperty("sql.streaming.queryId") or _checkpoint_query_id(
            wh.spark, self.checkpoint)
        row = dict(query_id=query_id, batch_id=batch_id, started_at=dt.datetime.fromtimestamp(started),
                   committed_at=dt.datetime.fromtimestamp(committed), **metrics)
        cols = [c.split()[0] for c in BATCHES_SCHEMA.split(", ")]
        df = wh.spark.createDataFrame([tuple(row[c] for c in cols)], BATCHES_SCHEMA)
        wh.append(df, BATCHES, options={"txnAppId": f"kequn-stream-event-{query_id}", "txnVersion": str(batch_id)})


def _zone(spark: SparkSession):
    from zoneinfo import ZoneInfo

    from ..session import TIME_ZONE, TIME_ZONE_KEY

    return ZoneInfo(spark.conf.get(TIME_ZONE_KEY, TIME_ZONE))


def _checkpoint_query_id(spark: SparkSession, checkpoint: str) -> str:
    import json

    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{checkpoint}/metadata")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(fs.open(path), "UTF-8"))
    try:
        return json.loads(reader.readLine())["id"]
    finally:
        reader.close()
