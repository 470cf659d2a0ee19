"""spark-submit entry point: `spark-submit jobs/tags.py --landing L --warehouse W --as-of YYYY-MM-DD`.

Arguments, session and stage are the `kequn tags` command's; see README "Running on a cluster".
"""
import sys

from kequn.cli import main

if __name__ == "__main__":
    sys.exit(main(["tags", *sys.argv[1:]]))
