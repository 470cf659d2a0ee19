"""bench/pipeline_bench.py's event-log parsing and table-row accounting, on hand-written events (no Spark)."""
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("pipeline_bench", ROOT / "bench" / "pipeline_bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up while the file executes
_spec.loader.exec_module(bench)

WH = "/data/wh"


def _props(run, group, execution=None):
    p = {"spark.jobGroup.id": group, "kequn.bench.run": run, "spark.scheduler.pool": "default"}
    if execution is not None:
        p["spark.sql.execution.id"] = str(execution)
    return {k: v for k, v in p.items() if v is not None}


def _task(stage, remote=0, local=0, written=0, records=0, heap=0):
    return {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Stage Attempt ID": 0, "Task Type": "ResultTask",
            "Task End Reason": {"Reason": "Success"}, "Task Info": {"Task ID": 1, "Finished": True},
            "Task Executor Metrics": {"JVMHeapMemory": heap, "JVMOffHeapMemory": 5},
            "Task Metrics": {"Executor Run Time": 10,
                             "Shuffle Read Metrics": {"Remote Blocks Fetched": 1, "Remote Bytes Read": remote,
                                                      "Remote Bytes Read To Disk": remote, "Local Bytes Read": local,
                                                      "Total Records Read": 3},
                             "Shuffle Write Metrics": {"Shuffle Bytes Written": written, "Shuffle Records Written": 2},
                             "Input Metrics": {"Bytes Read": 100, "Records Read": records}}}


def _scan(location, partition_filters="[]"):
    return {"nodeName": "Scan parquet ", "simpleString": "FileScan parquet", "children": [], "metrics": [],
            "metadata": {"Location": location, "PartitionFilters": partition_filters, "Format": "Parquet"}}


EVENTS = [
    {"Event": "SparkListenerLogStart", "Spark Version": "4.1.4"},
    # Job 0: stages 0 and 1, tags of the full run, SQL execution 7.
    {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 1, "Stage IDs": [0, 1],
     "Stage Infos": [{"Stage ID": 0}, {"Stage ID": 1}], "Properties": _props("full", "kequn:tags", 7)},
    {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 0}, "Properties": _props("full", "kequn:tags", 7)},
    {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 1}, "Properties": _props("full", "kequn:tags", 7)},
    _task(0, remote=0, local=0, written=1000, records=50, heap=300),
    _task(0, written=234, records=25, heap=700),
    _task(1, remote=400, local=600, heap=200),
    {"Event": "SparkListenerStageExecutorMetrics", "Executor ID": "driver", "Stage ID": 1, "Stage Attempt ID": 0,
     "Executor Metrics": {"JVMHeapMemory": 900, "OnHeapExecutionMemory": 10}},
    # Job 1: the same stage name in the incremental run; stage 2 is only listed by the job (no StageSubmitted).
    {"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": 2, "Stage IDs": [2],
     "Properties": _props("incremental", "kequn:tags")},
    _task(2, remote=5, local=6, written=7, heap=50),
    # Job 2: no group at all (e.g. work between stages).
    {"Event": "SparkListenerJobStart", "Job ID": 2, "Submission Time": 3, "Stage IDs": [3], "Properties": {}},
    {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 3}, "Properties": {}},
    _task(3, local=99999, written=88888, heap=10 ** 9),
    # SQL plans: execution 7 belongs to job 0; execution 8 ran no job.
    {"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart", "executionId": 7,
     "description": "x", "time": 1,
     "sparkPlanInfo": {"nodeName": "HashAggregate", "simpleString": "", "metadata": {}, "metrics": [], "children": [
         _scan(f"PreparedDeltaFileIndex(1 paths)[file:{WH}/bronze/transaction]"),
         _scan(f"PreparedDeltaFileIndex(1 paths)[file:{WH}/gold/tag_values]",
               "[isnotnull(as_of#12), (as_of#12 = 2026-11-24)]")]}},
    {"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLAdaptiveExecutionUpdate", "executionId": 7,
     "sparkPlanInfo": _scan(f"TahoeBatchFileIndex(1 paths)[file:///{WH}/_staging/gold/tag_values]")},
    {"Event": "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart", "executionId": 8,
     "description": "y", "time": 2, "sparkPlanInfo": _scan(f"PreparedDeltaFileIndex(1 paths)[file:{WH}/gold/one_id_map]")},
]


def _lines():
    return [json.dumps(e) for e in EVENTS] + ['{"Event": "SparkListenerTaskEnd", "Stage ID": 0, "Task Metr']


def test_work_is_attributed_to_run_and_stage():
    work = bench.parse_events(_lines())
    tags = work[("full", "kequn:tags")]
    assert (tags.jobs, tags.stages, tags.tasks) == (1, 2, 3)
    assert tags.shuffle_write == 1234
    assert tags.shuffle_read == 1000, "local + remote bytes, 'to disk' not counted twice"
    assert tags.records_read == 75
    assert tags.peak_heap == 900, "the stage executor metrics peak is above every task's"
    inc = work[("incremental", "kequn:tags")]
    assert (inc.jobs, inc.tasks, inc.shuffle_read, inc.shuffle_write, inc.peak_heap) == (1, 1, 11, 7, 50)
    none = work[(None, None)]
    assert (none.shuffle_read, none.shuffle_write, none.peak_heap) == (99999, 88888, 10 ** 9)


def test_scans_follow_the_jobs_of_their_execution():
    work = bench.parse_events(_lines())
    paths = sorted(p for p, _ in work[("full", "kequn:tags")].scans)
    assert paths == [f"file:///{WH}/_staging/gold/tag_values", f"file:{WH}/bronze/transaction",
                     f"file:{WH}/gold/tag_values"]
    assert not any(w.scans for k, w in work.items() if k != ("full", "kequn:tags")), "execution 8 ran no job"


def test_input_rows_count_each_table_once_and_only_the_partition_filtered():
    scans = bench.parse_events(_lines())[("full", "kequn:tags")].scans
    scans = scans + [(f"file:{WH}/bronze/transaction", "[]"), ("file:/elsewhere/bronze/transaction", "[]")]
    tables = {
        "bronze.transaction": bench.TableRows(1000, (), {}),
        "gold.tag_values": bench.TableRows(60, ("as_of",), {("2026-11-23",): 20, ("2026-11-24",): 40}),
        "gold.one_id_map": bench.TableRows(5, (), {}),
    }
    total, counted = bench.input_rows(scans, Path(WH), tables)
    assert counted == {"bronze.transaction": 1000, "gold.tag_values": 40}
    assert total == 1040


def test_delta_log_rows_follow_adds_removes_and_deletion_vectors(tmp_path):
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    stats = lambda n: json.dumps({"numRecords": n})  # noqa: E731
    commits = [
        [{"metaData": {"id": "x", "partitionColumns": ["as_of"]}},
         {"add": {"path": "a", "partitionValues": {"as_of": "2026-11-24"}, "stats": stats(10)}},
         {"add": {"path": "b", "partitionValues": {"as_of": "2026-11-24"}, "stats": stats(5)}}],
        [{"remove": {"path": "a"}},
         {"add": {"path": "c", "partitionValues": {"as_of": "2026-11-25"}, "stats": stats(7),
                  "deletionVector": {"cardinality": 2}}}],
    ]
    for v, actions in enumerate(commits):
        (log / f"{v:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    t = bench.delta_table_rows(tmp_path / "t")
    assert t.rows == 10
    assert t.partition_columns == ("as_of",)
    assert t.by_partition == {("2026-11-24",): 5, ("2026-11-25",): 5}


def test_section_replaces_its_size_and_leaves_the_rest(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nintro\n\n## Tags\n\ntext\n")
    bench.write_section(md, 100, 90, bench.block_marker(100, 90) + "\nold 100\n<!-- /pipeline_bench -->\n")
    bench.write_section(md, 10, 5, bench.block_marker(10, 5) + "\nsmall\n<!-- /pipeline_bench -->\n")
    bench.write_section(md, 100, 90, bench.block_marker(100, 90) + "\nnew 100\n<!-- /pipeline_bench -->\n")
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n## Tags\n\ntext\n\n" + bench.SECTION + "\n")
    assert "old 100" not in text and text.index("small") < text.index("new 100")
    assert text.count(bench.SECTION) == 1


def test_rewind_puts_delta_tables_back_to_a_moment(spark, tmp_path):
    # A real Delta table, with a checkpoint after the moment, and a table created after it.
    t, late = tmp_path / "bronze" / "t", tmp_path / "gold" / "late"
    for i in range(3):
        (spark.range(i * 10, i * 10 + 10).write.format("delta").mode("append")
         .option("delta.checkpointInterval", "2").save(str(t)))
        if i == 1:
            moment = max(json.loads(line)["commitInfo"]["timestamp"]
                         for line in (t / "_delta_log" / f"{1:020d}.json").read_text().splitlines()
                         if "commitInfo" in line) + 1
            while int(time.time() * 1000) <= moment:
                pass
    spark.range(5).write.format("delta").save(str(late))
    assert (t / "_delta_log" / "_last_checkpoint").exists()

    assert bench.rewind_warehouse(tmp_path, moment) == {"bronze/t": 1, "gold/late": -1}
    assert not late.exists()
    assert not [f.name for f in (t / "_delta_log").iterdir() if "00002" in f.name or "_last_checkpoint" in f.name]
    spark.range(100, 101).write.format("delta").mode("append").save(str(t))   # the log takes new commits
    assert sorted(r.id for r in spark.read.format("delta").load(str(t)).collect()) == [*range(20), 100]


def test_a_thinned_landing_has_its_own_block_beside_the_default_one(tmp_path):
    md = tmp_path / "B.md"
    thin = " ".join(bench.density(holding_every=7, activity=0.25))
    assert thin == "holding_every=7 activity=0.25" and bench.density() == {}
    bench.write_section(md, 100, 90, bench.block_marker(100, 90) + "\ndaily holdings\n<!-- /pipeline_bench -->\n")
    bench.write_section(md, 100, 90, bench.block_marker(100, 90, thin) + "\nold thin\n<!-- /pipeline_bench -->\n",
                        thin)
    bench.write_section(md, 100, 90, bench.block_marker(100, 90, thin) + "\nnew thin\n<!-- /pipeline_bench -->\n",
                        thin)
    md.write_text(md.read_text() + "\n### An older run, kept as prose\n")
    bench.write_section(md, 100, 90, bench.block_marker(100, 90, thin) + "\nnew thin\n<!-- /pipeline_bench -->\n",
                        thin)
    bench.write_section(md, 20, 90, bench.block_marker(20, 90) + "\nsmaller\n<!-- /pipeline_bench -->\n")
    text = md.read_text()
    assert "daily holdings" in text and "new thin" in text and "old thin" not in text
    assert text.index("smaller") < text.index("daily holdings") < text.index("new thin") < text.index("older run")

    empty = tmp_path / "E.md"   # a section with neither prose nor blocks gets the intro
    empty.write_text(f"# B\n\n{bench.SECTION}\n\n## Next\n")
    bench.write_section(empty, 10, 5, bench.block_marker(10, 5) + "\nsmall\n<!-- /pipeline_bench -->\n")
    assert empty.read_text() == (f"# B\n\n{bench.SECTION}\n\n{bench.SECTION_INTRO.strip()}\n\n"
                                 f"{bench.block_marker(10, 5)}\nsmall\n<!-- /pipeline_bench -->\n\n## Next\n")
