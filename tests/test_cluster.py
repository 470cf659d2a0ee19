"""The pipeline submitted with spark-submit to a real Spark standalone cluster (master and worker on
loopback, from the pyspark wheel), the library shipped as dist/kequn.zip, Delta by --packages from
the set-up cache: what a data engineer does on a cluster, on this machine.

The driver runs from an empty folder and the zip comes first on its path, so nothing relies on
the repository being the working directory; executors are the worker's own processes.
"""
import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from kequn import cli, versions
from reference import expected_groups

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-25"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, KEQUN_CLUSTER_DIR=str(state), KEQUN_CLUSTER_PORT=str(_free_port()),
               KEQUN_CLUSTER_UI_PORT=str(_free_port()), KEQUN_CLUSTER_CORES="2", KEQUN_CLUSTER_MEMORY="2g")
    script = ROOT / "scripts" / "local-cluster"
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield env
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=60)


@pytest.mark.slow
def test_pipeline_submitted_to_a_standalone_cluster(cluster, spark, tmp_path):
    landing, wh, cwd = tmp_path / "landing", tmp_path / "warehouse", tmp_path / "driver"
    cwd.mkdir()
    assert cli.main(["generate", "--out", str(landing), "--persons", "40", "--days", "2", "--seed", "5",
                     "--end", AS_OF]) == 0
    package = subprocess.run([str(ROOT / "scripts" / "package")], capture_output=True, text=True, timeout=120)
    assert package.returncode == 0, package.stderr
    master = f"spark://127.0.0.1:{cluster['KEQUN_CLUSTER_PORT']}"
    env = dict(cluster, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               KEQUN_PSEUDONYM_KEY="cluster-test-key")
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
           "--executor-memory", "1g", "--py-files", str(ROOT / "dist" / "kequn.zip"),
           str(ROOT / "jobs" / "run.py"), "--landing", str(landing), "--warehouse", str(wh),
           "--as-of", AS_OF, "--conf", str(ROOT / "conf")]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    # spark-submit's PythonRunner merges the Python driver's stderr (our log) into its own stdout.
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    session_lines = [l for l in log.splitlines() if "kequn.session" in l]
    assert any(f"master {master}" in l and "kequn.zip" in l for l in session_lines), \
        f"the driver ran on the cluster from the zip: {session_lines}"

    apps = json.load(urllib.request.urlopen(f"http://127.0.0.1:{cluster['KEQUN_CLUSTER_UI_PORT']}/json/"))
    finished = [a for a in apps["completedapps"] if a["state"] == "FINISHED"]
    assert len(finished) == 1 and finished[0]["cores"] > 0, apps["completedapps"]
    executors = list((Path(cluster["KEQUN_CLUSTER_DIR"]) / "work").glob("app-*/*/stderr"))
    assert executors, "the worker started executors for the application"

    expected, _ = expected_groups(landing, AS_OF)
    got: dict = {}
    for r in spark.read.format("delta").load(str(wh / "gold" / "one_id_map")).collect():
        got.setdefault(r.one_id, set()).add((r.source, r.source_key))
    assert {frozenset(g) for g in got.values()} == expected
    for table in ("gold/tag_values", "gold/segment_members", "gold/journey_state", "quality/validation_results"):
        assert spark.read.format("delta").load(str(wh / table)).limit(1).count() == 1, table
