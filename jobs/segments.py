"""spark-submit entry point: `spark-submit jobs/segments.py --landing L --warehouse W --as-of YYYY-MM-DD`.

Arguments, session and stage are the `kequn segments` command's; see README "Running on a cluster".
"""
import sys

from kequn.cli import main

if __name__ == "__main__":
    sys.exit(main(["segments", *sys.argv[1:]]))
