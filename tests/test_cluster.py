"""The pipeline submitted with spark-submit to a real Spark standalone cluster (master and worker on
loopback, from the pyspark wheel), the library shipped as dist/kequn.zip, Delta by --packages from
the set-up cache: what a data engineer does on a cluster, on this machine.

The submitted run is the demo warehouse's first day (conftest.demo_day1_on_cluster); the second day
runs in this process on the same warehouse, and test_e2e checks both. The driver runs from an empty
folder and the zip comes first on its path, so nothing relies on the repository being the working
directory; executors are the worker's own processes.
"""
import pytest

from conftest import DEMO_DAY1 as DAY1
from reference import expected_groups


@pytest.mark.slow
def test_pipeline_submitted_to_a_standalone_cluster(spark, demo_day1_on_cluster):
    landing, wh, run = demo_day1_on_cluster
    print(f"spark-submit ran {run.seconds:.0f} s")
    assert run.returncode == 0, run.log[-4000:]
    session_lines = [l for l in run.log.splitlines() if "kequn.session" in l]
    assert any(f"master {run.master}" in l and "kequn.zip" in l for l in session_lines), \
        f"the driver ran on the cluster from the zip: {session_lines}"
    # landing.md's times are China Standard Time, whatever zone the cluster's JVM has.
    assert any("time zone Asia/Shanghai" in l for l in session_lines), session_lines

    finished = [a for a in run.completed_apps if a["state"] == "FINISHED"]
    assert len(finished) == 1 and finished[0]["cores"] > 0, run.completed_apps
    assert run.executor_logs, "the worker started executors for the application"

    expected, _ = expected_groups(landing, DAY1)
    got: dict = {}
    for r in spark.read.format("delta").load(str(wh / "silver" / "one_id_map_history")) \
            .where(f"as_of = DATE'{DAY1}'").collect():
        got.setdefault(r.one_id, set()).add((r.source, r.source_key))
    assert {frozenset(g) for g in got.values()} == expected
    for table in ("gold/tag_values", "gold/segment_members", "gold/journey_state", "quality/validation_results"):
        day = spark.read.format("delta").load(str(wh / table)).where(f"as_of = DATE'{DAY1}'")
        assert day.limit(1).count() == 1, table
