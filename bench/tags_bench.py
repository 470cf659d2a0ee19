"""Tag computation benchmark: catalog-planned vs naive (one query per tag) vs DuckDB.

Generates synthetic bronze tables (Delta) and a one_id map for N persons, then times:

1. Spark, planned, the whole catalog's statistic + rule tags (one aggregation per source),
   long form written to Parquet: once as a single plan, and once as the tags stage runs it,
   each source pass staged and ``--workers`` passes at a time (``tags.parallel_passes``);
2. Spark, planned, the reference tags of the output contract only (both ways);
3. Spark, naive: the same reference tags with one aggregation query per statistic tag,
   joined together per person;
4. DuckDB: equivalent SQL for the reference tags over the same Parquet files (the Delta
   tables' data files, a single version each);
5. with ``--naive-all``: Spark, naive, the whole catalog of run 1 (one query per statistic tag);

and checks that 2, 3 and 4 (and 1 and 5) give identical values. Usage:

    .venv/bin/python bench/tags_bench.py --persons 100000 --out /tmp/kequn_tags_bench [--naive-all]
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import sys
import time

D = "2026-06-30"
REF = ["txn_cnt_90d", "txn_amt_90d", "aum", "aum_tier", "app_active_days_30d", "is_dormant_stable",
       "is_first_purchase", "preferred_channel"]


def generate(spark, wh, persons: int, txn_per: int, evt_per: int):
    from pyspark.sql import functions as F

    def h(k):
        return F.abs(F.xxhash64(F.col("id"), F.lit(k)))

    d = F.lit(D).cast("date")
    meta = lambda df: (df.withColumn("_file", F.lit("bench.csv")).withColumn("_line", F.col("id"))
                       .withColumn("_row_hash", F.sha1(F.col("id").cast("string")))
                       .withColumn("_extra", F.create_map().cast("map<string,string>"))
                       .withColumn("_ingested_at", F.current_timestamp()))
    p = spark.range(persons)
    t0 = time.time()
    core = meta(p.select("id", F.concat(F.lit("C"), F.col("id")).alias("cust_no"),
                         F.when(h(1) % 2 == 0, "M").otherwise("F").alias("gender"),
                         F.date_sub(F.lit("2000-01-01").cast("date"), (h(2) % 15000).cast("int")).alias("birth_date"),
                         F.element_at(F.array(*[F.lit(x) for x in ("staff", "teacher", "engineer", "retired")]),
                                      (h(3) % 4 + 1).cast("int")).alias("occupation"),
                         F.lit("married").alias("marital_status"), (h(4) % 50000000 / 100).cast("decimal(18,2)").alias("annual_income"),
                         F.lit("B001").alias("branch_code"), F.date_sub(d, (h(5) % 3000).cast("int")).alias("open_date"),
                         F.lit(True).alias("mobile_valid"), F.lit(True).alias("id_no_valid"),
                         F.lit("2026-01-01 00:00:00").cast("timestamp").alias("updated_at"),
                         F.lit("2026-01-01").cast("date").alias("_batch_dt")))
    card = meta(p.where(F.col("id") % 2 == 0).select(
        "id", F.concat(F.lit("K"), F.col("id")).alias("card_cust_id"),
        F.element_at(F.array(*[F.lit(x) for x in ("standard", "gold", "platinum", "diamond")]), (h(6) % 4 + 1).cast("int")).alias("card_level"),
        (h(7) % 10000000 / 100).cast("decimal(18,2)").alias("credit_limit"), F.date_sub(d, 400).alias("open_date"),
        F.lit(True).alias("mobile_valid"), F.lit("2026-01-01 00:00:00").cast("timestamp").alias("updated_at"),
        F.lit("2026-01-01").cast("date").alias("_batch_dt")))
    app = meta(p.where(F.col("id") % 5 != 0).select(
        "id", F.concat(F.lit("A"), F.col("id")).alias("app_user_id"), F.lit(True).alias("mobile_valid"),
        F.lit("2025-01-01 00:00:00").cast("timestamp").alias("register_time"),
        F.lit("2026-01-01 00:00:00").cast("timestamp").alias("updated_at"), F.lit("2026-01-01").cast("date").alias("_batch_dt")))
    wx = meta(p.where(F.col("id") % 3 == 0).select(
        "id", F.concat(F.lit("W"), F.col("id")).alias("openid"), F.lit("official_account").alias("app_type"),
        F.lit(True).alias("mobile_valid"), F.lit("2025-01-01 00:00:00").cast("timestamp").alias("subscribe_time"),
        F.lit("2026-01-01 00:00:00").cast("timestamp").alias("updated_at"), F.lit("2026-01-01").cast("date").alias("_batch_dt")))
    for name, df in (("core_customer", core), ("card_account", card), ("app_user", app), ("wechat_user", wx)):
        wh.overwrite(df.drop("id"), f"bronze.{name}")
    # map: one person per id
    mp = (core.select(F.lit("core_customer").alias("source"), F.col("cust_no").alias("source_key"), F.col("id").alias("one_id"))
          .unionByName(card.select(F.lit("card_account").alias("source"), F.col("card_cust_id").alias("source_key"), F.col("id").alias("one_id")))
          .unionByName(app.select(F.lit("app_user").alias("source"), F.col("app_user_id").alias("source_key"), F.col("id").alias("one_id")))
          .unionByName(wx.select(F.lit("wechat_user").alias("source"), F.col("openid").alias("source_key"), F.col("id").alias("one_id"))))
    wh.overwrite(mp.withColumn("as_of", F.lit(D).cast("date")), "silver.one_id_map_history")

    person = (F.col("id") % persons)
    secs = (h(11) % (200 * 86400)).cast("long")
    txn_time = (F.lit(D + " 23:59:59").cast("timestamp").cast("long") - secs).cast("timestamp")
    txn = meta(spark.range(persons * txn_per).select(
        "id", F.concat(F.lit("T"), F.col("id")).alias("txn_id"),
        F.when((person % 2 == 0) & (h(12) % 3 == 0), "card").otherwise("core").alias("source"),
        F.when((person % 2 == 0) & (h(12) % 3 == 0), F.concat(F.lit("K"), person)).otherwise(F.concat(F.lit("C"), person)).alias("source_key"),
        txn_time.alias("txn_time"), (h(13) % 2000000 / 100).cast("decimal(18,2)").alias("amount"),
        F.when(h(14) % 5 == 0, "credit").otherwise("debit").alias("direction"),
        F.element_at(F.array(*[F.lit(x) for x in ("branch", "atm", "app", "web", "wechat", "pos", "online")]), (h(15) % 7 + 1).cast("int")).alias("channel"),
        F.element_at(F.array(*[F.lit(x) for x in ("education", "mother_baby", "travel", "catering", "supermarket", "real_estate", "other")]), (h(16) % 7 + 1).cast("int")).alias("category"),
        F.when(h(17) % 40 == 0, F.concat(F.lit("WM"), h(18) % 100)).alias("product_code"),
        F.to_date(txn_time).alias("_batch_dt")))
    wh.overwrite(txn.drop("id"), "bronze.transaction")
    ev_src = F.element_at(F.array(F.lit("app"), F.lit("app"), F.lit("web"), F.lit("official_account")), (h(21) % 4 + 1).cast("int"))
    ev_time = (F.lit(D + " 23:59:59").cast("timestamp").cast("long") - (h(22) % (200 * 86400)).cast("long")).cast("timestamp")
    evt = meta(spark.range(persons * evt_per).select(
        "id", F.concat(F.lit("E"), F.col("id")).alias("event_id"), ev_src.alias("source"),
        F.when(ev_src == "official_account", F.concat(F.lit("W"), person)).otherwise(F.concat(F.lit("A"), person)).alias("user_key"),
        ev_time.alias("event_time"),
        F.element_at(F.array(*[F.lit(x) for x in ("login", "page_view", "search", "click")]), (h(23) % 4 + 1).cast("int")).alias("event_type"),
        F.lit("home").alias("page"),
        F.element_at(F.array(*[F.lit(x) for x in ("教育金", "房贷利率", "理财")]), (h(24) % 3 + 1).cast("int")).alias("keyword"),
        F.to_date(ev_time).alias("_batch_dt")))
    wh.overwrite(evt.drop("id"), "bronze.event")
    snaps = [0, 7, 14, 21, 35]
    hold = meta(spark.range(persons * 3 * len(snaps)).select(
        "id", F.concat(F.lit("C"), F.col("id") % persons).alias("source_key"),
        F.date_sub(d, F.element_at(F.array(*[F.lit(s) for s in snaps]), ((F.col("id") / persons).cast("int") % len(snaps) + 1)).cast("int")).alias("snapshot_date"),
        F.element_at(F.array(*[F.lit(x) for x in ("demand_deposit", "time_deposit", "wealth", "fund", "insurance", "mortgage", "consumer_loan")]),
                     ((F.col("id") / (persons * len(snaps))).cast("int") * 2 + h(31) % 2 + 1).cast("int")).alias("product_type"),
        (F.pow(F.lit(10.0), h(32) % 700 / 100.0)).cast("decimal(18,2)").alias("balance"),
        F.date_add(d, (h(33) % 3000).cast("int")).alias("maturity_date")))
    hold = hold.withColumn("_batch_dt", F.col("snapshot_date")).dropDuplicates(["source_key", "snapshot_date", "product_type"])
    wh.overwrite(hold.drop("id"), "bronze.holding")
    ch = F.element_at(F.array(F.lit("app_push"), F.lit("wechat"), F.lit("sms")), (h(41) % 3 + 1).cast("int"))
    sent = (F.lit(D + " 12:00:00").cast("timestamp").cast("long") - (h(42) % (200 * 86400)).cast("long")).cast("timestamp")
    opened = F.when(h(43) % 3 == 0, (sent.cast("long") + h(44) % 86400).cast("timestamp"))
    tch = meta(spark.range(persons * 3).select(
        "id", F.concat(F.lit("X"), F.col("id")).alias("touch_id"), F.lit("camp").alias("campaign_id"), F.lit(1).alias("step"),
        ch.alias("channel"), F.lit("core_customer").alias("target_source"), F.concat(F.lit("C"), person).alias("target_key"),
        sent.alias("sent_time"), opened.alias("opened_time"), F.lit(None).cast("timestamp").alias("converted_time"),
        F.to_date(F.greatest(sent, F.coalesce(opened, sent))).alias("_batch_dt")))
    wh.overwrite(tch.drop("id"), "bronze.touch")
    print(f"generated in {time.time() - t0:.1f} s", flush=True)


def naive(wh, sub):
    """One aggregation query per statistic tag of the catalog ``sub``, joined to the persons, then the rules."""
    from pyspark.sql import functions as F

    from kequn.tags.plan import defaulted, filter_condition, id_map_as_of, rules_applied, source_view
    id_map = id_map_as_of(wh, D)
    persons = id_map.select("one_id").distinct()
    wide = persons
    for t in sub.of_kind("statistic"):
        d = t.definition
        # The same window and filter as the plan, applied before the aggregate instead of inside it.
        view = source_view(wh, d.source, D, id_map).where(filter_condition(d, D))
        q = view.groupBy("one_id").agg(F.expr(d.agg).alias("value")).withColumn("as_of_date", F.lit(D).cast("date"))
        q = q.select("one_id", (F.expr(d.value) if d.value else F.col("value")).cast(t.spark_type).alias(t.code))
        wide = wide.join(q, "one_id", "left").withColumn(t.code, defaulted(t, F.col(t.code)))
    return rules_applied(wide, sub)


DUCK_SQL = """
WITH m AS (SELECT source, source_key, one_id FROM read_parquet('{map}')),
persons AS (SELECT DISTINCT one_id FROM m),
txn AS (
  SELECT m.one_id, local_date(t.txn_time) AS d, t.amount, t.direction, t.product_code
  FROM read_parquet('{transaction}') t
  JOIN m ON m.source = CASE t.source WHEN 'core' THEN 'core_customer' WHEN 'card' THEN 'card_account' END
        AND m.source_key = t.source_key
  WHERE t._batch_dt <= DATE '{D}' AND local_date(t.txn_time) <= DATE '{D}'),
t_agg AS (
  SELECT one_id,
    count(*) FILTER (WHERE direction = 'debit' AND d BETWEEN DATE '{D}' - 89 AND DATE '{D}') AS txn_cnt_90d,
    round(sum(amount) FILTER (WHERE direction = 'debit' AND d BETWEEN DATE '{D}' - 89 AND DATE '{D}'), 2) AS txn_amt_90d,
    count(*) FILTER (WHERE direction = 'debit' AND d BETWEEN DATE '{D}' - 179 AND DATE '{D}') AS debit_cnt_180d,
    count(*) FILTER (WHERE product_code IS NOT NULL) AS p_all,
    count(*) FILTER (WHERE product_code IS NOT NULL AND d BETWEEN DATE '{D}' - 89 AND DATE '{D}') AS p_90
  FROM txn GROUP BY one_id),
ev AS (
  SELECT m.one_id, local_date(e.event_time) AS d, e.source
  FROM read_parquet('{event}') e
  JOIN m ON m.source = CASE WHEN e.source IN ('app', 'web') THEN 'app_user' ELSE 'wechat_user' END AND m.source_key = e.user_key
  WHERE e._batch_dt <= DATE '{D}' AND local_date(e.event_time) <= DATE '{D}'),
e_agg AS (
  SELECT one_id,
    count(DISTINCT d) FILTER (WHERE source = 'app' AND d BETWEEN DATE '{D}' - 29 AND DATE '{D}') AS app_active_days_30d,
    count(*) FILTER (WHERE d BETWEEN DATE '{D}' - 179 AND DATE '{D}') AS event_cnt_180d
  FROM ev GROUP BY one_id),
hold AS (
  SELECT m.one_id, h.snapshot_date, h.product_type, h.balance
  FROM read_parquet('{holding}') h JOIN m ON m.source = 'core_customer' AND m.source_key = h.source_key
  WHERE h._batch_dt <= DATE '{D}' AND h.snapshot_date <= DATE '{D}'),
h_agg AS (
  SELECT one_id, round(sum(balance) FILTER (WHERE product_type IN ('demand_deposit','time_deposit','wealth','fund','insurance')), 2) AS aum
  FROM (SELECT *, max(snapshot_date) OVER (PARTITION BY one_id) AS latest FROM hold) WHERE snapshot_date = latest
  GROUP BY one_id),
tch AS (
  SELECT * FROM read_parquet('{touch}') WHERE _batch_dt <= DATE '{D}' AND local_date(sent_time) <= DATE '{D}'
  QUALIFY row_number() OVER (PARTITION BY touch_id ORDER BY _batch_dt DESC,
          (opened_time IS NOT NULL)::INT + (converted_time IS NOT NULL)::INT DESC, _row_hash DESC) = 1),
o_agg AS (
  SELECT m.one_id,
    count(*) FILTER (WHERE t.channel = 'app_push') AS a, count(*) FILTER (WHERE t.channel = 'wechat') AS w,
    count(*) FILTER (WHERE t.channel = 'sms') AS s
  FROM tch t JOIN m ON m.source = t.target_source AND m.source_key = t.target_key
  WHERE t.opened_time IS NOT NULL AND local_date(t.opened_time) BETWEEN DATE '{D}' - 179 AND DATE '{D}'
  GROUP BY m.one_id),
wide AS (
  SELECT p.one_id,
    coalesce(t.txn_cnt_90d, 0) AS txn_cnt_90d, coalesce(t.txn_amt_90d, 0)::DECIMAL(20,2) AS txn_amt_90d,
    coalesce(h.aum, 0)::DECIMAL(20,2) AS aum, coalesce(e.app_active_days_30d, 0) AS app_active_days_30d,
    coalesce(t.debit_cnt_180d, 0) AS debit_cnt_180d, coalesce(e.event_cnt_180d, 0) AS event_cnt_180d,
    coalesce(t.p_all, 0) AS p_all, coalesce(t.p_90, 0) AS p_90,
    coalesce(o.a, 0) AS a, coalesce(o.w, 0) AS w, coalesce(o.s, 0) AS s
  FROM persons p LEFT JOIN t_agg t USING (one_id) LEFT JOIN e_agg e USING (one_id)
  LEFT JOIN h_agg h USING (one_id) LEFT JOIN o_agg o USING (one_id))
SELECT one_id, tag_code, tag_value FROM (
  SELECT one_id,
    CAST(txn_cnt_90d AS VARCHAR) AS txn_cnt_90d, CAST(txn_amt_90d AS VARCHAR) AS txn_amt_90d,
    CAST(aum AS VARCHAR) AS aum,
    CASE WHEN aum < 50000 THEN 'mass' WHEN aum < 500000 THEN 'gold' WHEN aum < 6000000 THEN 'platinum' ELSE 'private' END AS aum_tier,
    CAST(app_active_days_30d AS VARCHAR) AS app_active_days_30d,
    CAST(debit_cnt_180d = 0 AND event_cnt_180d = 0 AND aum >= 50000 AS VARCHAR) AS is_dormant_stable,
    CAST(p_all = 1 AND p_90 = 1 AS VARCHAR) AS is_first_purchase,
    CASE WHEN greatest(a, w, s) = 0 THEN NULL WHEN a >= greatest(w, s) THEN 'app_push' WHEN w >= s THEN 'wechat' ELSE 'sms' END
      AS preferred_channel
  FROM wide)
UNPIVOT INCLUDE NULLS (tag_value FOR tag_code IN (txn_cnt_90d, txn_amt_90d, aum, aum_tier, app_active_days_30d,
                                                 is_dormant_stable, is_first_purchase, preferred_channel))
"""


def setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--spark-conf {text!r}: expected KEY=VALUE")
    return key, value


def duckdb_memory_gb(total_bytes: int | None = None) -> int | None:
    """DuckDB's memory limit in this process: the machine's memory less the local JVM's heap and 2 GB;
    None (DuckDB's own default) where the machine's memory is not known."""
    from kequn.session import local_memory_gb, machine_memory_bytes

    total_bytes = total_bytes if total_bytes is not None else machine_memory_bytes()
    if total_bytes is None:
        return None
    return max(1, int(total_bytes / 2**30) - local_memory_gb(total_bytes) - 2)


def main(argv=None) -> int:
    from kequn.config import TagsConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--txn-per-person", type=int, default=10)
    ap.add_argument("--events-per-person", type=int, default=10)
    ap.add_argument("--out", default="/tmp/kequn_tags_bench")
    ap.add_argument("--reuse", action="store_true", help="reuse generated data in --out")
    ap.add_argument("--workers", type=int, default=TagsConfig().parallel_passes,
                    help="source passes at a time in the staged runs (default: tags.parallel_passes' default)")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", type=setting,
                    help="a Spark setting for the session (repeatable), e.g. "
                         "spark.driver.extraJavaOptions=-XX:+DontCompileHugeMethods")
    ap.add_argument("--naive-all", action="store_true",
                    help="also run the naive plan (one query per tag) for the whole catalog, not only the reference tags")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    import duckdb
    from pyspark.sql import functions as F

    from kequn.session import build_session
    from kequn.tables import Warehouse
    from kequn.tags import load_catalog, validate
    from kequn.tags.plan import aggregate_count, computed, wide_frame
    from kequn.tags.values import long_form, profile

    if not args.reuse and os.path.exists(args.out):
        shutil.rmtree(args.out)
    spark = build_session(os.path.join(args.out, "wh"), overrides=dict(args.spark_conf))
    wh = Warehouse(spark, os.path.join(args.out, "wh"))
    if not args.reuse:
        generate(spark, wh, args.persons, args.txn_per_person, args.events_per_person)
    rows = {s: wh.read(f"bronze.{s}").count() for s in ("transaction", "event", "holding", "touch")}
    print("fact rows:", rows, "total", sum(rows.values()), flush=True)

    cat = validate(spark, load_catalog())
    res = {}

    def timed(label, fn):
        t0 = time.time()
        n = fn()
        res[label] = (n, time.time() - t0)
        print(f"{label:<40} rows {n:>10,}  {res[label][1]:7.1f} s", flush=True)

    def write_long(df_wide, sub, codes, path):
        long = long_form(profile(df_wide, codes, sub, D), codes)
        long.select("one_id", "tag_code", "tag_value").write.mode("overwrite").parquet(path)
        return spark.read.parquet(path).count()

    stat_rule = [t.code for t in cat.tags if t.kind != "model"]
    full = cat.subset(stat_rule)
    print("aggregations in the full plan:", aggregate_count(wide_frame(wh, D, full)), "sources", full.sources())
    timed(f"spark planned, all {len(stat_rule)} tags", lambda: write_long(wide_frame(wh, D, full), full, stat_rule,
                                                                      f"{args.out}/out_full"))
    staged_label = f"spark staged passes, {args.workers} at a time"
    timed(f"{staged_label}, all {len(stat_rule)} tags",
          lambda: write_long(computed(wh, D, full, workers=args.workers), full, stat_rule,
                             f"{args.out}/out_full_staged"))
    ref = cat.subset(REF)
    timed("spark planned, 8 reference tags", lambda: write_long(wide_frame(wh, D, ref), ref, REF, f"{args.out}/out_ref"))
    timed(f"{staged_label}, 8 reference tags",
          lambda: write_long(computed(wh, D, ref, workers=args.workers), ref, REF, f"{args.out}/out_ref_staged"))
    timed(f"spark naive ({len(ref.of_kind('statistic'))} queries), reference",
          lambda: write_long(naive(wh, ref), ref, REF, f"{args.out}/out_naive"))
    if args.naive_all:
        timed(f"spark naive ({len(full.of_kind('statistic'))} queries), all {len(stat_rule)} tags",
              lambda: write_long(naive(wh, full), full, stat_rule, f"{args.out}/out_naive_full"))

    files = {s: f"{wh.path('bronze.' + s)}/*.parquet" for s in ("transaction", "event", "holding", "touch")}
    files["map"] = f"{wh.path('silver.one_id_map_history')}/*.parquet"
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    # DuckDB takes 80 % of the machine's memory by default, beside the local JVM's heap (half of it): at
    # millions of persons the two together could exhaust it. Its share is what the heap leaves, less
    # 2 GB for Python and the OS; what does not fit spills to a folder of the run's own.
    if (limit := duckdb_memory_gb()) is not None:
        con.execute(f"SET memory_limit = '{limit}GB'")
    con.execute(f"SET temp_directory = '{args.out}/duckdb_tmp'")
    # Spark writes timestamps as INT96 instants, which DuckDB reads as naive UTC wall clock: a day is
    # the instant's date in China Standard Time, as in the Spark session (casting the naive value to a
    # date took the UTC date and moved 0.5 % of the values across a window's edge).
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    con.execute("CREATE MACRO local_date(ts) AS CAST((ts AT TIME ZONE 'UTC') AS DATE)")
    sql = DUCK_SQL.format(D=D, **files)

    def duck():
        con.execute(f"COPY ({sql}) TO '{args.out}/out_duck.parquet' (FORMAT parquet)")
        return con.execute(f"SELECT count(*) FROM '{args.out}/out_duck.parquet'").fetchone()[0]
    timed("duckdb, 8 reference tags", duck)

    def mismatches(a, b):
        return con.execute(f"""SELECT count(*) FROM read_parquet('{a}') x FULL JOIN read_parquet('{b}') y
            USING (one_id, tag_code) WHERE x.tag_value IS DISTINCT FROM y.tag_value""").fetchone()[0]
    ref_files = f"{args.out}/out_ref/*.parquet"
    print("mismatches planned vs naive:", mismatches(ref_files, f"{args.out}/out_naive/*.parquet"))
    print("mismatches planned vs staged:", mismatches(ref_files, f"{args.out}/out_ref_staged/*.parquet"),
          "all tags:", mismatches(f"{args.out}/out_full/*.parquet", f"{args.out}/out_full_staged/*.parquet"))
    if args.naive_all:
        print("mismatches planned vs naive, all tags:",
              mismatches(f"{args.out}/out_full/*.parquet", f"{args.out}/out_naive_full/*.parquet"))
    print("mismatches planned vs duckdb:", mismatches(ref_files, f"{args.out}/out_duck.parquet"))
    base = res["spark planned, 8 reference tags"][1]
    for k, (n, s) in res.items():
        print(f"| {k} | {n:,} | {s:.1f} | {s / base:.2f} |")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
