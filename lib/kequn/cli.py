"""The ``kequn`` command: arguments only; the library does the work."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from . import pipeline

log = logging.getLogger("kequn")


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date YYYY-MM-DD") from None


def _existing_dir(text: str) -> str:
    if "://" not in text and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"landing folder '{text}' does not exist")
    return text


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer")
    return n


def _scale(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number")
    return x


def _port(text: str) -> int:
    n = int(text) if text.isdigit() else 0
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port (1-65535)")
    return n


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE")
    k, v = text.split("=", 1)
    return k, v


def _common(p: argparse.ArgumentParser, landing: bool = True) -> None:
    if landing:
        p.add_argument("--landing", required=True, type=_existing_dir, help="landing folder (landing contract)")
    p.add_argument("--warehouse", required=True, help="warehouse root: tables at <warehouse>/<db>/<table>")
    p.add_argument("--conf", default=None, help="configuration folder (default: the project's conf/)")
    p.add_argument("--spark-conf", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="extra Spark setting, repeatable")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kequn", description="Customer groups for banks: Spark jobs on Delta Lake.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="every stage, in order")
    _common(p)
    p.add_argument("--as-of", required=True, type=_date, help="the business day to process, YYYY-MM-DD")
    for stage in pipeline.STAGES:
        p = sub.add_parser(stage, help=f"the {stage} stage alone")
        _common(p, landing=True)
        p.add_argument("--as-of", required=True, type=_date, help="the business day to process, YYYY-MM-DD")

    p = sub.add_parser("sql", help="query the tables with Spark SQL")
    _common(p, landing=False)
    p.add_argument("query", help="a SQL statement, e.g. \"SELECT count(*) FROM gold.one_id_map\"")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--limit", type=_positive, default=1000, help="rows printed at most (default 1000)")

    p = sub.add_parser("sql-server", help="serve the tables over JDBC/ODBC (HiveServer2) for BI tools, until stopped")
    _common(p, landing=False)
    p.add_argument("--port", type=_port, default=10001, help="TCP port (default 10001)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; no authentication)")

    p = sub.add_parser("generate", help="write a sample landing folder (landing contract)")
    p.add_argument("--out", required=True)
    p.add_argument("--persons", required=True, type=_positive)
    p.add_argument("--days", required=True, type=_positive)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end", type=_date, default="2026-11-25", help="date of the last batch")
    p.add_argument("--holding-every", type=_positive, default=1, metavar="DAYS",
                   help="deliver the holding snapshot every DAYS days, counted back from --end (default 1: daily)")
    p.add_argument("--activity", type=_scale, default=1.0,
                   help="scale of everyday transactions and events (default 1.0; planted signals unchanged)")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("explain", help="why the records of a one_id were merged")
    _common(p, landing=False)
    p.add_argument("--one-id", required=True, type=int)

    p = sub.add_parser("stream", help="real-time behaviour events into bronze.event and gold.realtime_activity")
    _common(p)
    p.add_argument("--available-now", action="store_true", help="process what is there, then exit")
    p.add_argument("--trigger-seconds", type=_positive, default=None)

    p = sub.add_parser("forget", help="erase a person's records from every table")
    _common(p, landing=False)
    p.add_argument("--source", required=True)
    p.add_argument("--key", required=True)

    p = sub.add_parser("maintain", help="compact small files (OPTIMIZE) and delete unneeded ones (VACUUM), "
                                        "table by table; weekly, outside the daily batch")
    _common(p, landing=False)
    p.add_argument("--as-of", type=_date, default=None,
                   help="day-partitioned tables are compacted in the recent days before this one (default today)")
    p.add_argument("--tables", default="", help="comma-separated tables (default: every table of the warehouse)")
    p.add_argument("--retention-hours", type=_positive, default=None,
                   help="VACUUM retention (default: maintenance.vacuum_retention_hours of pipeline.yaml, 168)")
    p.add_argument("--no-vacuum", action="store_true", help="compact only")

    p = sub.add_parser("segment", help="segment tools")
    seg = p.add_subparsers(dest="segment_command", required=True, metavar="SUBCOMMAND")
    q = seg.add_parser("plan", help="size, overlap and movement of a new or changed definition; writes nothing")
    _common(q, landing=False)
    q.add_argument("--as-of", required=True, type=_date)
    q.add_argument("definition", help="a segment code, or a YAML file with segment definitions")
    q = seg.add_parser("export", help="a marketing segment's contacts for a delivery channel (reads the vault)")
    _common(q, landing=False)
    q.add_argument("--as-of", required=True, type=_date)
    q.add_argument("--segment", required=True)
    q.add_argument("--channel", required=True, choices=["app_push", "sms", "wechat"])
    q.add_argument("--out", required=True)
    return top


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "great_expectations", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args):
    from .config import load_pipeline

    config = load_pipeline(Path(args.conf) if args.conf else None)
    if args.conf:
        # Stages that load their own catalogs (tags, quality, segments, journeys) find it here too.
        os.environ["KEQUN_CONF"] = str(Path(args.conf).absolute())
    return config


def _session(args, config):
    from .session import build_session
    from .tables import Warehouse

    extra = []
    if args.command == "stream":
        from .stream import required_packages
        extra = required_packages(config)
    spark = build_session(args.warehouse, config, overrides=dict(args.spark_conf), extra_packages=extra)
    return spark, Warehouse(spark, args.warehouse)


def _print_rows(df, fmt: str, limit: int) -> None:
    rows = df.limit(limit).collect()
    cols = df.columns
    if fmt == "json":
        import json
        for r in rows:
            print(json.dumps(r.asDict(recursive=True), ensure_ascii=False, default=str))
    elif fmt == "csv":
        import csv
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows([["" if v is None else v for v in r] for r in rows])
    else:
        cells = [[("NULL" if v is None else str(v)) for v in r] for r in rows]
        widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
        print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
        print("-+-".join("-" * w for w in widths))
        for x in cells:
            print(" | ".join(v.ljust(w) for v, w in zip(x, widths)))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    _logging(getattr(args, "verbose", False))

    if args.command == "generate":
        from .generate import generate
        summary = generate(args.out, persons=args.persons, days=args.days, seed=args.seed, end=args.end,
                           holding_every=args.holding_every, activity=args.activity)
        log.info("generated landing data in %s: %s", args.out, summary)
        return 0

    from .config import ConfigError
    try:
        config = _config(args)
    except ConfigError as e:
        log.error("configuration error: %s", e)
        return pipeline.EXIT_USAGE
    if args.command == "sql-server":
        from .sqlserver import serve
        # It builds its own session: the Thrift server needs the Delta jars on the driver class path.
        return serve(args.warehouse, config, host=args.host, port=args.port, overrides=dict(args.spark_conf))
    spark, wh = _session(args, config)

    if args.command == "sql":
        try:
            df = spark.sql(args.query)
        except Exception as e:
            log.error("query failed: %s", str(e).splitlines()[0])
            return pipeline.EXIT_FAILED
        _print_rows(df, args.format, args.limit)
        return 0
    if args.command == "explain":
        from .identity import explain
        _print_rows(explain(wh, args.one_id), "table", 10_000)
        return 0
    if args.command == "stream":
        from .stream import run_stream
        return run_stream(spark, wh, args.landing, config, available_now=args.available_now,
                          trigger_seconds=args.trigger_seconds)
    if args.command == "forget":
        from .segments import forget
        removed = forget(spark, wh, args.source, args.key)
        log.info("forget: rows removed per table: %s", removed)
        return 0
    if args.command == "maintain":
        from . import maintenance
        statuses = maintenance.run(spark, wh, args.as_of, config, [t for t in args.tables.split(",") if t],
                                   args.retention_hours, do_vacuum=not args.no_vacuum)
        failed = sorted(t for t, s in statuses.items() if s != "ok")
        if failed:
            log.error("maintain: %d of %d tables failed (see %s): %s", len(failed), len(statuses),
                      maintenance.LOG_TABLE, ", ".join(failed))
        return pipeline.EXIT_FAILED if failed else 0
    if args.command == "segment":
        from . import segments
        if args.segment_command == "plan":
            result = segments.plan(spark, wh, args.as_of, args.definition)
            for key in ("code", "as_of", "size", "entering", "leaving", "overlap"):
                print(f"{key}: {result[key]}")
        else:
            n = segments.export(spark, wh, args.as_of, args.segment, args.channel, args.out)
            log.info("export: %d contacts of segment %s for %s written to %s", n, args.segment, args.channel, args.out)
        return 0

    stages = list(config.stages) if args.command == "run" else [args.command]
    code, results = pipeline.run_stages(stages, spark, wh, args.landing, args.as_of, config)
    log.info("run summary for %s:\n%s", args.as_of, pipeline.summary(results))
    return code


if __name__ == "__main__":
    sys.exit(main())
