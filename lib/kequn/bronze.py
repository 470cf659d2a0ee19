"""The bronze layer read as of a day: what every later stage starts from.

Bronze keeps every delivered version (master data) and every delivered fact
with the batch date it came in (``_batch_dt``), so any day ``D`` can be
re-derived: master data is the latest ``updated_at`` per key among batches
dated on or before ``D``; facts count when their batch and their event time are
both on or before ``D``. Re-running an old day therefore reproduces it.

Model training also reads a past day ``T`` as known by a later day ``K``
(``known_by``): batches up to ``K``, event times up to ``T``, and per master key
the version in effect at ``T``. That is what a warehouse whose history came in
one backfill can say about ``T``; see ``kequn.tags.models``.

Bronze columns are the landing columns with personal data replaced by tokens
(``name`` -> ``name_token``, ``id_no`` -> ``id_no_token``, ``mobile`` ->
``mobile_token``, ``card_no`` -> ``card_no_token``), plus per identifier
``<id>_valid`` and ``<id>_invalid_reason``, plus ``_batch_dt``, ``_file``,
``_line``, ``_row_hash``, ``_extra`` and ``_ingested_at``.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from .landing import MASTER, SOURCES
from .session import held, release
from .tables import Warehouse

log = logging.getLogger(__name__)


def table_name(source: str) -> str:
    return f"bronze.{source}"


def _up_to(df: DataFrame, as_of: str) -> DataFrame:
    return df.where(F.col("_batch_dt") <= F.lit(as_of).cast("date"))


def known_later(as_of: str, known_by: str | None) -> bool:
    """Whether ``as_of`` is read as known on a later day (the rules of a backfilled past day apply)."""
    return bool(known_by) and known_by > as_of


def master_as_of(wh: Warehouse, source: str, as_of: str, known_by: str | None = None) -> DataFrame:
    """One row per key: the version with the latest ``updated_at`` delivered by ``as_of``.

    With a later ``known_by``: among versions delivered by then, the latest with ``updated_at`` on or
    before ``as_of``; a key with none has its earliest version (a backfill's first version stands for
    the time before it, as in a type-2 history whose first row is valid from the beginning).
    """
    spec = SOURCES[source]
    assert spec.kind == MASTER, source
    keys = list(spec.key)
    df = _up_to(wh.read(table_name(source)), known_by or as_of)
    if known_later(as_of, known_by):
        version = F.col(spec.version_column)
        df = (df.withColumn("_first", F.min(version).over(per_key(keys)))
              .where((version < F.date_add(F.lit(as_of).cast("date"), 1).cast("timestamp"))
                     | (version == F.col("_first"))).drop("_first"))
    return latest_version(df, keys, spec.version_column)


def per_key(keys: list[str]) -> WindowSpec:
    """A window per key whose rows Spark sorts by a 64-bit hash of the key first, then by the key.

    The groups are the key's. A window sorts its rows by its partition columns; with string keys that
    share a long prefix (``M00000123456``) the sort's 8-byte prefix tells few rows apart and most
    comparisons read the whole strings. The hash's prefix tells almost all apart: 5.4M touches resolved in
    8.1-8.7 s instead of 9.5-10.3 s, and 3.6M master versions in 3.9-4.5 s instead of 4.5-4.7 s
    (BENCHMARKS.md, "Windows sorted by a hash of the key").
    """
    return Window.partitionBy(F.xxhash64(*keys), *keys)


def latest_version(df: DataFrame, keys: list[str], version_column: str) -> DataFrame:
    # Ties on updated_at are broken by the row's content hash, so the winner never depends on file order.
    w = per_key(keys).orderBy(F.col(version_column).desc_nulls_last(), F.col("_row_hash").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def facts_as_of(wh: Warehouse, source: str, as_of: str, known_by: str | None = None,
                since: str | None = None) -> DataFrame:
    """Facts delivered by ``known_by`` (default ``as_of``) whose own time is on or before ``as_of``.

    ``since`` (a day): only facts whose own time is on or after it, as a reader with windows needs;
    said on the column itself, so that Delta skips the files of older facts (not for touches, whose
    re-deliveries are resolved first).
    """
    spec = SOURCES[source]
    df = _up_to(wh.read(table_name(source)), known_by or as_of)
    if source == "touch":
        df = latest_touches(wh, df)
        if known_later(as_of, known_by):
            # A later delivery may report an open or a conversion that happened after as_of.
            end = F.date_add(F.lit(as_of).cast("date"), 1).cast("timestamp")
            df = df.withColumns({c: F.when(F.col(c) < end, F.col(c)) for c in ("opened_time", "converted_time")})
    if since is not None:
        time_type = df.schema[spec.time_column].dataType.simpleString()
        df = df.where(F.col(spec.time_column) >= F.lit(since).cast("date").cast(time_type))
    return df.where(F.to_date(F.col(spec.time_column)) <= F.lit(as_of).cast("date"))


def touches_resolved(df: DataFrame, repeated: DataFrame | None = None, sort_all: bool = False) -> DataFrame:
    """Per touch_id the row of the latest batch; within a batch the one with more timestamps filled.

    A touch is delivered again only when it is opened or converted, so most touch_ids have one row: only
    the rows whose id hash repeats are sorted by the window (``split_by_repeated_hashes``), the others pass
    as they are. ``repeated``: those hashes (``held_repeated_hashes``) if counted already, else they are found
    in the plan. ``sort_all``: every row goes through the window instead, for touches whose
    repeated ids are too many to broadcast (``latest_touches``).
    """
    filled = (F.col("opened_time").isNotNull().cast("int") + F.col("converted_time").isNotNull().cast("int"))
    w = per_key(["touch_id"]).orderBy(F.col("_batch_dt").desc(), filled.desc(), F.col("_row_hash").desc())

    def latest(rows: DataFrame) -> DataFrame:
        return rows.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")

    if sort_all:
        return latest(df)
    keyed = _touch_keyed(df)
    once, again = split_by_repeated_hashes(keyed, repeated if repeated is not None else repeated_key_hashes(keyed))
    return once.unionByName(latest(again))


def _touch_keyed(df: DataFrame) -> DataFrame:
    return df.withColumn(KEY_HASH, F.xxhash64("touch_id"))


def latest_touches(wh: Warehouse, df: DataFrame, bound: int | None = None) -> DataFrame:
    """``touches_resolved`` over ``df`` (rows of ``bronze.touch``), broadcasting at most ``bound`` repeated ids
    (default ``BROADCAST_KEY_HASHES``).

    A repeated id has two rows at least, so a table of at most twice the bound in all is below it: told by
    the Delta log's row count, with no file read, and the hashes are found in the plan. A larger table's
    repeated ids are found first and held (the broadcast then reads them; at 1,000,000 persons 5M touch
    rows): above the bound, as at hundreds of millions of touches with a tenth of them opened later (a
    broadcast of hundreds of megabytes), every row is sorted instead.
    """
    bound = BROADCAST_KEY_HASHES if bound is None else bound
    if wh.read(table_name("touch")).count() <= 2 * bound:
        return touches_resolved(df)
    repeated, n = held_repeated_hashes(_touch_keyed(df))
    log.info("bronze.touch: %d touch ids delivered more than once: %s", n,
             "sorting every row" if n > bound else "sorting their rows only")
    if n > bound:
        release(repeated)
        return touches_resolved(df, sort_all=True)
    # Held for the rest of the run (8 bytes an id, at most the bound): the reader's plan is lazy, so no
    # point in it knows when the broadcast has read them; Spark's cleaner frees them with the plan.
    return touches_resolved(df, repeated)


# A 64-bit hash of a row's key: rows with equal keys get equal hashes.
KEY_HASH = "__kh"

# Up to this many repeated key hashes are broadcast (8 bytes each, some 50 MB built) to pick the rows that
# need sorting (ingest's loads, ``touches_resolved``). At 1,000,000 persons one load of events held 256,168
# repeated keys: above the earlier limit of 250,000 typed keys, it sorted all of its 52M rows.
BROADCAST_KEY_HASHES = 2_000_000


def repeated_key_hashes(keyed: DataFrame) -> DataFrame:
    """``__kh``, the key hashes that occur in more than one row (``kequn.ingest.with_key_hash`` takes them over
    a load's merge keys, ``touches_resolved`` over touch ids).

    Every key equal to another has the same hash, so the keys that repeat are among these rows'. One
    long column is shuffled instead of the key's strings: 13 s instead of 23-30 s for 16M holdings.
    """
    return keyed.groupBy(KEY_HASH).count().where("count > 1").select(KEY_HASH)


def held_repeated_hashes(keyed: DataFrame) -> tuple[DataFrame, int]:
    """``repeated_key_hashes`` of ``keyed`` computed now and held (``kequn.session.held``), and how many: a
    caller broadcasts them only up to ``BROADCAST_KEY_HASHES`` and sorts every row above it."""
    hashes = held(repeated_key_hashes(keyed))
    return hashes, hashes.count()


def split_by_repeated_hashes(keyed: DataFrame, hashes: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows whose key hash occurs once, rows whose key hash repeats), without the hash.

    ``hashes`` (``repeated_key_hashes``) is broadcast, 8 bytes per repeated key. Rows of different keys whose
    hashes collide go to the second part too, where the window that keeps one row per key
    (``kequn.ingest.deduplicated``, ``touches_resolved``) partitions by the key itself: they all stay.
    """
    h = F.broadcast(hashes)
    return (keyed.join(h, KEY_HASH, "left_anti").drop(KEY_HASH),
            keyed.join(h, KEY_HASH, "left_semi").drop(KEY_HASH))
