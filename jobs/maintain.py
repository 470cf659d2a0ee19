"""spark-submit entry point: `spark-submit jobs/maintain.py --warehouse W [--as-of YYYY-MM-DD]`.

Arguments and session are the `kequn maintain` command's (OPTIMIZE and VACUUM of every table);
see README "Table maintenance".
"""
import sys

from kequn.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
