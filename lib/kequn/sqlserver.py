"""``kequn sql-server``: the warehouse's tables over JDBC/ODBC (HiveServer2 protocol) for BI tools.

Design. This process builds the session through kequn's own factory (same confs, same Delta jars
from the set-up cache, same catalog), registers the tables under their ``db.table`` names, then
starts Spark's Thrift server *inside that session's JVM* with
``HiveThriftServer2.startWithSparkSession`` (through py4j) and waits for SIGTERM or Ctrl-C. The
alternative, ``spark-submit --class ...HiveThriftServer2`` plus a separate step that registers the
tables, would need a persistent Hive metastore shared by two JVMs (Derby allows one) and a second
copy of the session settings; here there is one JVM, one place for settings, and the in-memory
catalog every kequn session uses: the tables are registered from the folders at each start (and
folders that appear later are picked up every ``REFRESH_SECONDS``), so no metastore can go stale.
Every JDBC connection gets its own Spark session over that shared catalog.

What the JVM needs, and why:

- the Delta jars on the *driver class path* (``spark.driver.extraClassPath``), not only in
  ``spark.jars``: the Thrift server opens each connection's session from its own threads, whose
  class loader does not see ``spark.jars`` ("Cannot find catalog plugin class ... DeltaCatalog");
- a fresh per-run folder for everything the server writes: ``java.io.tmpdir`` (where the Hive that
  the Thrift server embeds keeps its scratch, resource and operation-log folders, and Spark its
  block manager), Hive's ``hive.exec.scratchdir`` and ``derby.stream.error.file`` (``derby.log``,
  else written to the working directory). That Hive's Derby metastore is in memory (Spark's
  ``HiveUtils.newClientForExecution``), so nothing of it is on disk and two servers never share
  one; kequn's tables are in Spark's in-memory catalog, not in Derby. (Not ``derby.system.home``:
  with it set, Derby fails to re-create the in-memory metastore when a connection closes.) The
  folder is deleted when the server stops;
- ``spark.databricks.delta.catalog.update.enabled``: Delta then keeps each table's columns in the
  catalog (by default it stores an empty schema), which is where JDBC ``getColumns`` (a BI tool's
  column list) reads them from. Columns added later by a pipeline run in another process show in
  queries at once, in that list after a restart.

Stopping: SIGTERM, SIGINT or SIGHUP stops the Thrift server and the session, closes the JVM's
stdin (the pyspark gateway exits on EOF) and waits for the JVM to end, so the port and the folder
are free when the command returns. A signal during start-up takes effect once the session is up
(interrupting pyspark's JVM launch would orphan the JVM). If this process is killed outright, the
JVM still exits on that EOF; if the JVM dies, this process notices within ``POLL_SECONDS`` and
exits 1.

Exposure. ``bronze.pii_vault`` (clear personal data) is never registered, and path queries
(``SELECT * FROM delta.`/path```) are off (``spark.sql.runSQLOnFiles=false``). That keeps honest
clients away from it; it is no security boundary: there is no authentication and no authorization,
and a client can ``SET`` that option back or ``CREATE TABLE ... LOCATION`` any folder this process
can read, and can write to the registered tables. Hence the loopback default; to protect the vault
from a BI tool, run the server as an OS user that cannot read ``bronze/pii_vault``.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Mapping, Optional

from . import versions
from .config import PipelineConfig
from .session import build_session, cached_jars, resolve_packages, under_spark_submit
from .tables import DATABASES, Warehouse, absolute

log = logging.getLogger(__name__)

EXCLUDED = frozenset({"bronze.pii_vault"})  # clear personal data: never served
REFRESH_SECONDS = 60  # how often folders of tables created after the start are looked for
POLL_SECONDS = 5  # how often the JVM is checked to be alive
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def jdbc_url(host: str, port: int) -> str:
    return f"jdbc:hive2://{host}:{port}/default"


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [repr(e)])[0]


def _jvm_alive(spark) -> bool:
    try:
        spark.sparkContext._jvm.java.lang.System.currentTimeMillis()
        return True
    except Exception:
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def server_conf(run_dir: str, host: str, port: int, config: PipelineConfig,
                overrides: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The session settings the Thrift server needs; the user's own (``--spark-conf``, or
    ``spark.conf`` in conf/pipeline.yaml) win, except that a driver class path or Java options
    given there are extended, not replaced."""
    given = {**config.spark.conf, **(overrides or {})}
    scratch = os.path.join(run_dir, "hive-scratch")
    os.makedirs(scratch, exist_ok=True)
    conf = {
        "spark.sql.warehouse.dir": os.path.join(run_dir, "spark-warehouse"),  # stray managed tables: not in W
        "spark.sql.runSQLOnFiles": "false",
        "spark.databricks.delta.catalog.update.enabled": "true",
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.transport.mode": "binary",
        "spark.hadoop.hive.exec.scratchdir": scratch,  # the only Hive folder not under java.io.tmpdir
    }
    jvm = {}
    if not under_spark_submit():  # under spark-submit the driver JVM is running already
        jars = cached_jars(versions.JVM_PACKAGES) or resolve_packages()
        jvm["spark.driver.extraClassPath"] = os.pathsep.join(
            [*jars, *filter(None, [given.get("spark.driver.extraClassPath")])])
        jvm["spark.driver.extraJavaOptions"] = " ".join(
            filter(None, [f"-Djava.io.tmpdir={run_dir}", f"-Dderby.stream.error.file={run_dir}/derby.log",
                          given.get("spark.driver.extraJavaOptions")]))
    return {**conf, **given, **jvm}


def register(spark, warehouse: str) -> list[str]:
    """Register the warehouse's tables (the vault excepted); return the names served."""
    wh = Warehouse(spark, warehouse)
    names = [n for n in wh.tables() if n not in EXCLUDED]
    for db in DATABASES:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    for name in names:
        wh.register(name)
    return names


def serve(warehouse: str, config: Optional[PipelineConfig] = None, host: str = "127.0.0.1",
          port: int = 10001, overrides: Optional[Mapping[str, str]] = None) -> int:
    """Serve ``warehouse`` until SIGTERM, SIGINT or SIGHUP; return an exit status."""
    config = config or PipelineConfig()
    warehouse = absolute(warehouse)
    if "://" not in warehouse and not os.path.isdir(warehouse):
        log.error("sql-server: warehouse folder '%s' does not exist", warehouse)
        return EXIT_USAGE
    if not _port_free(host, port):
        log.error("sql-server: cannot listen on %s:%d (in use, or not an address of this machine)", host, port)
        return EXIT_USAGE
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("sql-server: listening on %s: the server has no authentication; anyone who reaches "
                    "the port can query every table served", host)

    # A signal only sets `stop`, also during start-up (see the module's doc on stopping).
    stop = threading.Event()

    def handle_signals():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())

    handle_signals()
    run_dir = tempfile.mkdtemp(prefix="kequn-sql-server-")
    server = None
    try:
        spark = build_session(None, config, overrides=server_conf(run_dir, host, port, config, overrides))
        handle_signals()  # again: pyspark's SparkContext installs its own SIGINT handler
        jvm = spark.sparkContext._jvm
        try:
            jvm.java.lang.ClassLoader.getSystemClassLoader().loadClass(DELTA_CATALOG)
        except Exception:
            log.error("sql-server: Delta is not on the driver class path; under spark-submit pass "
                      "--driver-class-path with the delta-spark and delta-storage jars (see jobs/sql_server.py)")
            return EXIT_USAGE
        names = register(spark, warehouse)
        if stop.is_set():
            log.info("sql-server: stopped while starting")
            return EXIT_OK
        try:
            server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithSparkSession(
                spark._jsparkSession, False)
        except Exception as e:
            log.error("sql-server: the Thrift server did not start: %s", _first_line(e))
            return EXIT_FAILED
        log.info("sql-server: ready at %s serving %d tables of %s (bronze.pii_vault excluded); "
                 "scratch folder %s; stop with Ctrl-C or SIGTERM", jdbc_url(host, port), len(names),
                 warehouse, run_dir)
        last_scan = time.monotonic()
        while not stop.wait(POLL_SECONDS):
            if not _jvm_alive(spark):
                if under_spark_submit():  # how such a server is stopped: SIGTERM to spark-submit's JVM
                    return EXIT_OK
                log.error("sql-server: the JVM has ended (killed, or out of memory?); stopping")
                return EXIT_FAILED
            if time.monotonic() - last_scan < REFRESH_SECONDS:
                continue
            last_scan = time.monotonic()
            try:
                added = sorted(set(register(spark, warehouse)) - set(names))
            except Exception as e:  # e.g. a table's first commit still being written: next round
                log.warning("sql-server: looking for new tables: %s", _first_line(e))
                continue
            if added:
                names += added
                log.info("sql-server: now serving %d tables (new: %s)", len(names), ", ".join(added))
        log.info("sql-server: stopping")
        return EXIT_OK
    except KeyboardInterrupt:  # pyspark's own SIGINT handler, before ours is back in place
        log.info("sql-server: stopped while starting")
        return EXIT_OK
    finally:
        _shutdown(server)
        shutil.rmtree(run_dir, ignore_errors=True)


def _shutdown(server) -> None:
    """Stop the Thrift server, the session and (when this process launched it) the JVM."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:  # interrupted before the JVM started
        return
    proc = getattr(gateway, "proc", None)  # None under spark-submit: the JVM is spark-submit's
    context = SparkContext._active_spark_context
    for step in (server and server.stop, context and context.stop):
        try:
            if step:
                step()
        except Exception as e:  # keep going: the JVM must end regardless
            log.warning("sql-server: while stopping: %s", _first_line(e))
    if proc is not None:
        try:
            proc.stdin.close()  # the pyspark gateway exits on EOF
            proc.wait(timeout=60)
        except Exception:
            proc.kill()
            proc.wait()
