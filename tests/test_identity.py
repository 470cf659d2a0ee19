"""Identity stage: edges, shared-point guard, stable one_ids over days, explanations."""
import dataclasses
import datetime as dt
import re

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from kequn.config import IdentityConfig, PipelineConfig
from kequn.identity import explain, one_id_map_as_of, run, with_one_id
from kequn.identity.components import components
from kequn.identity.edges import (all_listed_identifiers, contracted_edges, graph_vertices, identifiers_in,
                                  listed_identifiers, master_frames, record_vertex)
from kequn.identity.numbering import numbered
from kequn.identity.guard import blocklisted, degrees, linking_identifiers, over_limit
from kequn.identity.stable import one_id_decisions, one_id_map

# ------------------------------------------------------------------ bronze test data

BRONZE = {
    "core_customer": ("cust_no", ["mobile_token", "mobile_valid", "id_type", "id_no_token", "id_no_valid"]),
    "card_account": ("card_cust_id", ["mobile_token", "mobile_valid", "id_no_token", "id_no_valid"]),
    "app_user": ("app_user_id", ["mobile_token", "mobile_valid", "device_id", "device_id_valid", "cust_no"]),
    "wechat_user": ("openid", ["unionid", "mobile_token", "mobile_valid"]),
}
TYPES = {"mobile_valid": "boolean", "id_no_valid": "boolean", "device_id_valid": "boolean"}


def bronze_df(spark, source, rows, batch):
    """Bronze rows (identifier-relevant columns + metadata) for one batch date."""
    key, cols = BRONZE[source]
    schema = ", ".join([f"{key} string"] + [f"{c} {TYPES.get(c, 'string')}" for c in cols]
                       + ["updated_at timestamp", "_batch_dt date", "_row_hash string"])
    data = []
    for r in rows:
        r = dict(r)
        for c in cols:
            if c.endswith("_valid"):
                r.setdefault(c, r.get(c[:-6] + ("_token" if c[:-6] in ("mobile", "id_no") else "")) is not None)
        ts = dt.datetime.fromisoformat(batch + " 12:00:00")
        data.append(tuple([r[key]] + [r.get(c) for c in cols] + [ts, dt.date.fromisoformat(batch), f"h{r[key]}{batch}"]))
    return spark.createDataFrame(data, schema)


def load(wh, batch, **sources):
    for source, rows in sources.items():
        df = bronze_df(wh.spark, source, rows, batch)
        if wh.exists(f"bronze.{source}"):
            wh.append(df, f"bronze.{source}")
        else:
            wh.overwrite(df, f"bronze.{source}")


def cfg(**identity):
    return dataclasses.replace(PipelineConfig(), identity=IdentityConfig(**identity))


def person_of(wh, as_of):
    return {(r.source, r.source_key): r.one_id for r in one_id_map_as_of(wh, as_of).collect()}


# ------------------------------------------------------------------ pure functions

def test_listed_identifiers_keep_only_valid_ones(spark):
    df = bronze_df(spark, "app_user", [
        {"app_user_id": "A1", "mobile_token": "m1", "device_id": "d1", "cust_no": "C1"},
        {"app_user_id": "A2", "mobile_token": "m2", "mobile_valid": False, "device_id": "0000",
         "device_id_valid": False, "cust_no": ""},
        {"app_user_id": "A3", "mobile_token": None, "device_id": "  ", "cust_no": None},
    ], "2026-11-01")
    got = identifiers_in(listed_identifiers(df, "app_user"))
    expected = spark.createDataFrame([
        ("app_user", "A1", "mobile", "m1"), ("app_user", "A1", "device_id", "d1"), ("app_user", "A1", "cust_no", "C1"),
    ], "source string, source_key string, id_type string, id_token string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_core_customer_id_no_only_when_flag_valid(spark):
    df = bronze_df(spark, "core_customer", [
        {"cust_no": "C1", "id_type": "PASSPORT", "id_no_token": "p1", "id_no_valid": False},
        {"cust_no": "C2", "id_type": "ID_CARD", "id_no_token": "i2"},
    ], "2026-11-01")
    got = {(r.source_key, r.id_type) for r in identifiers_in(listed_identifiers(df, "core_customer")).collect()}
    assert got == {("C1", "cust_no"), ("C2", "cust_no"), ("C2", "id_no")}


def test_guard_blocks_identifiers_over_limit_and_blocklisted(spark):
    rows = [("core_customer", f"C{i}", "mobile", "shared-m") for i in range(11)]          # 11 > 10
    rows += [("card_account", f"K{i}", "id_no", "shared-i") for i in range(6)]            # 6 > 5
    rows += [("card_account", f"K{i}", "id_no", "ok-i") for i in range(5)]                # 5 = limit
    rows += [("app_user", "A1", "device_id", "tablet-007"), ("app_user", "A2", "device_id", "tablet-007")]
    rows += [("app_user", "A1", "mobile", "m1"), ("wechat_user", "W1", "mobile", "m1")]
    record_ids = spark.createDataFrame(rows, "source string, source_key string, id_type string, id_token string")
    deg = degrees(record_ids)
    shared = over_limit(deg, {"mobile": 10, "device_id": 10, "id_no": 5})
    assert sorted(shared.collect()) == [("id_no", "shared-i", 6), ("mobile", "shared-m", 11)]
    listed = blocklisted(deg, {"device_id": ["re:tablet-\\d+"], "mobile": ["nothing"]})
    assert [tuple(r) for r in listed.collect()] == [("device_id", "tablet-007", 2)]
    left = linking_identifiers(record_ids, shared.unionByName(listed))
    assert {r.id_token for r in left.collect()} == {"ok-i", "m1"}
    assert deg.where("id_token = 'm1'").first().degree == 2


def test_record_identifiers_of_a_day_hold_each_pair_once(spark, warehouse):
    # degrees counts rows as records: a key delivered in several versions must still list its
    # identifiers once.
    load(warehouse, "2026-11-01", core_customer=[{"cust_no": "C1", "mobile_token": "m1"}],
         app_user=[{"app_user_id": "A1", "mobile_token": "m1", "cust_no": "C1"}])
    load(warehouse, "2026-11-02", core_customer=[{"cust_no": "C1", "mobile_token": "m1"}],
         app_user=[{"app_user_id": "A1", "mobile_token": "m1", "cust_no": "C1"}])
    rows = identifiers_in(all_listed_identifiers(master_frames(warehouse, "2026-11-02")))
    assert rows.count() == rows.distinct().count() == 4
    assert {(r.id_type, r.degree) for r in degrees(rows).collect()} == {("mobile", 2), ("cust_no", 2)}


def _graph_partition(rec_v, linked):
    """The day's persons as sets of record keys, from ``graph_vertices``' two frames."""
    comps = components(contracted_edges(linked), "scipy").withColumnRenamed("vertex", "record_vertex")
    rows = (rec_v.join(comps, "record_vertex", "left")
            .select("source", "source_key", F.coalesce("component", "record_vertex").alias("c")).collect())
    groups = {}
    for r in rows:
        groups.setdefault(r.c, set()).add((r.source, r.source_key))
    return sorted(sorted(g) for g in groups.values())


def test_record_vertices_are_key_hashes_and_numbered_when_two_records_share_one(spark):
    records = spark.createDataFrame([("app_user", "A1"), ("app_user", "A2"), ("core_customer", "C1"),
                                     ("core_customer", "C2"), ("wechat_user", "W1")], "source string, source_key string")
    linking = spark.createDataFrame([("app_user", "A1", "mobile", "m1"), ("core_customer", "C1", "mobile", "m1"),
                                     ("core_customer", "C2", "id_no", "i2"), ("wechat_user", "W1", "id_no", "i2")],
                                    "source string, source_key string, id_type string, id_token string")
    rec_v, linked, shared = graph_vertices(records, linking)
    ids = {(r.source, r.source_key): r.record_vertex for r in rec_v.collect()}
    assert shared == 0 and len(set(ids.values())) == 5
    # The id is the record's hash wherever a row names the record: no lookup, the same every day.
    again = records.select("source", "source_key", F.xxhash64("source", "source_key").alias("v")).collect()
    assert {(r.source, r.source_key): r.v for r in again} == ids
    assert all(ids[(r.source, r.source_key)] == r.record_vertex for r in linked.collect())
    hashed = _graph_partition(rec_v, linked)
    assert hashed == [[("app_user", "A1"), ("core_customer", "C1")], [("app_user", "A2")],
                      [("core_customer", "C2"), ("wechat_user", "W1")]]

    # A hash every record shares (as two records sharing one would): numbered in key order instead,
    # and the same persons come out; hashed as they are, all five would be one vertex.
    rec_n, linked_n, shared_n = graph_vertices(records, linking, vertex=F.lit(7).cast("bigint"))
    assert shared_n == 1
    assert sorted((r.source, r.source_key, r.record_vertex) for r in rec_n.collect()) == [
        ("app_user", "A1", 1), ("app_user", "A2", 2), ("core_customer", "C1", 3), ("core_customer", "C2", 4),
        ("wechat_user", "W1", 5)]
    assert _graph_partition(rec_n, linked_n) == hashed


def test_numbered_is_row_number_over_the_whole_frame(spark):
    from pyspark.sql import Window
    keys = [("record" if i % 3 else "identifier", f"ns{i % 4}", f"k{(i * 7919) % 1000:04d}") for i in range(300)]
    df = spark.createDataFrame(keys, "kind string, ns string, key string").repartition(3)
    order = ["kind", "ns", "key"]
    expected = df.withColumn("_n", F.row_number().over(Window.orderBy(*order)).cast("long"))
    for partitions in (1, 4, 7):
        assert_df_equality(numbered(df, order, partitions=partitions), expected, ignore_row_order=True)


def test_rows_get_the_one_id_of_their_record_joined_on_its_hash_and_colliding_records_stay_apart(spark):
    id_map = spark.createDataFrame([("core_customer", "C1", 1), ("card_account", "C1", 2), ("app_user", "A1", 3)],
                                   "source string, source_key string, one_id bigint")
    facts = spark.createDataFrame([("core", "C1", 10), ("card", "C1", 20), ("app", "A1", 30), ("core", "C9", 40),
                                   ("core", None, 50), (None, "C1", 60)], "src string, key string, amount int")
    src = F.when(F.col("src") == "core", "core_customer").when(F.col("src") == "card", "card_account") \
        .when(F.col("src") == "app", "app_user")
    expected = spark.createDataFrame([(10, 1), (20, 2), (30, 3)], "amount int, one_id bigint")
    # Hashed as records are, then with one hash for every record: each row still finds its own record only.
    for hashed in (record_vertex, lambda source, key: F.lit(7).cast("bigint")):
        got = with_one_id(facts, id_map, src, F.col("key"), hashed)
        assert got.columns == ["src", "key", "amount", "one_id"]
        assert_df_equality(got.select("amount", "one_id"), expected, ignore_row_order=True, ignore_nullable=True)
    # Rows that all name one source: that source's records only (C1 is also a card_account key).
    core = with_one_id(facts.where("src = 'card'"), id_map, "core_customer", F.col("key"))
    assert [(r.amount, r.one_id) for r in core.collect()] == [(20, 1)]
    # The broadcast map is probed by the one long hash; the strings are compared beside the keys.
    for joined in (with_one_id(facts, F.broadcast(id_map), src, F.col("key")),
                   with_one_id(facts, F.broadcast(id_map), "core_customer", F.col("key"))):
        plan = joined._jdf.queryExecution().executedPlan().toString()
        join = next(line for line in plan.splitlines() if "BroadcastHashJoin" in line)
        assert re.search(r"BroadcastHashJoin \[_dh#\d+L\], \[_mh#\d+L\], Inner, BuildRight, coalesce", join), join


def test_one_ids_keep_merge_split_new(spark):
    prev = spark.createDataFrame([
        ("s", "a1", 1), ("s", "a2", 1),                      # person 1 unchanged
        ("s", "b1", 2), ("s", "c1", 3),                      # 2 and 3 merge
        ("s", "d1", 4), ("s", "d2", 4), ("s", "d3", 4),      # 4 splits 2 + 1
        ("s", "e1", 5), ("s", "e2", 5),                      # 5 splits 1 + 1 (tie)
    ], "source string, source_key string, one_id bigint")
    cur = spark.createDataFrame([
        ("s", "a1", 100), ("s", "a2", 100),
        ("s", "b1", 200), ("s", "c1", 200),
        ("s", "d1", 300), ("s", "d2", 300), ("s", "d3", 310),
        ("s", "e1", 400), ("s", "e2", 410),
        ("s", "f1", 500),                                    # brand new
    ], "source string, source_key string, component bigint")
    decisions = one_id_decisions(cur, prev, max_issued=9)
    mapping = one_id_map(cur, decisions)
    got = {r.source_key: r.one_id for r in mapping.collect()}
    assert got == {"a1": 1, "a2": 1, "b1": 2, "c1": 2, "d1": 4, "d2": 4, "d3": 10,
                   "e1": 5, "e2": 11, "f1": 12}
    events = sorted(tuple(r) for r in decisions.where("event != 'keep'").select(
        "one_id", "merged_from", "split_from", "event").collect())
    assert events == [(2, 3, None, "merge"), (10, None, 4, "split"), (11, None, 5, "split"), (12, None, None, "new")]


# ------------------------------------------------------------------ the stage over two days

DAY1 = dict(
    core_customer=[
        {"cust_no": "C1", "mobile_token": "m1", "id_type": "ID_CARD", "id_no_token": "i1"},
        {"cust_no": "C2", "mobile_token": "m2", "id_type": "ID_CARD", "id_no_token": "i2"},
        {"cust_no": "C3", "mobile_token": "m3", "id_type": "OTHER", "id_no_token": "x3", "id_no_valid": False},
        {"cust_no": "C4", "mobile_token": "bad", "mobile_valid": False},
        {"cust_no": "C5", "mobile_token": "m5"},
    ],
    card_account=[
        {"card_cust_id": "K1", "mobile_token": "m1x", "id_no_token": "i1"},      # links to C1 by id_no
        {"card_cust_id": "K3", "mobile_token": "m3", "id_no_token": "x3"},       # links to C3 by mobile
        {"card_cust_id": "K5", "mobile_token": "m5", "id_no_token": "i5"},       # person 5: C5, K5, A5
    ] + [{"card_cust_id": f"KS{i}", "mobile_token": "switchboard"} for i in range(11)],
    app_user=[
        {"app_user_id": "A1", "mobile_token": "m9", "device_id": "d1", "cust_no": "C1"},  # links to C1 by cust_no
        {"app_user_id": "A2", "mobile_token": "m2b", "device_id": "0", "device_id_valid": False},
        {"app_user_id": "A5", "mobile_token": "m5b", "device_id": "d5", "cust_no": "C5"},
    ],
    wechat_user=[{"openid": "W1", "unionid": "u1", "mobile_token": "m9"}],      # links to A1 by mobile
)


def test_run_two_days_stable_ids_merge_split_idempotent_explain(spark, warehouse):
    wh = warehouse
    config = cfg(engine="scipy")
    load(wh, "2026-11-01", **DAY1)
    # A warehouse written before b25ae96 holds the vertex dictionary; nothing reads it now, and the run removes it.
    wh.overwrite(spark.createDataFrame([("record", "core_customer", "C1", 1)],
                                       "kind string, ns string, key string, vertex bigint"),
                 "silver.identity_vertex_dictionary")
    counts = run(spark, wh, "2026-11-01", config)
    assert counts["gold.one_id_map"] == 5 + 14 + 3 + 1
    assert not wh.exists("silver.identity_vertex_dictionary")
    assert not spark.catalog.tableExists("silver.identity_vertex_dictionary")

    d1 = person_of(wh, "2026-11-01")
    person1 = {k for k, v in d1.items() if v == d1[("core_customer", "C1")]}
    assert person1 == {("core_customer", "C1"), ("card_account", "K1"), ("app_user", "A1"), ("wechat_user", "W1")}
    assert d1[("core_customer", "C3")] == d1[("card_account", "K3")]
    assert d1[("core_customer", "C5")] == d1[("card_account", "K5")] == d1[("app_user", "A5")]
    # The switchboard number links nothing and is reported; the invalid mobile of C4 links nothing.
    assert len({d1[("card_account", f"KS{i}")] for i in range(11)}) == 11
    assert [tuple(r) for r in wh.read("gold.identity_shared_identifiers").collect()] == [("mobile", "switchboard", 11)]
    assert len(set(d1.values())) == len(d1) - 3 - 1 - 2
    # ids are integral, and the current map equals the history day.
    assert_df_equality(wh.read("gold.one_id_map"), one_id_map_as_of(wh, "2026-11-01"),
                       ignore_row_order=True, ignore_nullable=True)

    # Day 2: C2 and A2 merge (A2 takes C2's mobile); K5 changes its mobile and id_no, A5 unbinds:
    # person 5 splits into C5 + K5 and A5 (two parts, C5+K5 the larger: keeps the id); a new record.
    load(wh, "2026-11-02",
         app_user=[{"app_user_id": "A2", "mobile_token": "m2", "device_id": "0", "device_id_valid": False},
                   {"app_user_id": "A5", "mobile_token": "m5b", "device_id": "d5", "cust_no": None},
                   {"app_user_id": "A6", "mobile_token": "m6"}],
         card_account=[{"card_cust_id": "K5", "mobile_token": "m5", "id_no_token": "i5"}])
    run(spark, wh, "2026-11-02", config)
    d2 = person_of(wh, "2026-11-02")
    for key in person1 | {("core_customer", "C3"), ("core_customer", "C4")}:
        assert d2[key] == d1[key]
    merged = sorted([d1[("core_customer", "C2")], d1[("app_user", "A2")]])
    assert d2[("core_customer", "C2")] == d2[("app_user", "A2")] == merged[0]
    assert d2[("core_customer", "C5")] == d2[("card_account", "K5")] == d1[("core_customer", "C5")]
    assert d2[("app_user", "A5")] > max(d1.values())
    assert d2[("app_user", "A6")] > max(d1.values())
    lineage = {(r.event, r.one_id, r.merged_from, r.split_from) for r in wh.read("gold.one_id_lineage").collect()}
    assert lineage == {("merge", merged[0], merged[1], None),
                       ("split", d2[("app_user", "A5")], None, d1[("core_customer", "C5")])}
    health = wh.read("gold.identity_health").where("as_of = DATE'2026-11-02'").first()
    assert (health.one_ids_merged, health.one_ids_split, health.one_ids_created) == (1, 1, 1)
    assert health.records == len(d2) and health.shared_identifiers == 1 and health.largest_component == 4

    # Re-running day 2 (with another engine) changes nothing; day 1 still reads as it was.
    before = {t: wh.read(t).localCheckpoint() for t in
              ["gold.one_id_map", "silver.one_id_map_history", "gold.one_id_lineage", "silver.identity_edges",
               "gold.identity_shared_identifiers"]}
    run(spark, wh, "2026-11-02", cfg(engine="dataframe"))
    for t, df in before.items():
        assert_df_equality(wh.read(t), df, ignore_row_order=True, ignore_nullable=True)
    assert person_of(wh, "2026-11-01") == d1

    # Explanations: person 1's records and the identifiers joining them.
    ex = explain(wh, d2[("core_customer", "C1")])
    rows = ex.collect()
    assert {(r.source, r.source_key) for r in rows if r.linked_source is None} == person1
    pairs = {(r.source, r.source_key, r.linked_source, r.linked_source_key, r.id_type, r.id_token)
             for r in rows if r.linked_source is not None}
    assert pairs == {("card_account", "K1", "core_customer", "C1", "id_no", "i1"),
                     ("app_user", "A1", "core_customer", "C1", "cust_no", "C1"),
                     ("app_user", "A1", "wechat_user", "W1", "mobile", "m9")}
    view = spark.sql(f"SELECT * FROM gold.identity_explain WHERE as_of = DATE'2026-11-02' "
                     f"AND one_id = {d2[('core_customer', 'C1')]}")
    assert view.count() == 3
