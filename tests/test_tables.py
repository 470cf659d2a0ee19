"""Table writes under the session kequn builds: the file list Delta keeps, and the partitions it allows.

The session runs in China Standard Time (landing.md) and turns off Delta's re-derivation of a small
table's file list after every commit, which Delta forces in any zone but UTC (kequn.session). These
tests check what that re-derivation would have checked, from the table's own files: the list kept in
the latest checksum file is the list the commit log adds up to. The session also lets a task keep a few
files open when it writes a partitioned table, instead of sorting its rows: a task meeting more days than
that still writes every row to its day.
"""
import glob
import json
import os

import pytest
from pyspark.sql import functions as F

from delta_log import live_files
from kequn.session import CONCURRENT_WRITERS_KEY, DELTA_ZONE_CHECK_KEY, TIME_ZONE, TIME_ZONE_KEY

D1, D2 = "2026-11-24", "2026-11-25"


def _rows(spark, day, n, offset=0):
    """``n`` rows of ``day``, with a timestamp column (its statistics are zone-formatted strings)."""
    return spark.createDataFrame([(day, i + offset, f"{day} 0{i % 10}:30:00") for i in range(n)],
                                 "as_of string, id int, at string") \
        .select(F.to_date("as_of").alias("as_of"), "id", F.to_timestamp("at").alias("at"))


def test_a_task_meeting_more_partition_values_than_open_files_still_writes_every_row_to_its_day(spark, warehouse):
    # The session lets a task keep a few files open instead of sorting by the partition column; a task meeting
    # more days than that sorts the rest. One task, interleaved days, 2 x the allowed number + 1 of them.
    allowed = int(spark.conf.get(CONCURRENT_WRITERS_KEY))
    assert allowed >= 1
    days = [f"2026-11-{d:02d}" for d in range(1, 2 * allowed + 2)]
    rows = [(days[i % len(days)], i) for i in range(20 * len(days))]
    df = (spark.createDataFrame(rows, "as_of string, id int").select(F.to_date("as_of").alias("as_of"), "id")
          .coalesce(1))
    name = "gold.many_days"
    warehouse.append(df, name, partition_by=("as_of",))
    first_day = df.where(F.col("as_of") == F.lit(days[0]).cast("date"))
    warehouse.replace_day(first_day.withColumn("id", F.col("id") + 1000), name, days[0])

    got = {(str(r.as_of), r.id) for r in warehouse.read(name).collect()}
    want = {(d, i + 1000 if d == days[0] else i) for d, i in rows}
    assert got == want
    files = live_files(warehouse.path(name))
    assert {v["as_of"] for v, _ in files.values()} == set(days)


def test_file_list_kept_in_the_checksum_is_what_the_log_adds_up_to_in_shanghai_time(spark, warehouse):
    assert spark.conf.get(TIME_ZONE_KEY) == TIME_ZONE
    assert spark.conf.get(DELTA_ZONE_CHECK_KEY) == "false"
    name = "gold.zone_check"
    warehouse.replace_day(_rows(spark, D1, 3), name, D1)          # creates the table
    warehouse.replace_day(_rows(spark, D2, 2), name, D2)
    warehouse.replace_day(_rows(spark, D1, 4), name, D1)          # D1's files replaced
    warehouse.merge(_rows(spark, D2, 3, offset=1), name, ["as_of", "id"])   # one row updated, two inserted

    log_dir = os.path.join(warehouse.path(name), "_delta_log")
    latest = sorted(glob.glob(os.path.join(log_dir, "*.crc")))[-1]
    assert os.path.basename(latest).startswith(f"{warehouse.version(name):020d}")
    with open(latest) as f:
        kept = json.load(f)["allFiles"]
    assert kept, "Delta kept the file list in the checksum (the path the turned-off check verified)"
    assert {a["path"]: (a["partitionValues"], a.get("stats")) for a in kept} == live_files(warehouse.path(name))
    counts = {str(r.as_of): r["count"] for r in warehouse.read(name).groupBy("as_of").count().collect()}
    assert counts == {D1: 4, D2: 4}


def test_a_timestamp_partition_column_is_refused(spark, warehouse):
    df = _rows(spark, D1, 2)
    with pytest.raises(ValueError, match=r"gold\.by_time: partition column\(s\) at of type timestamp"):
        warehouse.append(df, "gold.by_time", partition_by=("at",))
    with pytest.raises(ValueError, match="timestamp"):
        warehouse.overwrite(df, "gold.by_time", partition_by=("as_of", "at"))
    assert not warehouse.exists("gold.by_time")
