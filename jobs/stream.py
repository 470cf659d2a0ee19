"""spark-submit entry point: `spark-submit jobs/stream.py --landing L --warehouse W [--available-now] [--trigger-seconds N]`.

Unlike `kequn stream`, this builds the session with the Kafka connector when conf says
`stream.format: kafka` (under spark-submit, pass `--packages` yourself; see docs/stream.md).
"""
import argparse
import logging
import sys
from pathlib import Path

from kequn.config import load_pipeline
from kequn.session import build_session
from kequn.stream import required_packages, run_stream
from kequn.tables import Warehouse

if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="stream")
    p.add_argument("--landing", required=True)
    p.add_argument("--warehouse", required=True)
    p.add_argument("--conf", default=None)
    p.add_argument("--available-now", action="store_true")
    p.add_argument("--trigger-seconds", type=int, default=None)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    config = load_pipeline(Path(a.conf) if a.conf else None)
    spark = build_session(a.warehouse, config, extra_packages=required_packages(config))
    sys.exit(run_stream(spark, Warehouse(spark, a.warehouse), a.landing, config, a.available_now, a.trigger_seconds))
