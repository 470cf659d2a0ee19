"""`kequn maintain`: OPTIMIZE (recent day partitions, Z-ORDER where declared) and VACUUM, on real Delta tables."""
import os

from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from kequn import cli, maintenance
from kequn.config import MaintenanceConfig, PipelineConfig

DAYS = ["2026-11-10", "2026-11-20", "2026-11-21"]
AS_OF = "2026-11-21"


def parquet_files(path: str) -> int:
    """Data files on disk (the log's checkpoints are Parquet too, and not counted)."""
    return sum(f.endswith(".parquet") for d, _, files in os.walk(path) if "_delta_log" not in d for f in files)


def small_appends(spark, wh):
    """gold.daily: three appends to each of three day partitions; gold.latest: three overwrites."""
    for i in range(3):
        for day in DAYS:
            rows = spark.range(i * 100, i * 100 + 100).select(F.lit(day).cast("date").alias("as_of"),
                                                              F.col("id").alias("one_id"))
            wh.append(rows.repartition(1), "gold.daily", partition_by=("as_of",))
        wh.overwrite(spark.range(i * 10, i * 10 + 50).withColumnRenamed("id", "one_id").repartition(2), "gold.latest")


def history_ops(spark, wh, name):
    return [r["operation"] for r in DeltaTable.forPath(spark, wh.path(name)).history().collect()]


def test_compacts_recent_days_vacuums_old_versions_and_keeps_the_rows(spark, warehouse):
    wh = warehouse
    small_appends(spark, wh)
    daily_before = wh.read("gold.daily").collect()
    latest_before = wh.read("gold.latest").collect()
    assert parquet_files(wh.path("gold.latest")) == 6  # two versions not needed any more
    config = PipelineConfig(maintenance=MaintenanceConfig(recent_days=2))

    statuses = maintenance.run(spark, wh, AS_OF, config, vacuum_retention_hours=0)

    assert statuses == {"gold.daily": "ok", "gold.latest": "ok"}
    files = {r["as_of"].isoformat(): r["n"] for r in wh.read("gold.daily").select("as_of", "_metadata.file_path")
             .groupBy("as_of").agg(F.countDistinct("file_path").alias("n")).collect()}
    # The two recent days are one file each; the older day was left as it was.
    assert files == {"2026-11-10": 3, "2026-11-20": 1, "2026-11-21": 1}
    assert_df_equality(wh.read("gold.daily"), spark.createDataFrame(daily_before, wh.read("gold.daily").schema),
                       ignore_row_order=True)
    assert_df_equality(wh.read("gold.latest"), spark.createDataFrame(latest_before, wh.read("gold.latest").schema),
                       ignore_row_order=True)
    # VACUUM left on disk exactly the files the current versions read.
    assert parquet_files(wh.path("gold.daily")) == 5
    assert parquet_files(wh.path("gold.latest")) == 1
    assert "OPTIMIZE" in history_ops(spark, wh, "gold.daily")

    log = {r["table_name"]: r for r in wh.read(maintenance.LOG_TABLE).collect()}
    d = log["gold.daily"]
    assert (d["status"], d["optimized"], d["files_before"], d["files_after"]) == ("ok", True, 9, 5)
    assert d["optimized_since"].isoformat() == "2026-11-20" and d["vacuum_retention_hours"] == 0
    assert log["gold.latest"]["disk_files_after"] < log["gold.latest"]["disk_files_before"]

    # Again: nothing left to compact, no new OPTIMIZE (VACUUM logs its own start and end), the same rows.
    optimizes = {t: history_ops(spark, wh, t).count("OPTIMIZE") for t in ("gold.daily", "gold.latest")}
    again = maintenance.run(spark, wh, AS_OF, config, vacuum_retention_hours=0)
    assert again == {**statuses, maintenance.LOG_TABLE: "ok"}  # the log is a table like the others
    assert {t: history_ops(spark, wh, t).count("OPTIMIZE") for t in optimizes} == optimizes == \
        {"gold.daily": 1, "gold.latest": 1}
    again = wh.read(maintenance.LOG_TABLE).where("table_name = 'gold.daily'").orderBy(F.col("run_at").desc()).first()
    assert not again["optimized"] and again["files_before"] == again["files_after"] == 5


def test_zorder_where_declared_and_a_failing_table_does_not_stop_the_others(spark, warehouse, tmp_path,
                                                                           monkeypatch):
    wh = warehouse
    small_appends(spark, wh)
    config = PipelineConfig(maintenance=MaintenanceConfig(zorder={"gold.latest": ["one_id"],
                                                                  "gold.daily": ["no_such_column"]}))
    statuses = maintenance.run(spark, wh, AS_OF, config, do_vacuum=False)
    assert statuses["gold.latest"] == "ok"
    assert statuses["gold.daily"].startswith("failed:") and "no_such_column" in statuses["gold.daily"]
    z = DeltaTable.forPath(spark, wh.path("gold.latest")).history(1).first()
    assert z["operation"] == "OPTIMIZE" and "one_id" in z["operationParameters"]["zOrderBy"]
    assert parquet_files(wh.path("gold.latest")) == 7  # no VACUUM asked: every version's files stay
    failed = wh.read(maintenance.LOG_TABLE).where("table_name = 'gold.daily'").first()
    assert failed["status"] == statuses["gold.daily"] and failed["files_after"] == failed["files_before"] == 9

    # The command: the same conf from pipeline.yaml; a failed table makes the exit status 1.
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "pipeline.yaml").write_text("maintenance:\n  zorder: {gold.daily: [no_such_column]}\n")
    monkeypatch.setenv("KEQUN_CONF", str(conf))  # the command sets it too; undone after the test
    args = ["maintain", "--warehouse", wh.root, "--as-of", AS_OF, "--conf", str(conf), "--no-vacuum"]
    assert cli.main(args + ["--tables", "gold.latest"]) == 0
    assert cli.main(args) == 1
