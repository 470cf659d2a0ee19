"""Builders of tiny bronze tables and one_id maps for the tag tests (no tests here)."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

from pyspark.sql import functions as F

from kequn.landing import PII_COLUMNS, SOURCES

from conftest import session_conf

SPARK_TYPE = {"string": "string", "date": "date", "timestamp": "timestamp", "decimal": "decimal(18,2)",
              "boolean": "boolean", "int": "int"}
VALIDITY = {"core_customer": ("mobile", "id_no"), "card_account": ("mobile", "id_no"),
            "app_user": ("mobile", "device_id"), "wechat_user": ("mobile",)}


def bronze_schema(source: str) -> list[tuple[str, str]]:
    cols = []
    for c in SOURCES[source].columns:
        name = f"{c.name}_token" if c.name in PII_COLUMNS else c.name
        cols.append((name, SPARK_TYPE[c.type]))
    for ident in VALIDITY.get(source, ()):
        cols += [(f"{ident}_valid", "boolean"), (f"{ident}_invalid_reason", "string")]
    cols += [("_batch_dt", "date"), ("_file", "string"), ("_line", "bigint"), ("_row_hash", "string"),
             ("_extra", "map<string,string>"), ("_ingested_at", "timestamp")]
    return cols


def _conv(v, typ):
    if v is None:
        return None
    if typ == "date" and isinstance(v, str):
        return dt.date.fromisoformat(v)
    if typ == "timestamp":
        return str(v)   # cast by Spark in the session time zone (Asia/Shanghai), not the OS's
    if typ.startswith("decimal"):
        return Decimal(str(v))
    return v


def bronze_df(spark, source: str, rows: list[dict], batch_dt: str):
    """Rows given by landing/bronze column name; everything else null; metadata filled."""
    schema = bronze_schema(source)
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        r.setdefault("_batch_dt", batch_dt)
        for ident in VALIDITY.get(source, ()):
            r.setdefault(f"{ident}_valid", True)
        r.setdefault("_line", i + 1)
        r.setdefault("_file", f"{source}.csv")
        r.setdefault("_row_hash", hashlib.sha1(repr(sorted(r.items(), key=str)).encode()).hexdigest())
        r.setdefault("_extra", {})
        out.append(tuple(_conv(r.get(n), t) for n, t in schema))
    df = spark.createDataFrame(out, ", ".join(f"`{n}` {'string' if t == 'timestamp' else t}" for n, t in schema))
    return df.select(*[F.col(n).cast("timestamp").alias(n) if t == "timestamp" else F.col(n) for n, t in schema])


def write_bronze(wh, source: str, batches: dict[str, list[dict]]):
    """batches: {batch_dt: rows}; the table holds all of them (overwrite)."""
    df = None
    for b, rows in batches.items():
        part = bronze_df(wh.spark, source, rows, b)
        df = part if df is None else df.unionByName(part)
    wh.overwrite(df, f"bronze.{source}")


def write_map(wh, as_of: str, mapping: list[tuple[str, str, int]], more_days=()):
    rows = [(dt.date.fromisoformat(d), s, k, int(o)) for d in (as_of, *more_days) for s, k, o in mapping]
    df = wh.spark.createDataFrame(rows, "as_of date, source string, source_key string, one_id bigint")
    # (unpartitioned here: Warehouse.overwrite cannot create a partitioned table under the session's
    # dynamic partitionOverwriteMode; readers only filter on as_of)
    wh.overwrite(df, "silver.one_id_map_history")
    # the current map (quality's foreign key of the tag tables refers to it)
    wh.overwrite(df.where(df.as_of == max(dt.date.fromisoformat(d) for d in (as_of, *more_days)))
                 .drop("as_of"), "gold.one_id_map")


def day(d: str, delta: int) -> str:
    return (dt.date.fromisoformat(d) + dt.timedelta(days=delta)).isoformat()


def test_wide_form_reads_back_the_long_form_of_a_profile(spark):
    from chispa import assert_df_equality

    from kequn.tags.values import long_form, wide_form

    types = {"n": "int", "amount": "decimal(18,2)", "share": "double", "vip": "boolean", "since": "date",
             "tier": "string"}
    profile = spark.createDataFrame(
        [(1, dt.date(2026, 3, 1), 3, Decimal("1234.50"), 0.1, True, dt.date(2025, 1, 31), "gold"),
         (2, dt.date(2026, 3, 1), None, None, None, None, None, None),           # no value at all
         (3, dt.date(2026, 3, 1), -1, Decimal("0.01"), 1e-7, False, dt.date(2026, 2, 28), "")],
        "one_id bigint, as_of date, " + ", ".join(f"{c} {t}" for c, t in types.items()))
    long = long_form(profile, list(types))
    assert long.count() == 3 * len(types)  # one row per person and tag, null values included
    assert_df_equality(wide_form(long, types), profile.drop("as_of"), ignore_row_order=True)
    # the tags asked for only, in the order asked
    assert wide_form(long, {"tier": "string", "n": "int"}).columns == ["one_id", "tier", "n"]


def test_the_long_form_of_many_tags_holds_each_value_as_text_and_its_rows_are_made_by_compiled_code(spark):
    from chispa import assert_df_equality

    from kequn.tags.values import long_form

    # More tags than the 50 rows stack() is compiled for: 60, of four types, in the catalog's order.
    codes = [f"t{i:02d}" for i in range(60)]
    kinds = ["bigint", "decimal(18,2)", "boolean", "string"]
    types = {c: kinds[i % 4] for i, c in enumerate(codes)}
    values = {"bigint": lambda p, i: p * 100 + i, "decimal(18,2)": lambda p, i: Decimal(f"{p}.{i:02d}"),
              "boolean": lambda p, i: (p + i) % 2 == 0, "string": lambda p, i: f"v{p}-{i}"}
    rows = [(p, dt.date(2026, 3, 1), *[None if (p == 2 and i % 3 == 0) else values[types[c]](p, i)
                                       for i, c in enumerate(codes)]) for p in (1, 2)]
    profile = spark.createDataFrame(rows, "one_id bigint, as_of date, " + ", ".join(f"{c} {t}" for c, t in types.items()))
    text = {"bigint": str, "decimal(18,2)": str, "boolean": lambda v: str(v).lower(), "string": str}
    expected = spark.createDataFrame(
        [(dt.date(2026, 3, 1), p, c, None if v is None else text[types[c]](v))
         for p, _, *vals in rows for c, v in zip(codes, vals)],
        "as_of date, one_id bigint, tag_code string, tag_value string")
    got = long_form(profile, codes)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # A person's rows in the catalog's order, and every other column as given (keys named by the caller).
    assert [r.tag_code for r in got.where("one_id = 1").collect()] == codes
    assert long_form(profile, codes[:2], keys=("one_id",)).columns == ["one_id", "tag_code", "tag_value"]
    # The generator that makes the rows can be compiled: stack() cannot beyond 50 rows, and evaluated row by
    # row it took twice as long (values.long_form). Asked of the generator itself, since this suite's plans
    # show no compiled stage at all (its session sets spark.sql.codegen.factoryMode=NO_CODEGEN).
    node = got._jdf.queryExecution().executedPlan()
    while node.nodeName() != "Generate":
        node = node.children().head()
    assert node.generator().supportCodegen(), node.toString()


def test_a_source_whose_tags_all_have_windows_reads_only_the_widest(spark, warehouse):
    from chispa import assert_df_equality

    from kequn.tags import load_catalog, validate
    from kequn.tags.plan import id_map_as_of, source_pass, source_view, stats_by_source, window_start

    as_of = "2026-11-25"
    catalog = validate(spark, load_catalog())
    by_source = stats_by_source(catalog)
    widest = max(t.definition.window_days for t in by_source["event"])
    assert window_start(by_source["event"], as_of) == day(as_of, -(widest - 1))
    # A transaction tag without a window (all purchases ever) keeps every fact in reach.
    assert any(t.definition.window_days is None for t in by_source["transaction"])
    assert window_start(by_source["transaction"], as_of) is None

    ages = [0, 29, 30, widest - 1, widest, widest + 200]
    write_bronze(warehouse, "event", {day(as_of, -a): [
        {"event_id": f"E{a}", "source": "app", "user_key": "A1", "event_time": f"{day(as_of, -a)} 23:59:59",
         "event_type": "search", "keyword": "education"}] for a in ages})
    write_map(warehouse, as_of, [("app_user", "A1", 1)])
    id_map = id_map_as_of(warehouse, as_of)
    bounded = source_view(warehouse, "event", as_of, id_map, tags=by_source["event"])
    assert sorted(r.event_id for r in bounded.collect()) == sorted(f"E{a}" for a in ages if a < widest)
    everything = source_view(warehouse, "event", as_of, id_map)
    assert everything.count() == len(ages)
    assert_df_equality(source_pass(bounded, by_source["event"], as_of).drop("_rows_in"),
                       source_pass(everything, by_source["event"], as_of).drop("_rows_in"))


def test_a_small_map_is_broadcast_to_the_passes_and_gives_the_same_values(spark, warehouse):
    from chispa import assert_df_equality

    from kequn.tags import load_catalog, validate
    from kequn.identity import one_id_map_as_of, small_map
    from kequn.tags.plan import source_pass, source_view, stats_by_source

    as_of = "2026-11-25"
    tags = stats_by_source(validate(spark, load_catalog()))["transaction"]
    write_bronze(warehouse, "transaction", {day(as_of, -1): [
        {"txn_id": f"T{i}", "source": src, "source_key": key, "txn_time": f"{day(as_of, -(i * 7))} 10:00:00",
         "amount": 10 * i + 1, "direction": "debit" if i % 3 else "credit", "channel": "app", "category": "food",
         "product_code": "P1" if i % 2 else None}
        for i, (src, key) in enumerate([("core", "C1"), ("card", "K1"), ("core", "C2"), ("core", "C9")] * 3)]})
    write_map(warehouse, as_of, [("core_customer", "C1", 1), ("card_account", "K1", 1), ("core_customer", "C2", 2)])
    plain = one_id_map_as_of(warehouse, as_of)

    def hinted(df):
        return "strategy=broadcast" in df._jdf.queryExecution().analyzed().toString()

    assert hinted(small_map(plain, limit=3)) and not hinted(small_map(plain, limit=2)) and not hinted(plain)
    with session_conf(spark, {"spark.sql.autoBroadcastJoinThreshold": "-1"}):
        assert not hinted(small_map(plain, limit=3))   # a session that turned broadcasts off keeps them off
    broadcast, shuffled = (source_pass(source_view(warehouse, "transaction", as_of, m, tags=tags), tags, as_of)
                           for m in (small_map(plain, limit=3), small_map(plain, limit=2)))
    assert_df_equality(broadcast, shuffled, ignore_row_order=True)
    assert sorted(r.one_id for r in broadcast.collect()) == [1, 2]   # C9 has no one_id: its rows count nowhere
