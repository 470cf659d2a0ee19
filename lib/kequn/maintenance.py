"""Table upkeep: compact small files (OPTIMIZE, Z-ORDER where declared) and delete the files no
version in the retention window needs (VACUUM). ``kequn maintain``, on a schedule outside the
daily batch (weekly: the Airflow DAG ``kequn_maintenance`` in ``jobs/airflow/kequn_daily.py``).

Why a bank needs it: every day adds small files (a day's replaceWhere, the files a MERGE rewrites,
the stream's micro-batches), and every overwrite of a latest-day table (customer_profile,
tag_catalog, one_id_map) leaves the previous version's files on disk, since Delta deletes nothing
until VACUUM. Reads pay per file and the disk keeps every version.

What a run does, table by table (a failure is recorded and the other tables go on):

* OPTIMIZE. A table partitioned by day (``as_of``) is compacted in its partitions of the last
  ``recent_days`` before the run's day only: older ones were compacted by an earlier run, and a
  Z-ORDER rewrites every file of the partitions it touches. An unpartitioned table is compacted
  whole; Delta leaves a bin of one file alone, so a compacted table costs nothing the next time.
  ``zorder`` (pipeline.yaml) names the columns to cluster a table by (e.g. ``gold.tag_values:
  [one_id]`` for one person's tag history across days); the others are bin-packed.
* VACUUM with ``vacuum_retention_hours`` (Delta's default and minimum without an override: 168).
  Time travel reaches back that far, and no longer.
* One row per table in ``quality.table_maintenance``: files and bytes of the current version and on
  disk, before and after, whether an OPTIMIZE was committed, seconds, status.

Re-running is safe: OPTIMIZE of compacted partitions commits nothing, VACUUM deletes nothing more.
OPTIMIZE commits with dataChange=false, so a concurrent append (the stream) does not conflict with
it; a concurrent MERGE or overwrite of the same files does, and that table is recorded as failed
and left for the next run.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from .tables import Warehouse, file_system

log = logging.getLogger(__name__)

LOG_TABLE = "quality.table_maintenance"
LOG_SCHEMA = ("run_at timestamp, table_name string, status string, optimized boolean, zorder_by string, "
              "optimized_since date, files_before bigint, files_after bigint, bytes_before bigint, "
              "bytes_after bigint, disk_files_before bigint, disk_files_after bigint, disk_bytes_before bigint, "
              "disk_bytes_after bigint, vacuum_retention_hours int, seconds double")
DAY_PARTITIONS = ("as_of",)   # partition columns holding a date, so that "recent" partitions exist
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True)
class Footprint:
    """Files and bytes of a table: its current version (what reads touch) and its folder outside the log
    (what the disk holds: the data files of every version not vacuumed; on a local disk Hadoop's .crc
    files beside them)."""
    files: int
    bytes: int
    disk_files: int
    disk_bytes: int
    partition_columns: tuple[str, ...]


def footprint(spark: SparkSession, path: str) -> Footprint:
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    fs, p = file_system(spark, path)
    folder, log_dir = fs.getContentSummary(p), file_system(spark, f"{path}/_delta_log")[1]
    log = fs.getContentSummary(log_dir) if fs.exists(log_dir) else None
    return Footprint(int(detail["numFiles"]), int(detail["sizeInBytes"]),
                     int(folder.getFileCount() - (log.getFileCount() if log else 0)),
                     int(folder.getLength() - (log.getLength() if log else 0)), tuple(detail["partitionColumns"]))


def vacuum(spark: SparkSession, path: str, retention_hours: float) -> None:
    """VACUUM ``path``; a retention under Delta's 168-hour safety minimum is the caller's explicit choice."""
    before = spark.conf.get(RETENTION_CHECK, "true")
    if retention_hours < DEFAULT_RETENTION_HOURS:
        spark.conf.set(RETENTION_CHECK, "false")
    try:
        DeltaTable.forPath(spark, path).vacuum(float(retention_hours))
    finally:
        spark.conf.set(RETENTION_CHECK, before)


def optimize(spark: SparkSession, path: str, where: Optional[str], zorder_by: Sequence[str] = ()) -> None:
    """OPTIMIZE the table (only the partitions ``where`` names, when given); commits only if it rewrote files."""
    builder = DeltaTable.forPath(spark, path).optimize()
    if where is not None:
        builder = builder.where(where)  # partition columns only
    if zorder_by:
        builder.executeZOrderBy(*zorder_by)
    else:
        builder.executeCompaction()


def run(spark: SparkSession, wh: Warehouse, as_of: Optional[str], config, tables: Sequence[str] = (),
        vacuum_retention_hours: Optional[float] = None, do_vacuum: bool = True) -> dict[str, str]:
    """Maintain ``tables`` (default: every table of the warehouse); returns table -> status."""
    mc = config.maintenance
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    since = (day - dt.timedelta(days=mc.recent_days - 1)).isoformat()
    hours = mc.vacuum_retention_hours if vacuum_retention_hours is None else vacuum_retention_hours
    present = wh.tables()
    names = list(tables) or [t for t in present if t != LOG_TABLE] + ([LOG_TABLE] if LOG_TABLE in present else [])
    unknown = [t for t in list(tables) + list(mc.zorder) if t not in present]
    if unknown:
        log.warning("maintain: not tables of %s, skipped: %s", wh.root, ", ".join(sorted(set(unknown))))
    run_at = dt.datetime.now()
    rows, statuses = [], {}
    for name in [t for t in names if t in present]:
        t0 = time.monotonic()
        path = wh.path(name)
        zorder = list(mc.zorder.get(name, ()))
        before = footprint(spark, path)
        part = next((c for c in before.partition_columns if c in DAY_PARTITIONS), None)
        optimized, status = False, "ok"
        try:
            version = wh.version(name)
            optimize(spark, path, f"{part} >= DATE'{since}'" if part else None, zorder)
            optimized = wh.version(name) != version
            if do_vacuum:
                vacuum(spark, path, hours)
        except Exception as e:  # one table's conflict or bad setting must not stop the others
            status = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            log.error("maintain: %s %s", name, status)
        after = footprint(spark, path)
        seconds = time.monotonic() - t0
        statuses[name] = status
        rows.append((run_at, name, status, optimized, ",".join(zorder) or None,
                     dt.date.fromisoformat(since) if part else None, before.files, after.files, before.bytes,
                     after.bytes, before.disk_files, after.disk_files, before.disk_bytes, after.disk_bytes,
                     int(hours) if do_vacuum else None, round(seconds, 3)))
        log.info("maintain: %-40s %s; files %d -> %d, on disk %d -> %d (%.1f -> %.1f MB)%s, %.1f s", name,
                 "optimized" if optimized else "nothing to compact", before.files, after.files, before.disk_files,
                 after.disk_files, before.disk_bytes / 1e6, after.disk_bytes / 1e6,
                 f", z-ordered by {', '.join(zorder)}" if zorder and optimized else "", seconds)
    if rows:
        wh.append(spark.createDataFrame(rows, LOG_SCHEMA), LOG_TABLE)
    return statuses
