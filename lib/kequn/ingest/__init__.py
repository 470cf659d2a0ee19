"""The ingest stage: landing batches into bronze Delta tables, safely.

Per source: find the ``dt=`` batches up to ``--as-of`` not loaded yet (by
fingerprint, from the ``bronze.ingest_batches`` ledger); reject a batch whose
files lack a contract column (the other sources still load); parse, type and
validate every row; send bad rows to ``bronze.quarantine`` with their reason;
pseudonymise personal data and put clear values only in ``bronze.pii_vault``;
MERGE the good rows so that loading a batch twice equals loading it once. The
ledger is written last, so a crash before it only means the batch is merged
again, which changes nothing.
"""
from __future__ import annotations

import logging
import time
from functools import reduce
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..bronze import BROADCAST_KEY_HASHES, KEY_HASH, held_repeated_hashes, per_key, split_by_repeated_hashes
from ..config import PipelineConfig
from ..landing import MASTER, SOURCES, Source
from ..session import concurrently, held, release
from ..tables import Warehouse
from .discover import DIGEST_SCHEMA, Batch, FileDigests, batches, header
from .parse import (bronze_content, bronze_rows, checked_rows, file_reason_counts, line_breaks_by_file,
                    merged_on_content, quarantine_rows, raw_of_bad_rows, raw_rows, value_col, vault_rows,
                    with_line_numbers, with_raw_fields)
from .pseudonym import load_key

log = logging.getLogger(__name__)

LEDGER = "bronze.ingest_batches"
DIGESTS = "bronze.landing_digests"
QUARANTINE = "bronze.quarantine"
VAULT = "bronze.pii_vault"
WRITES = (*(f"bronze.{s}" for s in SOURCES), LEDGER, DIGESTS, QUARANTINE, VAULT)  # kequn.pipeline.tables_written_by
LEDGER_SCHEMA = ("source string, batch_dt date, fingerprint string, files int, rows_read long, rows_loaded long, "
                 "rows_quarantined long, status string, reason string, as_of date, loaded_at timestamp")


class BatchRejected(RuntimeError):
    """One or more batches broke the landing contract; the rest of ingest committed."""


def _loaded(wh: Warehouse) -> set[tuple[str, str, str]]:
    led = wh.read_or_empty(LEDGER, LEDGER_SCHEMA).where("status = 'loaded'")
    # The ledger grows by one row per source and day: small enough to bring to the driver.
    return {(r.source, str(r.batch_dt), r.fingerprint) for r in led.select("source", "batch_dt", "fingerprint").collect()}


def _known_digests(wh: Warehouse) -> FileDigests:
    # One row per landing file: some thousands a year, read whole so that no file is hashed twice.
    rows = wh.read_or_empty(DIGESTS, DIGEST_SCHEMA).collect()
    return FileDigests({(r.file, r.size, r.modified): r.sha256 for r in rows})


def _missing_columns(spark: SparkSession, source: Source, batch: Batch) -> tuple[dict, list[str]]:
    groups: dict[tuple[str, ...], list[str]] = {}
    errors = []
    for f in batch.files:
        cols = header(spark, f)
        missing = [c for c in source.column_names if c not in cols]
        if missing:
            errors.append(f"source '{source.name}', batch dt={batch.dt}, file {f.rsplit('/', 1)[-1]}: "
                          f"missing required column(s) {missing}")
        groups.setdefault(tuple(cols), []).append(f)
    return groups, errors


def deduplicated(df: DataFrame, source: Source) -> DataFrame:
    """One row per merge key, the earliest delivery winning, so MERGE sees each key once."""
    keys = _merge_keys(source)
    # Where the merge key holds _row_hash (and a touch's _batch_dt), they are alike within a key: sorting by
    # them again would compare 64 equal characters per pair of rows.
    w = per_key(keys).orderBy(*[c for c in ("_batch_dt", "_row_hash", "_file", "_line") if c not in keys])
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def _same_key(left: str, right: str, keys: list[str]) -> list:
    """Join conditions on ``keys`` between two aliased frames; null-safe, as the MERGE condition is."""
    return [F.col(f"{left}.`{k}`").eqNullSafe(F.col(f"{right}.`{k}`")) for k in keys]


def with_key_hash(rows: DataFrame, source: Source) -> DataFrame:
    """``rows`` with ``__kh``, a 64-bit hash of the merge key as bronze will hold it: rows with equal
    merge keys get equal hashes.

    Taken over ``checked_rows``. Ingest adds it in the pass that holds the rows, so that finding
    the repeated keys reads one long column: typing the keys again over the line-numbered rows took 24 s
    of a 16M-row holdings load, 11 s this way. Where bronze merges on the content (``_row_hash``: master
    versions, touches), the hash is taken over that content's columns instead of their SHA-256, with the
    merge key's other columns.
    """
    if _merge_keys(source) == list(source.key):
        return rows.withColumn(KEY_HASH, F.xxhash64(*[F.col(value_col(k)) for k in source.key]))
    # The content holds the source's key and version; a touch's batch date is not content.
    lineage = [F.col(k) for k in _merge_keys(source) if k.startswith("_") and k != "_row_hash"]
    return rows.withColumn(KEY_HASH, F.xxhash64(*bronze_content(source), *lineage))


# A delivery up to this many rows is broadcast: kequn drops its already-loaded rows itself (see
# ``unloaded_rows``) and Delta's search for matching files reads the bronze table instead of shuffling it.
BROADCAST_ROWS = 250_000


def unloaded_rows(rows: DataFrame, bronze: DataFrame, keys: list[str]) -> DataFrame:
    """The rows a MERGE would change: keys not in ``bronze`` yet, or there only from a later delivery.

    A row whose key bronze already holds from the same or an earlier ``_batch_dt`` is a no-op for the
    MERGE (earlier delivery wins), but Delta would still rewrite every file holding that key, through an
    outer join that keeps all source rows and so cannot broadcast them: at 100,000 persons one day's
    re-delivered transactions and events shuffled 1.3 GB that way. ``rows`` is the small side here: it
    is broadcast twice and bronze is only scanned (its key columns and ``_batch_dt``).
    """
    src = rows.select(*keys, "_batch_dt").alias("s")
    loaded = (bronze.select(*keys, "_batch_dt").alias("t")
              .join(F.broadcast(src), [*_same_key("t", "s", keys), F.col("t._batch_dt") <= F.col("s._batch_dt")],
                    "left_semi")
              .select(*keys).alias("l"))
    return rows.alias("r").join(F.broadcast(loaded), _same_key("r", "l", keys), "left_anti")


def key_bounds(rows: DataFrame, keys: list[str]) -> dict[str, tuple[str, Optional[str], Optional[str]]]:
    """(SQL type, lowest, highest) of each date or timestamp merge key of ``rows``, as literal text.

    One aggregation over the rows to merge. Timestamps are widened by a day on each side, so that a
    literal read back in the session's time zone can never cut off a boundary row.
    """
    kinds = {f.name: f.dataType for f in rows.schema.fields}
    dates = [k for k in keys if isinstance(kinds.get(k), T.DateType)]
    times = [k for k in keys if isinstance(kinds.get(k), T.TimestampType)]
    if not dates and not times:
        return {}
    day, ts = F.expr("INTERVAL 1 DAY"), "yyyy-MM-dd HH:mm:ss.SSSSSS"
    aggs = [F.date_format(F.min(k), "yyyy-MM-dd").alias(f"lo{i}") for i, k in enumerate(dates)]
    aggs += [F.date_format(F.max(k), "yyyy-MM-dd").alias(f"hi{i}") for i, k in enumerate(dates)]
    aggs += [F.date_format(F.min(k) - day, ts).alias(f"tlo{i}") for i, k in enumerate(times)]
    aggs += [F.date_format(F.max(k) + day, ts).alias(f"thi{i}") for i, k in enumerate(times)]
    got = rows.agg(*aggs).first()
    out = {k: ("DATE", got[f"lo{i}"], got[f"hi{i}"]) for i, k in enumerate(dates)}
    out.update({k: ("TIMESTAMP", got[f"tlo{i}"], got[f"thi{i}"]) for i, k in enumerate(times)})
    return out


def within_bounds(bounds: dict[str, tuple[str, Optional[str], Optional[str]]], alias: str = "") -> Optional[str]:
    """SQL predicate: each bounded key within its range, or null (nulls match nulls in the MERGE)."""
    parts = []
    for k, (kind, lo, hi) in bounds.items():
        c = f"{alias}.`{k}`" if alias else f"`{k}`"
        parts.append(f"({c} IS NULL)" if lo is None else f"({c} BETWEEN {kind}'{lo}' AND {kind}'{hi}' OR {c} IS NULL)")
    return " AND ".join(parts) or None


def merge_into_bronze(wh: Warehouse, rows: DataFrame, source: Source, n_rows: Optional[int] = None) -> None:
    """MERGE bronze rows (already deduplicated) into ``bronze.<source>``: batch ingest and the stream alike.

    A key already present is updated only by an earlier delivery date, so the
    order in which the stream and the daily batch deliver a fact does not matter.
    ``n_rows`` (an upper bound of ``rows``' count), when small, lets the rows be
    broadcast and the already-loaded ones dropped before the MERGE.
    """
    name = f"bronze.{source.name}"
    keys = _merge_keys(source)
    within = None
    if wh.exists(name):
        # A match has the same key, so it lies within the range of the rows' date and time key columns
        # (holding's snapshot_date, consent's event_time, touch's batch date): said in the condition,
        # Delta reads only the bronze files whose statistics overlap it. At 1,000,000 persons the daily
        # MERGE of 1.8M holding rows otherwise joined all 159M rows of bronze.holding (154 s).
        bounds = key_bounds(rows, keys)
        within = within_bounds(bounds, "t")
        if n_rows is not None and n_rows <= BROADCAST_ROWS:
            # Still a MERGE, not an append: it keeps Delta's conflict check against a concurrent writer
            # (the stream) that loads the same key between this read and the commit.
            # The hint reaches the join MERGE plans to find matches. Spark also warns that it "is not part
            # of a join relation" where MERGE reuses the source elsewhere: expected. Without the hint the
            # 20k daily ingest shuffled 66 MB instead of 1.1 MB.
            bronze = wh.read(name)
            if bounds:
                bronze = bronze.where(within_bounds(bounds))
            rows = F.broadcast(unloaded_rows(rows, bronze, keys))
    wh.merge(rows, name, keys, update_when="s._batch_dt < t._batch_dt",
             stats_columns=[c for c in stats_columns(source) if c in rows.columns], target_filter=within)


def stats_columns(source: Source) -> list[str]:
    """The bronze columns reads filter on: key, event time or version, batch date."""
    cols = [*source.key, source.time_column, source.version_column, "_batch_dt"]
    return list(dict.fromkeys(c for c in cols if c))


def unique_bronze_rows(good: DataFrame, source: Source, held: list[DataFrame],
                       unnumbered: Optional[DataFrame] = None) -> DataFrame:
    """Bronze rows, one per merge key: ``deduplicated``, but sorting only the rows whose key repeats.

    Sorting every row spilled 3.2 GB at 100,000 persons (16M holdings) while keys delivered twice
    within one load are rare. The hashes of repeated keys are counted first (one long column) and held
    (appended to ``held``, released when the source's load ends); only the rows with such a hash are sorted,
    and each row is made a bronze row once. ``unnumbered``, the same good rows before their line
    numbers were joined on, is where the hashes are counted (the join adds nothing to a count). Master
    versions and touches (merged on their content) skip the sort when no key repeats, as in their first
    load at 1,000,000 persons, and otherwise sort every row.
    """
    if KEY_HASH not in good.columns:
        good = with_key_hash(good, source)
    hashes, n = held_repeated_hashes(unnumbered if unnumbered is not None else good)
    held.append(hashes)
    if n == 0:
        return bronze_rows(good, source)
    if n > BROADCAST_KEY_HASHES or merged_on_content(source):
        # Master versions and touches sort every row when any repeats: their bronze rows above the split's
        # joins took Spark's optimizer 37 s to plan for a 6-row core_customer load (the constraints it
        # infers from every typed column and identifier check), 1.3 s with constraint propagation off.
        log.info("ingest %-14s %d key hashes delivered more than once: sorting every row", source.name, n)
        return deduplicated(bronze_rows(good, source), source)
    log.info("ingest %-14s %d key hashes delivered more than once: sorting their rows only", source.name, n)
    once, again = split_by_repeated_hashes(good, hashes)
    return bronze_rows(once, source).unionByName(deduplicated(bronze_rows(again, source), source))


def _merge_keys(source: Source) -> list[str]:
    if not merged_on_content(source):
        return list(source.key)
    if source.kind == MASTER:
        # Every version is kept; the latest updated_at wins when read (kequn.bronze.master_as_of).
        return [*source.key, source.version_column, "_row_hash"]
    # A touch is re-delivered when opened: keep each batch's version; the latest batch wins when read.
    return ["touch_id", "_batch_dt", "_row_hash"]


def ingest_source(spark: SparkSession, wh: Warehouse, source: Source, pending: list[Batch], key: bytes,
                  as_of: str, out: "_Pending") -> dict[str, int]:
    started = time.time()
    accepted = []
    groups: dict[tuple[str, ...], list[str]] = {}
    for b in pending:
        g, errs = _missing_columns(spark, source, b)
        if errs:
            out.errors += errs
            out.ledger.append((source.name, b.dt, b.fingerprint, len(b.files), 0, 0, 0, "rejected", "; ".join(errs)))
            continue
        accepted.append(b)
        for cols, files in g.items():
            groups.setdefault(cols, []).extend(files)
    if not accepted:
        return {}
    transient: list[DataFrame] = []
    try:
        return _load(spark, wh, source, accepted, groups, key, as_of, out, transient, started)
    finally:
        # The parsed rows are freed once the source's MERGE is done, not at the end of the run: kept
        # until then, the loads before it filled storage memory and pushed the next loads' rows to disk.
        for df in transient:
            release(df)


def _load(spark: SparkSession, wh: Warehouse, source: Source, accepted: list[Batch], groups: dict, key: bytes,
          as_of: str, out: "_Pending", transient: list[DataFrame], started: float) -> dict[str, int]:
    """``ingest_source`` for the accepted batches. The frames held only for this load go to ``transient``;
    what the end of the run still reads (this source's vault and quarantine rows) is held to ``out.cached``."""
    raw = raw_rows(spark, source, groups)
    # Held in executor storage, not staged as a table: these rows still hold clear personal data.
    # A local checkpoint rather than persist(): a persisted frame keeps its plan, and every task
    # reading it deserialised that plan again (5,000 persons: 173 s deserialising, 124 s working).
    cached = held(with_key_hash(raw_of_bad_rows(checked_rows(raw, source, key), source), source))
    transient.append(cached)
    # Line numbers come from the cached rows: record ids are assigned once, however often they are read.
    # One pass over them counts rows per file and reason for the tally and finds the line breaks.
    per_file = file_reason_counts(cached, "_batch_dt").persist()
    transient.append(per_file)
    checked = with_line_numbers(cached, line_breaks_by_file(per_file))
    good = checked.where("_reason IS NULL")
    bad = checked.where("_reason IS NOT NULL")

    tally = per_file.groupBy("_batch_dt", "_reason").agg(F.sum("_rows").alias("count")).collect()  # batch x reason
    per_batch: dict[str, list[int]] = {}
    reasons: dict[str, int] = {}
    for r in tally:
        n = per_batch.setdefault(r["_batch_dt"].isoformat(), [0, 0])
        n[0] += r["count"]
        if r["_reason"] is not None:
            n[1] += r["count"]
            reasons[r["_reason"]] = reasons.get(r["_reason"], 0) + r["count"]
    for b in accepted:
        n, nbad = per_batch.get(b.dt, (0, 0))
        out.ledger.append((source.name, b.dt, b.fingerprint, len(b.files), n, n - nbad, nbad, "loaded", None))
    read = sum(n for n, _ in per_batch.values())
    nbad = sum(x for _, x in per_batch.values())
    # Progress for the long loads (a 90-day holdings load at 1M persons is 159M rows and 19 minutes).
    log.info("ingest %-14s %d rows of %d batches parsed, checked and held at %.1f s", source.name, read,
             len(accepted), time.time() - started)

    if read - nbad == 0 and wh.exists(f"bronze.{source.name}"):
        # A MERGE of no rows still plans, scans the target's files and commits an empty version: about
        # 3 s a source on the demo's second day, where two sources deliver empty files.
        log.info("ingest %-14s no row to merge into bronze", source.name)
    else:
        rows = unique_bronze_rows(good, source, transient, unnumbered=cached.where("_reason IS NULL"))
        merge_into_bronze(wh, rows, source, n_rows=read - nbad)
        log.info("ingest %-14s %d rows merged into bronze at %.1f s", source.name, read - nbad,
                 time.time() - started)
    q = quarantine_rows(with_raw_fields(bad, source, list(groups)), source, as_of)
    raw_records = []
    if nbad:
        q = held(q)
        out.cached.append(q)
        raw_records.append(q.select(F.col("raw_token").alias("token"), F.lit("raw_record").alias("pii_type"),
                                    F.col("_verbatim").alias("value")))
    else:
        # No Spark job for no row: even an empty job waits behind the other load's running stage (FIFO
        # scheduling), and meanwhile this load's rows stay held: 187 s for 17.9M holdings at 5M persons.
        q = spark.createDataFrame([], q.schema)
    parts = [*vault_rows(cached, source), *raw_records]
    if parts:
        # One row per personal-data value: master sources deliver the same name and number in many versions.
        vault = held(reduce(DataFrame.unionByName, parts).dropDuplicates(["token"]))
        out.cached.append(vault)
        out.vault.append(vault)
    out.quarantine.append(q.drop("_verbatim"))
    out.quarantined += nbad
    log.info("ingest %-14s batches=%d rows_read=%d loaded=%d quarantined=%d (%.1fs)", source.name, len(accepted),
             read, read - nbad, nbad, time.time() - started)
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        log.info("ingest %-14s quarantine reason %-40s %d", source.name, reason, n)
    return {f"bronze.{source.name}": read - nbad, QUARANTINE: nbad}


class _Pending:
    """What every source adds and the run writes once at its end: vault, quarantine, ledger."""

    def __init__(self):
        self.vault: list[DataFrame] = []
        self.quarantine: list[DataFrame] = []
        self.ledger: list[tuple] = []
        self.errors: list[str] = []
        self.cached: list[DataFrame] = []
        self.quarantined = 0   # rows in ``quarantine``'s frames

    def add(self, other: "_Pending") -> None:
        for name in ("vault", "quarantine", "ledger", "errors", "cached"):
            getattr(self, name).extend(getattr(other, name))
        self.quarantined += other.quarantined


def run(spark: SparkSession, wh: Warehouse, landing: str, as_of: str, config: PipelineConfig) -> dict[str, int]:
    key = load_key(config.pseudonym)
    done = _loaded(wh)
    digests = _known_digests(wh)
    work = []
    for source in SOURCES.values():
        found = batches(spark, landing, source.name, as_of, digests)
        pending = [b for b in found if (source.name, b.dt, b.fingerprint) not in done]
        if not pending:
            log.info("ingest %-14s %d batch(es) found, none new", source.name, len(found))
            continue
        work.append((source, pending))

    def load(source: Source, pending: list[Batch]) -> tuple[dict[str, int], _Pending]:
        out = _Pending()
        return ingest_source(spark, wh, source, pending, key, as_of, out), out

    counts: dict[str, int] = {}
    out = _Pending()
    # Each source's load is a few dozen small Spark jobs with driver work between them: about half of a
    # daily load's time at 100,000 persons, with the two cores idle. Each MERGE is atomic, and the
    # ledger, written after all of them, is not written when one fails.
    for got, part in concurrently(spark, work, load, config.ingest.parallel_sources, "ingest.parallel_sources"):
        for k, v in got.items():
            counts[k] = counts.get(k, 0) + v
        out.add(part)
    if out.vault:
        vault = reduce(DataFrame.unionByName, out.vault).dropDuplicates(["token"])
        wh.merge(vault, VAULT, ["token"], update_when="false")
    # The quarantine is created on the first load, good or bad, so that it can always be read.
    if out.quarantine and (out.quarantined or not wh.exists(QUARANTINE)):
        wh.merge(reduce(DataFrame.unionByName, out.quarantine), QUARANTINE, ["source", "file", "line"],
                 update_when="false")
    if digests.new:
        # Only a cache: losing it costs hashing again, so it needs no place in the ledger's ordering.
        wh.merge(spark.createDataFrame(digests.new, DIGEST_SCHEMA), DIGESTS, ["file", "size", "modified"],
                 update_when="false")
    if out.ledger:
        # Written last: a crash before this line means the batches are merged again, which changes nothing.
        rows = spark.createDataFrame([(*r, as_of) for r in out.ledger],
                                     "source string, batch_dt string, fingerprint string, files int, rows_read long, "
                                     "rows_loaded long, rows_quarantined long, status string, reason string, "
                                     "as_of string")
        rows = (rows.withColumn("batch_dt", F.to_date("batch_dt")).withColumn("as_of", F.to_date("as_of"))
                .withColumn("loaded_at", F.current_timestamp()))
        wh.merge(rows, LEDGER, ["source", "batch_dt", "fingerprint"])
    for df in out.cached:
        release(df)
    for e in out.errors:
        log.error("ingest rejected: %s", e)
    if out.errors:
        raise BatchRejected("ingest rejected %d batch(es): %s" % (len(out.errors), " | ".join(out.errors)))
    return counts
