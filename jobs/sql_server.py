"""spark-submit entry point: `spark-submit jobs/sql_server.py --warehouse W [--port 10001] [--host 127.0.0.1]`.

Arguments, session and server are the `kequn sql-server` command's; see docs/sql.md. Under
spark-submit the driver JVM is started by the command line, so give it what `kequn sql-server` sets
by itself: the Delta jars on the driver class path (not only `--packages`/`--jars`) and a scratch
folder for the embedded Hive and its derby.log (the executors get the jars from `--jars`), e.g.

    T=$(mktemp -d)
    spark-submit --driver-class-path "$(ls .cache/jars/*.jar | paste -sd:)" \\
      --jars "$(ls .cache/jars/*.jar | paste -sd,)" \\
      --driver-java-options "-Djava.io.tmpdir=$T -Dderby.stream.error.file=$T/derby.log" \\
      --py-files dist/kequn.zip \\
      jobs/sql_server.py --warehouse s3a://bank/warehouse --port 10001

Stop it with SIGTERM to spark-submit (the JVM); this driver then notices within seconds and exits.
"""
import sys

from kequn.cli import main

if __name__ == "__main__":
    sys.exit(main(["sql-server", *sys.argv[1:]]))
