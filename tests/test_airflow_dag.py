"""The Airflow DAG (jobs/airflow/kequn_daily.py), loaded by a real Airflow.

Airflow and its Spark provider are installed (by uv) into their own virtual environment,
.cache/airflow-venv (pins: AIRFLOW_PACKAGES in lib/kequn/versions.py), never into kequn's .venv.
The first run installs them (seconds, needs PyPI); later runs reuse the venv while its stamp
file matches the pins, and need no network. The check itself runs in that venv's python, in a
subprocess, and writes what it found as JSON, which the assertions below read (and which is shown
when one fails). No Spark session is needed.
"""
import fcntl
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "jobs" / "airflow" / "kequn_daily.py"
VENV = ROOT / ".cache" / "airflow-venv"
VERSIONS = runpy.run_path(str(ROOT / "lib" / "kequn" / "versions.py"))
STAGES = ["ingest", "identity", "tags", "quality", "segments", "journeys"]
AS_OF = "2026-11-25"


def airflow_python():
    """The venv's python, (re)building the venv unless its stamp matches the pins."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "airflow-venv.lock", "w") as lock:  # two test runs never build it at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _airflow_python()


def _airflow_python():
    py = VENV / "bin" / "python"
    stamp = VENV / "kequn-pins.txt"
    want = "\n".join([sys.version.split()[0], *VERSIONS["AIRFLOW_PACKAGES"]]) + "\n"
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    shutil.rmtree(VENV, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
    # uv, which scripts/setup put beside this python: 6 s where pip took 65 s.
    subprocess.run([str(Path(sys.executable).parent / "uv"), "pip", "install", "-q", "--python", str(py),
                    *VERSIONS["AIRFLOW_PACKAGES"]], check=True)
    stamp.write_text(want)  # written last: an interrupted install is redone next time
    print(f"installed {VERSIONS['AIRFLOW_PACKAGES']} into {VENV} in {time.monotonic() - t0:.0f}s")
    return py


# Runs in the Airflow venv: loads the DAG as Airflow does, renders each task for a logical date and
# builds its spark-submit command line; writes what it found as JSON to argv[2].
CHECK = r'''
import json, sys
from datetime import datetime, timezone

from airflow.dag_processing.dagbag import DagBag
from airflow.cli.commands.task_command import _get_template_context, _get_ti  # what `airflow tasks render` runs
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.utils.cli import get_db_dag

dags_folder, out, dag_id = sys.argv[1], sys.argv[2], sys.argv[3]
bag = DagBag(dag_folder=dags_folder)
report = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
dag = bag.dags.get(dag_id)
if dag is not None:
    report.update(catchup=dag.catchup, max_active_runs=dag.max_active_runs, tasks={
        t.task_id: {"operator": type(t).__name__, "upstream": sorted(t.upstream_task_ids),
                    "retries": t.retries, "retry_delay_s": t.retry_delay.total_seconds(),
                    "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule))}
        for t in dag.tasks})
    # The scheduler's view (the serialized DAG `airflow dags reserialize` stored): the scheduled run
    # after the one for 2026-11-24.
    sdag = get_db_dag(None, dag_id)
    utc = lambda *a: datetime(*a, tzinfo=timezone.utc)
    info = sdag.timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(utc(2026, 11, 24), utc(2026, 11, 25)),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    logical_date = info.logical_date.isoformat()
    report["scheduled_run"] = {"run_after": info.run_after.isoformat(), "logical_date": logical_date}
    report["rendered"], report["commands"] = {}, {}
    for task in dag.tasks:
        ti, _ = _get_ti(sdag.get_task(task.task_id), -1, logical_date_or_run_id=logical_date,
                        create_if_necessary="memory")
        task.render_template_fields(_get_template_context(ti, task))
        report["rendered"][task.task_id] = {f: getattr(task, f) for f in
                                            ("application", "application_args", "py_files", "packages", "name")}
        report["commands"][task.task_id] = task._get_hook()._build_spark_submit_command(task.application)
with open(out, "w") as f:
    json.dump(report, f, indent=1, default=str)
'''


def run(cmd, env, timeout=300):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    py = airflow_python()
    home = tmp_path_factory.mktemp("airflow_home")
    dags = home / "dags"
    dags.mkdir()
    (dags / DAG_FILE.name).symlink_to(DAG_FILE)  # deployed as docs/airflow.md says
    # Nothing of kequn's environment leaks in: Airflow does not need kequn importable.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AIRFLOW") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({
        "PATH": f"{py.parent}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Airflow Variables and a connection, through Airflow's environment-variable secrets backend;
        # kequn_home and kequn_conf are left to their defaults (the checkout the symlink points into).
        "AIRFLOW_VAR_KEQUN_LANDING": "/data/test/landing",
        "AIRFLOW_VAR_KEQUN_WAREHOUSE": "/data/test/warehouse",
        "AIRFLOW_VAR_KEQUN_SPARK_CONN_ID": "kequn_spark",
        "AIRFLOW_CONN_KEQUN_SPARK": "spark://spark-master:7077",
    })
    run([str(py.parent / "airflow"), "db", "migrate"], env)
    run([str(py.parent / "airflow"), "dags", "reserialize"], env)
    script, out = home / "check_dag.py", home / "report.json"
    script.write_text(CHECK)
    reports = {}
    for dag_id in ("kequn_daily", "kequn_maintenance"):
        run([str(py), str(script), str(dags), str(out), dag_id], env)
        reports[dag_id] = json.loads(out.read_text())
    print(json.dumps(reports, indent=1))
    return reports


@pytest.fixture(scope="module")
def report(reports):
    return reports["kequn_daily"]


def after(seq, flag):
    """The element following flag in seq (None if flag is absent or last)."""
    return seq[seq.index(flag) + 1] if flag in seq[:-1] else None


@pytest.mark.slow
def test_dag_loads_with_stage_order_and_retries(report):
    assert report["import_errors"] == {}
    assert report["dag_ids"] == ["kequn_daily", "kequn_maintenance"]
    assert report["catchup"] is False and report["max_active_runs"] == 1
    tasks = report["tasks"]
    assert sorted(tasks) == sorted(STAGES), "one task per batch stage, no stream task"
    for i, stage in enumerate(STAGES):
        t = tasks[stage]
        assert t["operator"] == "SparkSubmitOperator"
        assert t["upstream"] == STAGES[i - 1:i], f"{stage} must follow exactly {STAGES[i - 1:i]}"
        assert t["trigger_rule"] == "all_success", "quality must gate what follows"
        assert t["retries"] >= 1 and t["retry_delay_s"] > 0


@pytest.mark.slow
def test_scheduled_run_is_for_the_day_that_ended(report):
    """The run that starts when 2026-11-25 is over is the one for 2026-11-25 (its ds)."""
    assert report["scheduled_run"] == {"run_after": "2026-11-26T00:00:00+00:00",
                                       "logical_date": "2026-11-25T00:00:00+00:00"}


@pytest.mark.slow
def test_rendered_tasks_and_spark_submit_commands(report):
    packages = ",".join(VERSIONS["JVM_PACKAGES"])
    zip_path = str(ROOT / "dist" / "kequn.zip")
    for stage in STAGES:
        r = report["rendered"][stage]
        args = r["application_args"]
        assert after(args, "--as-of") == AS_OF, args
        assert after(args, "--landing") == "/data/test/landing"
        assert after(args, "--warehouse") == "/data/test/warehouse"
        assert after(args, "--conf") == str(ROOT / "conf")
        assert r["name"] == f"kequn-{stage}-{AS_OF}"

        cmd = report["commands"][stage]
        assert cmd[0] == "spark-submit"
        assert after(cmd, "--master") == "spark://spark-master:7077"
        assert after(cmd, "--packages") == packages
        assert after(cmd, "--py-files") == zip_path
        app = str(ROOT / "jobs" / f"{stage}.py")
        assert cmd[cmd.index(app) + 1:] == args, "the application, then its arguments"
        assert Path(app).is_file()


@pytest.mark.slow
def test_weekly_maintenance_runs_maintain_for_the_week_that_ended(reports):
    rep = reports["kequn_maintenance"]
    assert rep["import_errors"] == {}
    assert rep["catchup"] is False and rep["max_active_runs"] == 1
    assert list(rep["tasks"]) == ["maintain"] and rep["tasks"]["maintain"]["operator"] == "SparkSubmitOperator"
    # The first run after 2026-11-25: Sunday 2026-11-29 at 12:00 UTC, and --as-of is that Sunday.
    assert rep["scheduled_run"] == {"run_after": "2026-11-29T12:00:00+00:00",
                                    "logical_date": "2026-11-29T12:00:00+00:00"}
    end = "2026-11-29"
    r = rep["rendered"]["maintain"]
    args = r["application_args"]
    assert after(args, "--as-of") == end and after(args, "--warehouse") == "/data/test/warehouse"
    assert after(args, "--conf") == str(ROOT / "conf") and "--landing" not in args
    cmd = rep["commands"]["maintain"]
    app = str(ROOT / "jobs" / "maintain.py")
    assert after(cmd, "--packages") == ",".join(VERSIONS["JVM_PACKAGES"])
    assert cmd[cmd.index(app) + 1:] == args and Path(app).is_file()
