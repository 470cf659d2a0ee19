"""`kequn sql-server` as a BI tool meets it: a separate process serving a small warehouse over the
HiveServer2 protocol, queried with the pyspark wheel's own `beeline` (the Hive JDBC driver).

The server runs in its own process group from an empty working directory, without a pseudonymisation
key; teardown kills the group whatever happened and checks the port is free again. The tests run in
file order: the last one stops the server the way an operator does (SIGTERM to the command alone).
"""
import csv
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port

pytestmark = pytest.mark.slow

ONE_ID_MAP = [(1, "core_customer", "客群", dt.date(2026, 11, 24)),
              (2, "card_account", None, dt.date(2026, 11, 25)),
              (3, "app_user", "U-3", dt.date(2026, 11, 25))]
START_TIMEOUT = 600  # a cold JVM on a busy 2-core machine


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def beeline(port: int, statements: list[str], force: bool = False) -> subprocess.CompletedProcess:
    """Run ``statements`` (SQL, or beeline commands such as ``!columns``), one ``-e`` each; the
    prompts beeline sometimes prints before a result are removed from ``stdout``."""
    import pyspark

    home = Path(pyspark.__file__).parent
    cmd = [str(home / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/default",
           "--outputformat=csv2", "--silent=true", f"--force={str(force).lower()}"]
    for statement in statements:
        cmd += ["-e", statement]
    done = subprocess.run(cmd, env=dict(os.environ, SPARK_HOME=str(home)), capture_output=True, text=True,
                          timeout=300)
    done.stdout = re.sub(r"\d+: jdbc:hive2://\S+> ", "", done.stdout)
    return done


@pytest.fixture(scope="module")
def server(spark, tmp_path_factory):
    from kequn.tables import Warehouse

    root = tmp_path_factory.mktemp("sql_server")
    wh = Warehouse(spark, str(root / "warehouse"))
    wh.overwrite(spark.createDataFrame(ONE_ID_MAP, "one_id long, source string, source_key string, as_of date"),
                 "gold.one_id_map")
    wh.overwrite(spark.createDataFrame([("gold.one_id_map", True)], "table_name string, success boolean"),
                 "quality.validation_results")
    wh.overwrite(spark.createDataFrame([("core_customer", "bad date")], "source string, reason string"),
                 "bronze.quarantine")
    wh.overwrite(spark.createDataFrame([("tok1", "张三 13800000000")], "token string, value string"),
                 "bronze.pii_vault")

    port, cwd, log = free_port(), root / "cwd", root / "server.log"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEQUN_PSEUDONYM_KEY")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kequn.cli", "sql-server", "--warehouse", wh.root,
                                 "--port", str(port)], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "sql-server: ready at" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}"
            time.sleep(2)
        assert not _port_free(port)
        yield dict(proc=proc, port=port, wh=wh, cwd=cwd, log=log)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(1)
        assert _port_free(port), f"port {port} still held after the process group was killed"


def test_ready_line_names_the_jdbc_url_and_the_tables_served(server):
    text = server["log"].read_text()
    # gold.one_id_map, quality.validation_results, bronze.quarantine; never bronze.pii_vault
    assert f"ready at jdbc:hive2://127.0.0.1:{server['port']}/default serving 3 tables" in text, text[-3000:]


def test_query_over_jdbc_returns_what_spark_reads(spark, server):
    done = beeline(server["port"], ["SELECT * FROM gold.one_id_map ORDER BY one_id", "SHOW TABLES IN bronze",
                                    "!columns one_id_map"])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()

    # getColumns (what a BI tool's column list calls) knows the Delta table's columns
    columns = [l.split(",")[3] for l in lines if l.startswith("NULL,gold,one_id_map,")]
    assert columns == ["one_id", "source", "source_key", "as_of"], done.stdout

    assert "one_id,source,source_key,as_of" in lines, done.stdout
    start = lines.index("one_id,source,source_key,as_of")
    end = lines.index("namespace,tableName,isTemporary")
    got = [tuple(r) for r in csv.reader(lines[start + 1:end])]
    expected = [tuple("NULL" if v is None else str(v) for v in r)
                for r in server["wh"].read("gold.one_id_map").orderBy("one_id").collect()]
    assert got == expected
    assert len(got) == len(ONE_ID_MAP)

    meta = next(i for i, l in enumerate(lines) if l.startswith("TABLE_CAT,"))
    assert lines[end + 1:meta] == ["bronze,quarantine,false"]


def test_the_vault_is_not_queryable(server):
    vault = Path(server["wh"].path("bronze.pii_vault"))
    assert (vault / "_delta_log").is_dir()
    done = beeline(server["port"], ["SELECT * FROM bronze.pii_vault", f"SELECT * FROM delta.`{vault}`"],
                   force=True)
    assert "张三" not in done.stdout and "13800000000" not in done.stdout
    errors = [l for l in done.stderr.splitlines() if l.startswith("Error:")]
    assert len(errors) == 2, done.stderr[-3000:]
    assert "bronze`.`pii_vault` cannot be found" in errors[0]
    assert re.search(r"`delta`\.`[^`]*pii_vault` cannot be found", errors[1])


def test_sigterm_stops_the_server_and_its_jvm(server):
    proc, port = server["proc"], server["port"]
    scratch = re.search(r"scratch folder (\S+);", server["log"].read_text()).group(1)
    assert Path(scratch).is_dir()
    jvms = _children(proc.pid)
    assert jvms, "the command runs its JVM as a child process"

    proc.send_signal(signal.SIGTERM)  # the command alone, not its process group
    assert proc.wait(timeout=120) == 0, server["log"].read_text()[-3000:]
    assert "sql-server: stopping" in server["log"].read_text()
    assert not [p for p in jvms if _alive(p)], "the JVM outlived the command"
    assert _port_free(port)
    assert not Path(scratch).exists(), "the per-run folder is removed"
    assert list(server["cwd"].iterdir()) == [], "nothing (derby.log, metastore_db) in the working directory"
