"""kequn's daily batch for Airflow 3: one spark-submit per stage, ingest >> identity >> tags >>
quality >> segments >> journeys, each for the run's logical date (`--as-of {{ ds }}`). And its
weekly upkeep, `kequn_maintenance`: `kequn maintain` (OPTIMIZE and VACUUM of every table) on
Sundays at 12:00 UTC, when the day's batch (from 00:00 UTC) is long done.

Deploy it as docs/airflow.md says (symlink this file into the dags folder). Airflow Variables, all
optional:

  kequn_home           kequn checkout on the workers: jobs/, conf/, lib/ and dist/kequn.zip (built by
                       scripts/package). Default: the checkout this file is symlinked from, else
                       /opt/kequn
  kequn_landing        landing root                              default /data/kequn/landing
  kequn_warehouse      warehouse root                            default /data/kequn/warehouse
  kequn_conf           configuration folder                      default <kequn_home>/conf
  kequn_spark_conn_id  Airflow connection to the Spark master    default spark_default

The streaming job (jobs/stream.py) is not part of this DAG: it is a long-running job that runs on
its own, not a daily batch.
"""
import runpy
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, CronTriggerTimetable, Variable, chain

STAGES = ["ingest", "identity", "tags", "quality", "segments", "journeys"]

_checkout = Path(__file__).resolve().parent.parent.parent  # <home>/jobs/airflow/kequn_daily.py
DEFAULT_HOME = str(_checkout) if (_checkout / "jobs" / "run.py").is_file() else "/opt/kequn"

# Paths are Jinja: the Variables are read when a task runs, not every time the file is parsed.
HOME = "{{ var.value.get('kequn_home', %r) }}" % DEFAULT_HOME
LANDING = "{{ var.value.get('kequn_landing', '/data/kequn/landing') }}"
WAREHOUSE = "{{ var.value.get('kequn_warehouse', '/data/kequn/warehouse') }}"
CONF = "{{ var.value.get('kequn_conf', var.value.get('kequn_home', %r) ~ '/conf') }}" % DEFAULT_HOME
PACKAGES = "{{ kequn_jvm_packages(var.value.get('kequn_home', %r)) }}" % DEFAULT_HOME
# conn_id is not a templated field of the operator, so this one Variable is read at parse time.
SPARK_CONN_ID = Variable.get("kequn_spark_conn_id", default="spark_default")


def kequn_jvm_packages(home: str) -> str:
    """`--packages`: JVM_PACKAGES of <home>/lib/kequn/versions.py, read with runpy when the task runs.

    The pins come from the very checkout whose jobs and kequn.zip are submitted, so they cannot
    drift from the code; kequn need not be importable where Airflow runs (versions.py is plain
    Python with no imports); and a missing file fails the task before anything is submitted.
    """
    return ",".join(runpy.run_path(f"{home}/lib/kequn/versions.py")["JVM_PACKAGES"])


def submit(job: str, args: list[str]) -> SparkSubmitOperator:
    """spark-submit of ``jobs/<job>.py`` with ``args``, the zip and the pinned packages, named for its day."""
    return SparkSubmitOperator(
        task_id=job,
        conn_id=SPARK_CONN_ID,
        application=f"{HOME}/jobs/{job}.py",
        py_files=f"{HOME}/dist/kequn.zip",
        packages=PACKAGES,
        name=f"kequn-{job}-{{{{ ds }}}}",
        application_args=args,
    )


# Both DAGs: no catchup (deploying or unpausing runs only the latest one; missed days are backfilled on
# purpose, docs/airflow.md, which is safe as every job is idempotent), one run at a time (every run
# writes the same Delta tables).
COMMON = dict(start_date=pendulum.datetime(2026, 11, 1, tz="UTC"), catchup=False, max_active_runs=1,
              user_defined_macros={"kequn_jvm_packages": kequn_jvm_packages}, tags=["kequn"], doc_md=__doc__)

with DAG(
    dag_id="kequn_daily",
    # A data-interval timetable: the run for day D covers D, starts once D is over (00:00 UTC on
    # D+1, 08:00 in Beijing) and its logical date, {{ ds }}, is D. Keep it in UTC, as ds is the UTC
    # date. (Airflow 3's plain "@daily" is a trigger timetable, whose ds is the day just starting.)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    **COMMON,
) as dag:
    tasks = [submit(stage, ["--landing", LANDING, "--warehouse", WAREHOUSE, "--as-of", "{{ ds }}", "--conf", CONF])
             for stage in STAGES]
    # Each stage runs only if the one before it succeeded (the default trigger rule, all_success).
    # So quality gates what follows: when a critical expectation fails it exits 4, the task fails
    # and segments and journeys do not run, keeping their previous tables.
    chain(*tasks)


with DAG(
    dag_id="kequn_maintenance",
    # Weekly, with no data interval: a trigger timetable's {{ ds }} is the day it runs, so --as-of is that
    # Sunday and the compacted partitions are the last `maintenance.recent_days` (8) days up to it.
    # Sunday noon UTC keeps it clear of the daily batch that starts at midnight; both write the same
    # tables, and a MERGE or overwrite racing an OPTIMIZE fails one of them (the maintenance records it
    # and the next week compacts the table).
    schedule=CronTriggerTimetable("0 12 * * 0", timezone="UTC"),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=30)},
    **COMMON,
) as maintenance_dag:
    submit("maintain", ["--warehouse", WAREHOUSE, "--as-of", "{{ ds }}", "--conf", CONF])
