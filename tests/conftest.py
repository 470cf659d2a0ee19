"""One SparkSession for the whole test run (JVM start-up is paid once)."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from kequn import versions

os.environ.setdefault("KEQUN_TEST", "1")
os.environ.setdefault("KEQUN_PSEUDONYM_KEY", "test-key-not-secret")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from kequn.session import build_session

    wh = tmp_path_factory.mktemp("session_wh")
    s = build_session(str(wh))
    yield s
    s.stop()


@contextlib.contextmanager
def session_conf(spark, settings: dict):
    """The shared session with ``settings`` (Spark SQL keys) for the block; each key's value before it comes
    back after it."""
    before = {k: spark.conf.get(k) for k in settings}
    try:
        for k, v in settings.items():
            spark.conf.set(k, v)
        yield
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)


@pytest.fixture()
def warehouse(spark, tmp_path):
    """A fresh warehouse folder served by the shared session."""
    from kequn.tables import Warehouse

    return Warehouse(spark, str(tmp_path / "wh"))


DEMO_END = "2026-11-25"
DEMO_DAY1 = "2026-11-24"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ClusterRun:
    """What spark-submit left behind: its exit status and log, the master's view of the application
    and the executors' log files (read before the cluster stops)."""
    master: str
    returncode: int
    log: str
    completed_apps: list
    executor_logs: list
    seconds: float


def submit_run(master: str, landing: Path, wh: Path, as_of: str, cwd: Path) -> subprocess.CompletedProcess:
    """`jobs/run.py` by spark-submit, as README's "Running on a cluster" does it: the library as
    dist/kequn.zip, Delta by --packages from the set-up cache, settings on the command line."""
    package = subprocess.run([str(ROOT / "scripts" / "package")], capture_output=True, text=True, timeout=120)
    assert package.returncode == 0, package.stderr
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    env.pop("KEQUN_TEST", None)  # settings come from the command line, as on a real cluster
    cmd = [str(ROOT / ".venv" / "bin" / "spark-submit"), "--master", master,
           "--packages", ",".join(versions.JVM_PACKAGES),
           "--conf", f"spark.jars.ivy={ROOT / '.cache' / 'ivy'}",
           "--conf", f"spark.jars.ivySettings={ROOT / 'conf' / 'ivysettings.xml'}",
           # Small data: few tasks per job (Delta rebuilds a table's state with 50 tasks by default).
           "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.default.parallelism=2",
           "--conf", "spark.databricks.delta.snapshotPartitions=2", "--conf", "spark.ui.enabled=false",
           # The suite's own setting for thousands of tiny queries (see kequn.session): interpreted projections.
           "--conf", "spark.sql.codegen.factoryMode=NO_CODEGEN",
           # As the README's command (kequn.session.JIT_OPTION): the running JVMs cannot be given it later.
           "--conf", "spark.driver.extraJavaOptions=-XX:-DontCompileHugeMethods",
           "--conf", "spark.executor.extraJavaOptions=-XX:-DontCompileHugeMethods",
           "--executor-memory", "1g", "--py-files", str(ROOT / "dist" / "kequn.zip"),
           str(ROOT / "jobs" / "run.py"), "--landing", str(landing), "--warehouse", str(wh),
           "--as-of", as_of, "--conf", str(ROOT / "conf")]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)


def run_on_local_cluster(state: Path, landing: Path, wh: Path, as_of: str) -> ClusterRun:
    """Start a standalone master and worker (scripts/local-cluster, from the pyspark wheel), submit one
    day's run from an empty driver folder, record what the cluster saw, stop it."""
    env = dict(os.environ, KEQUN_CLUSTER_DIR=str(state), KEQUN_CLUSTER_PORT=str(free_port()),
               KEQUN_CLUSTER_UI_PORT=str(free_port()), KEQUN_CLUSTER_CORES="2", KEQUN_CLUSTER_MEMORY="2g")
    script = ROOT / "scripts" / "local-cluster"
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        master = f"spark://127.0.0.1:{env['KEQUN_CLUSTER_PORT']}"
        cwd = state / "driver"
        cwd.mkdir()
        t0 = time.monotonic()
        done = submit_run(master, landing, wh, as_of, cwd)
        seconds = time.monotonic() - t0
        apps = json.load(urllib.request.urlopen(f"http://127.0.0.1:{env['KEQUN_CLUSTER_UI_PORT']}/json/"))
        executors = [str(p) for p in (state / "work").glob("app-*/*/stderr")]
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=60)
    # spark-submit's PythonRunner merges the Python driver's stderr (our log) into its own stdout.
    return ClusterRun(master, done.returncode, done.stdout + done.stderr, apps["completedapps"], executors, seconds)


@pytest.fixture(scope="session")
def demo_day1_on_cluster(tmp_path_factory):
    """`kequn generate`, then the first day by spark-submit on a standalone cluster on this machine.

    The demo warehouse's first day comes from a cluster and its second from the CLI in this process:
    one warehouse continued by both, which is what a team moving jobs between a laptop and a cluster
    relies on, and one pipeline run fewer for the suite to pay."""
    from kequn import cli

    root = tmp_path_factory.mktemp("e2e")
    landing, wh = root / "landing", root / "warehouse"
    assert cli.main(["generate", "--out", str(landing), "--persons", "150", "--days", "4", "--seed", "3",
                     "--end", DEMO_END]) == 0
    return landing, wh, run_on_local_cluster(tmp_path_factory.mktemp("cluster"), landing, wh, DEMO_DAY1)


@pytest.fixture(scope="session")
def pipeline_demo(spark, demo_day1_on_cluster):
    """The demo warehouse the end-to-end checks and the notebooks read (built once per test run): its
    first day from the cluster, then `kequn run` for the second day in this process, on the shared
    session."""
    from kequn import cli

    landing, wh, day1 = demo_day1_on_cluster
    codes = {DEMO_DAY1: day1.returncode}
    if day1.returncode == 0:
        codes[DEMO_END] = cli.main(["run", "--landing", str(landing), "--warehouse", str(wh), "--as-of", DEMO_END])
    return landing, wh, codes
