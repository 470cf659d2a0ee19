"""The only module that knows where tables live and how they are written.

Every table is a Delta folder at ``<warehouse>/<database>/<table>`` and is
registered as ``<database>.<table>`` in the session's catalog (an embedded,
in-memory catalog: nothing to install), so SQL works in jobs, in
``kequn sql`` and in notebooks alike. Writes go through Delta (overwrite with
``replaceWhere`` for a day's partition, MERGE for upserts) so that a failed
write leaves the previous version in place and re-runs are idempotent.
A stage's results wait for their checks as plain Parquet under ``<warehouse>/_staging``: scratch, not
tables (see :meth:`Warehouse.stage`). Fitted need models are kept under ``<warehouse>/_models`` for
reuse on the following days (see :mod:`kequn.tags.models`).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Iterable, Optional, Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

DATABASES = ("bronze", "silver", "gold", "quality")
STAGING = "_staging"
MODELS = "_models"

# (session, table name) -> the location this process registered it at.
_REGISTERED: dict[tuple[int, str], str] = {}
_CATALOG_LOCK = threading.Lock()


def absolute(root: str) -> str:
    """A local path made absolute; URIs (s3a://, hdfs://, abfss://) left as they are."""
    return root if "://" in root else os.path.abspath(root)


def day_predicate(as_of: str, column: str = "as_of") -> str:
    """The rows of one day, as a replaceWhere."""
    return f"{column} = DATE'{as_of}'"


def file_system(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Path) for a path on any file system Spark reaches."""
    p = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def remove_path(spark: SparkSession, path: str) -> None:
    """Delete a folder (scratch, kept models) if it is there, on the local disk or a cluster file system.
    A ``file:`` URI (Spark's checkpoint folder on a local master) goes through Hadoop too."""
    if "://" not in path and not path.startswith("file:"):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, p = file_system(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


class Warehouse:
    def __init__(self, spark: SparkSession, root: str):
        self.spark = spark
        self.root = absolute(str(root))
        # Frames a quality gate of this run passed, and the table versions that publish exactly them.
        self._passed: dict[str, tuple[DataFrame, str]] = {}
        self._gated_versions: dict[str, tuple[int, str, Optional[str]]] = {}

    # ------------------------------------------------------------------ names and paths
    def path(self, name: str) -> str:
        db, table = name.split(".", 1)
        if db not in DATABASES:
            raise ValueError(f"unknown database '{db}' in table name '{name}'; expected one of {DATABASES}")
        return f"{self.root}/{db}/{table}"

    def staging_path(self, name: str) -> str:
        db, table = name.split(".", 1)
        return f"{self.root}/{STAGING}/{db}/{table}"

    def model_path(self, code: str, definition_key: str, run_day: str) -> str:
        """Where the model of tag ``code`` fitted on ``run_day`` under one definition is kept."""
        return f"{self.root}/{MODELS}/{code}/{definition_key}/{run_day}"

    def path_exists(self, path: str) -> bool:
        """A file or folder under the warehouse, on the local disk or a cluster file system."""
        if "://" not in path:
            return os.path.exists(path)
        fs, p = file_system(self.spark, path)
        return fs.exists(p)

    def remove_path(self, path: str) -> None:
        """Delete a folder (scratch, kept models) if it is there."""
        remove_path(self.spark, path)

    def exists(self, name: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path(name))

    def version(self, name: str) -> Optional[int]:
        """The table's latest commit version, or None when it is not a Delta table.

        The Delta protocol names each commit ``_delta_log/<version, 20 digits>.json``, and the latest
        commit file is never cleaned up, so the highest one is the version. Listing the folder takes
        milliseconds; ``DeltaTable.history(1)`` ran a Spark job each time (0.3-0.8 s here, some 20
        times a run: each gated write and each table the quality stage considers).
        """
        log_dir = f"{self.path(name)}/_delta_log"
        if "://" not in log_dir:
            names = os.listdir(log_dir) if os.path.isdir(log_dir) else []
        else:
            fs, p = file_system(self.spark, log_dir)
            names = [st.getPath().getName() for st in fs.listStatus(p)] if fs.exists(p) else []
        versions = [int(n[:20]) for n in names if len(n) == 25 and n.endswith(".json") and n[:20].isdigit()]
        return max(versions) if versions else None

    # ------------------------------------------------------------------ gated publication
    def passed_gate(self, frames: dict[str, DataFrame], run_id: str) -> None:
        """Record frames a quality gate passed (``run_id``), for :meth:`gate_checked`."""
        for name, df in frames.items():
            self._passed[name] = (df, run_id)

    def _published(self, name: str, df: DataFrame, exact: bool, replaced: Optional[str] = None) -> None:
        """After a write: whether the table (or the rows ``replaced`` names) is now ``df`` and nothing else."""
        passed = self._passed.pop(name, None)
        if passed is not None and exact and passed[0] is df:
            self._gated_versions[name] = (self.version(name), passed[1], replaced)
        else:
            self._gated_versions.pop(name, None)

    def gate_checked(self, name: str) -> Optional[tuple[str, Optional[str]]]:
        """(run id, replaceWhere or None for the whole table) of this run's gate that validated what the
        table now holds, if one did.

        Only a gated frame written as it is counts: by overwrite (the whole table, or the rows its
        replaceWhere names) or by the append that creates the table. A merge into existing rows, any
        later write, or another process's write changes the version, and the table is no longer taken
        as checked.
        """
        seen = self._gated_versions.get(name)
        return (seen[1], seen[2]) if seen is not None and seen[0] == self.version(name) else None

    # ------------------------------------------------------------------ catalog
    def register(self, name: str) -> None:
        key, path = (id(self.spark), name), self.path(name)
        if _REGISTERED.get(key) == path:
            return
        db, _ = name.split(".", 1)
        with _CATALOG_LOCK:  # ingest loads sources in threads; "IF NOT EXISTS" is no guard against a race
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
            if key in _REGISTERED:
                # The session served another warehouse before: re-point the name (an external table; no data moves).
                self.spark.sql(f"DROP TABLE IF EXISTS {name}")
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING delta LOCATION '{path}'")
            _REGISTERED[key] = path

    def tables(self) -> list[str]:
        """Names of the Delta tables present in the warehouse."""
        found = []
        if "://" in self.root:
            for db in DATABASES:
                fs, dbp = file_system(self.spark, f"{self.root}/{db}")
                if fs.exists(dbp):
                    found += [f"{db}.{st.getPath().getName()}" for st in fs.listStatus(dbp) if st.isDirectory()]
        else:
            for db in DATABASES:
                d = os.path.join(self.root, db)
                if os.path.isdir(d):
                    found += [f"{db}.{t}" for t in sorted(os.listdir(d))
                              if os.path.isdir(os.path.join(d, t, "_delta_log"))]
        return found

    def drop(self, name: str) -> None:
        """Remove a table: its catalog entry and its folder (data files and log). For a table no code reads
        any more; a published table is replaced or deleted from, never dropped."""
        with _CATALOG_LOCK:
            self.spark.sql(f"DROP TABLE IF EXISTS {name}")   # an external table: the data stays for remove_path
            _REGISTERED.pop((id(self.spark), name), None)
        self.remove_path(self.path(name))

    def register_all(self) -> None:
        for db in DATABASES:
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
        for name in self.tables():
            self.register(name)

    # ------------------------------------------------------------------ reads
    def read(self, name: str, version: Optional[int] = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(name))

    def holds_day_after(self, name: str, day: str, column: str = "as_of") -> bool:
        """True when ``name`` has a row whose ``column`` (a date) is after ``day``. A backfill of
        ``day`` leaves such latest-day tables (current map, profile, catalog) as they are."""
        from pyspark.sql import functions as F

        if not self.exists(name):
            return False
        df = self.read(name)
        if column not in df.columns:
            return False
        latest = df.agg(F.max(column)).first()[0]
        return latest is not None and str(latest)[:10] > day

    def read_or_empty(self, name: str, schema: str) -> DataFrame:
        return self.read(name) if self.exists(name) else self.spark.createDataFrame([], schema)

    # ------------------------------------------------------------------ writes
    def overwrite(self, df: DataFrame, name: str, partition_by: Sequence[str] = (),
                  replace_where: Optional[str] = None, stats_columns: Sequence[str] = ()) -> None:
        """Replace the table (or, with ``replace_where``, just the matching partition) atomically.

        ``stats_columns``: when the write creates the table, Delta keeps file statistics for these
        columns only (``delta.dataSkippingStatsColumns``) instead of the first 32. Statistics serve
        data skipping on filtered columns; on a 16M-row holdings load, collecting them for every
        column took 11 s of a 27 s write.
        """
        started = time.monotonic()
        writer = df.write.format("delta").mode("overwrite")
        exists = self.exists(name)
        partial = bool(replace_where) and exists
        if partial:
            writer = writer.option("replaceWhere", replace_where)
        else:
            writer = writer.option("overwriteSchema", "true")
        if not exists:
            writer = _stats_for(writer, stats_columns)
        _partitioned(writer, df, name, partition_by).save(self.path(name))
        self.register(name)
        self._published(name, df, True, replace_where if partial else None)
        _written(name, f"rows where {replace_where} replaced" if partial else "overwritten", started)

    def replace_day(self, df: DataFrame, name: str, as_of: str, column: str = "as_of",
                    stats_columns: Sequence[str] = ()) -> None:
        """Replace one day of a table partitioned by ``column`` (the other days kept).
        ``stats_columns``: see :meth:`overwrite` (used when the write creates the table).

        The first write appends: overwrite would combine overwriteSchema with partitionBy, which Delta
        refuses under the session's dynamic partitionOverwriteMode.
        """
        if self.exists(name):
            self.overwrite(df, name, partition_by=(column,), replace_where=day_predicate(as_of, column))
        else:
            self.append(df, name, partition_by=(column,), stats_columns=stats_columns)

    def append(self, df: DataFrame, name: str, partition_by: Sequence[str] = (),
               options: Optional[dict[str, str]] = None, stats_columns: Sequence[str] = ()) -> None:
        """Append; ``options`` such as Delta's txnAppId/txnVersion make a replayed append a no-op.
        ``stats_columns``: see :meth:`overwrite` (used when the append creates the table)."""
        started = time.monotonic()
        exists = self.exists(name)
        first = name in self._passed and not exists
        writer = df.write.format("delta").mode("append").options(**(options or {}))
        if not exists:
            writer = _stats_for(writer, stats_columns)
        _partitioned(writer, df, name, partition_by).save(self.path(name))
        self.register(name)
        self._published(name, df, first)
        _written(name, "appended" if exists else "created", started)

    def merge(self, df: DataFrame, name: str, keys: Iterable[str], update_when: Optional[str] = None,
              partition_by: Sequence[str] = (), stats_columns: Sequence[str] = (),
              target_filter: Optional[str] = None) -> None:
        """Upsert ``df`` into ``name`` by ``keys``; ``update_when`` (over ``t.`` and ``s.``) guards updates.
        ``stats_columns``: see :meth:`overwrite` (used when the merge creates the table).
        ``target_filter`` (over ``t.``): a predicate every matching target row meets; Delta skips the
        files whose statistics rule it out instead of joining the whole table."""
        keys = list(keys)
        if not self.exists(name):
            self.overwrite(df, name, partition_by=partition_by, stats_columns=stats_columns)
            return
        started = time.monotonic()
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
        if target_filter:
            cond += f" AND ({target_filter})"
        (DeltaTable.forPath(self.spark, self.path(name)).alias("t")
         .merge(df.alias("s"), cond)
         .whenMatchedUpdateAll(condition=update_when)
         .whenNotMatchedInsertAll()
         .execute())
        self.register(name)
        self._published(name, df, False)
        _written(name, f"merged on {', '.join(keys)}", started)

    def stage(self, df: DataFrame, name: str) -> DataFrame:
        """Materialise ``df`` beside the warehouse so that checks and publication read one result.

        Plain Parquet, not Delta: a staged result is scratch, written and read once per run, and never
        a table anyone else reads. A Delta write and read-back cost 1.2 s more here (log replay, commit,
        file filtering on every query), some 30 times a run. Published tables stay Delta.
        """
        path = self.staging_path(name)
        df.write.mode("overwrite").parquet(path)
        return self.spark.read.parquet(path)


def _written(name: str, how: str, started: float) -> None:
    """The progress line of one write: a stage's publication is many writes, and this says which took the time."""
    log.info("tables: %s %s in %.1f s", name, how, time.monotonic() - started)


def _stats_for(writer, stats_columns: Sequence[str]):
    """``writer`` creating a table whose files keep statistics for ``stats_columns`` only (Delta's default, the
    first 32 columns, when none are named). A table property: it holds for the table's later writes too."""
    return writer.option("delta.dataSkippingStatsColumns", ",".join(stats_columns)) if stats_columns else writer


def _partitioned(writer, df: DataFrame, name: str, partition_by: Sequence[str]):
    """``writer`` partitioned by ``partition_by``, none of them a timestamp column.

    A timestamp partition value is text in the session's time zone, and the session turns off the check
    Delta runs for that case (``kequn.session.DELTA_ZONE_CHECK_KEY``): such a table is refused here.
    """
    if not partition_by:
        return writer
    types = dict(df.dtypes)
    timed = [c for c in partition_by if types.get(c, "").startswith("timestamp")]
    if timed:
        raise ValueError(f"{name}: partition column(s) {', '.join(timed)} of type timestamp; kequn partitions "
                         "by dates (a timestamp partition value depends on the session's time zone)")
    return writer.partitionBy(*partition_by)
