"""Real-time stage benchmark: N event files dropped into a landing folder, one availableNow run.

Writes ``--files`` CSV files of ``--events`` events in total (users of a synthetic
``gold.one_id_map``, 10% searches, 2% of users unknown, 0.1% bad rows), then runs
``kequn.stream.run_stream(..., available_now=True)`` with ``--files-per-batch`` files per
micro-batch and reports events/second and, per micro-batch, input rows, processing time and
end-to-end latencies (from ``silver.stream_batches``). Usage:

    .venv/bin/python bench/stream_bench.py --events 200000 --files 20 --files-per-batch 5 --out /tmp/kequn_stream_bench
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

COLS = ["event_id", "source", "user_key", "device_id", "event_time", "event_type", "page", "keyword"]
TYPES = ["login", "page_view", "search", "like", "comment", "share", "click"]
WEIGHTS = [0.14, 0.42, 0.10, 0.05, 0.03, 0.08, 0.18]
KEYWORDS = ["理财", "基金", "信用卡", "房贷", "养老", "存款利率"]
PAGES = ["首页", "理财频道", "基金详情", "贷款计算器", "我的账户", "转账"]


def write_files(landing: Path, events: int, files: int, users: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    d = landing / "stream" / "event"
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    per = events // files
    n = 0
    for f in range(files):
        tmp = d / f".part-{f:04d}.csv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(COLS)
            for _ in range(per):
                n += 1
                u = rng.randrange(int(users * 1.02))  # the top 2% are not in the map
                src = "app" if u % 3 else "mini_program"
                et = rng.choices(TYPES, WEIGHTS)[0]
                t = now - dt.timedelta(seconds=rng.randrange(3600))
                w.writerow([f"E{n:09d}", src, f"U{u}" if src == "app" else f"O{u}", f"dev{u}",
                            t.strftime("%Y-%m-%d %H:%M:%S"),
                            "teleport" if rng.random() < 0.001 else et,
                            "搜索" if et == "search" else rng.choice(PAGES),
                            rng.choice(KEYWORDS) if et == "search" else ""])
        tmp.rename(d / f"part-{f:04d}.csv")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--files-per-batch", type=int, default=5)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--out", default="/tmp/kequn_stream_bench")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("KEQUN_PSEUDONYM_KEY", "bench-key-not-secret")

    from kequn.config import PROJECT_ROOT, load_pipeline
    from kequn.session import build_session
    from kequn.stream import run_stream
    from kequn.tables import Warehouse

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    landing, whp, conf = out / "landing", out / "wh", out / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    (conf / "stream" / "options.yaml").write_text(f"max_files_per_trigger: {args.files_per_batch}\n")
    t0 = time.time()
    write_files(landing, args.events, args.files, args.users)
    print(f"wrote {args.events} events in {args.files} files in {time.time() - t0:.1f}s")

    config = load_pipeline(conf)
    spark = build_session(str(whp), config)
    wh = Warehouse(spark, str(whp))
    from pyspark.sql import functions as F
    ids = spark.range(args.users)
    id_map = ids.select(F.lit("app_user").alias("source"), F.concat(F.lit("U"), F.col("id")).alias("source_key"),
                        F.col("id").alias("one_id")).unionByName(
        ids.select(F.lit("wechat_user").alias("source"), F.concat(F.lit("O"), F.col("id")).alias("source_key"),
                   F.col("id").alias("one_id")))
    wh.overwrite(id_map, "gold.one_id_map")

    t0 = time.time()
    code = run_stream(spark, wh, str(landing), config, available_now=True)
    wall = time.time() - t0
    b = wh.read("silver.stream_batches").orderBy("batch_id").collect()
    loaded = wh.read("bronze.event").count()
    print(f"\nexit {code}; {len(b)} micro-batches; bronze.event {loaded} rows; "
          f"gold.realtime_activity {wh.read('gold.realtime_activity').count()} rows; "
          f"silver.realtime_unresolved {wh.read('silver.realtime_unresolved').count()} rows")
    print(f"wall {wall:.1f}s (incl. query start) -> {args.events / wall:,.0f} events/s; "
          f"sum of batch processing {sum(r.processing_s for r in b):.1f}s -> "
          f"{args.events / sum(r.processing_s for r in b):,.0f} events/s")
    print("| batch | files | input rows | processing s | event->commit s (newest event) | file arrival->commit s (oldest file) |")
    print("|---|---|---|---|---|---|")
    for r in b:
        print(f"| {r.batch_id} | {r.files} | {r.input_rows} | {r.processing_s:.1f} | {r.event_latency_s:.1f} | "
              f"{r.arrival_latency_s:.1f} |")
    spark.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
