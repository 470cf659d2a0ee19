"""The stage end to end on a small catalog: outputs, idempotence, tag-level gates."""
import dataclasses
import decimal
import math
import shutil

import pytest
from chispa import assert_df_equality

from kequn.config import PipelineConfig
from kequn.tags import gates, run, validate
from kequn.tags import catalog_for
from kequn.tags.catalog import catalog_from_dicts
from kequn.tags.plan import computed
from delta_log import first_commit_stats
from test_tags_helpers import day, write_bronze, write_map

D1 = "2026-06-30"
D2 = day(D1, 1)
N = 30
CATALOG = """
tags:
  - code: gender
    name_zh: 性别
    name_en: Gender
    category: basic
    kind: statistic
    value_type: string
    description: gender
    definition: {source: person, where: "gender IS NOT NULL", agg: "max_by(gender, updated_at)"}
  - code: txn_cnt_90d
    name_zh: 近90天交易笔数
    name_en: Debits 90d
    category: behaviour
    kind: statistic
    value_type: int
    description: debits
    definition: {source: transaction, window_days: 90, where: "direction = 'debit'", agg: "count(1)", default: "0"}
  - code: busy
    name_zh: 活跃
    name_en: Busy
    category: behaviour
    kind: rule
    value_type: boolean
    description: busy
    definition: {expr: "txn_cnt_90d >= 2"}
  - code: grp
    name_zh: 分群
    name_en: Cluster
    category: value
    kind: model
    value_type: int
    description: k-means
    definition: {model: {method: kmeans, k: 2, features: [txn_cnt_90d]}}
    gate: {max_psi: null}
"""


def build(wh):
    keys = [f"C{i}" for i in range(1, N + 1)]
    masters = {day(D1, -100): [{"cust_no": k, "gender": "MF"[i % 2], "updated_at": f"{day(D1, -100)} 00:00:00"}
                               for i, k in enumerate(keys)],
               # on D2 most customers' gender is blanked out: the tag's coverage collapses
               D2: [{"cust_no": k, "gender": None, "updated_at": f"{D2} 08:00:00"} for k in keys[5:]]}
    write_bronze(wh, "core_customer", masters)
    txns = [{"txn_id": f"T{i}_{j}", "source": "core", "source_key": f"C{i}", "txn_time": f"{day(D1, -j)} 10:00:00",
             "amount": "10.00", "direction": "debit"} for i in range(1, N + 1) for j in range(i % 4)]
    write_bronze(wh, "transaction", {D1: txns})
    write_map(wh, D1, [("core_customer", k, i + 1) for i, k in enumerate(keys)], more_days=(D2,))


def test_run_publishes_gates_and_is_idempotent(spark, warehouse, tmp_path):
    (tmp_path / "conf" / "tags").mkdir(parents=True)
    (tmp_path / "conf" / "tags" / "t.yaml").write_text(CATALOG, encoding="utf-8")
    cfg = dataclasses.replace(PipelineConfig(), conf_dir=str(tmp_path / "conf"))
    build(warehouse)
    wh = warehouse

    out1 = run(spark, wh, D1, cfg)
    assert out1["gold.tag_values"] == N * 4 and out1["gold.customer_profile"] == N
    tv = wh.read("gold.tag_values")
    assert tv.columns == ["as_of", "one_id", "tag_code", "tag_value"]
    # File statistics for the columns the table may be Z-ordered by, not for tag_value.
    stats = first_commit_stats(wh.path("gold.tag_values"))
    assert stats and all(set(s["minValues"]) == {"one_id", "tag_code"} for s in stats)
    # C3 (one_id 3) has 3 % 4 = 3 debit transactions in the window; C4 has none
    assert tv.where("tag_code = 'txn_cnt_90d' AND one_id = 3").first()["tag_value"] == "3"
    assert tv.where("tag_code = 'txn_cnt_90d' AND one_id = 4").first()["tag_value"] == "0"
    assert tv.where("tag_code = 'busy' AND one_id = 3").first()["tag_value"] == "true"
    assert tv.where("tag_code = 'grp' AND tag_value IS NOT NULL").count() == N
    prof = wh.read("gold.customer_profile")
    assert prof.columns == ["one_id", "as_of", "gender", "txn_cnt_90d", "busy", "grp"]
    cat = {r["tag_code"]: r for r in wh.read("gold.tag_catalog").collect()}
    assert cat["gender"]["coverage"] == 1.0 and cat["gender"]["gate_status"] == "published"
    assert '"F": 0.5' in cat["gender"]["value_distribution"]
    assert wh.read("gold.tag_cluster_profile").groupBy().sum("members").first()[0] == N

    # The day's bins are kept for the next day's gates; rebuilt from the published long form they agree.
    cat_d1 = validate(spark, catalog_for(cfg)[0])
    kept = gates.previous_distribution(wh, D1, cat_d1)
    assert kept == gates.published_distribution(wh, D1, cat_d1)
    assert kept.counts["gender"] == {"F": N // 2, "M": N // 2} and set(kept.edges) == {"txn_cnt_90d", "grp"}

    out2 = run(spark, wh, D2, cfg)
    # gender's coverage fell from 100% to 1/6: withheld that day, the other tags publish
    g = {r["tag_code"]: r for r in wh.read("quality.tag_gate_results").where(f"as_of = DATE'{D2}'").collect()}
    assert g["gender"]["status"] == "withheld" and "coverage collapsed" in g["gender"]["reason"]
    assert g["txn_cnt_90d"]["status"] == "published"
    assert out2["gold.tag_values"] == N * 3
    d2 = wh.read("gold.tag_values").where(f"as_of = DATE'{D2}'")
    assert d2.where("tag_code = 'gender'").count() == 0
    assert wh.read("gold.customer_profile").where("gender IS NOT NULL").count() == 0
    assert {r["tag_code"]: r["gate_status"] for r in wh.read("gold.tag_catalog").collect()}["gender"] == "withheld"

    # re-running the old day replaces its partition only; the latest-day tables stay on D2
    run(spark, wh, D1, cfg)
    counts = {r["as_of"].isoformat(): r["count"] for r in wh.read("gold.tag_values").groupBy("as_of").count().collect()}
    assert counts == {D1: N * 4, D2: N * 3}
    assert wh.read("gold.customer_profile").first()["as_of"].isoformat() == D2


def test_gate_evaluation_rules():
    cat = catalog_from_dicts([
        {"code": "lvl", "name_zh": "l", "name_en": "l", "category": "value", "kind": "rule", "value_type": "string",
         "description": "x", "definition": {"expr": "'a'"}, "gate": {"psi_min_count": 10, "min_coverage": 0.2}},
    ])
    same = {("prev", "lvl"): {"a": 50, "b": 50}, ("today", "lvl"): {"a": 52, "b": 48}}
    r = gates.evaluate(cat, ["lvl"], same, True)["lvl"]
    assert r.status == "published" and r.psi < 0.01 and r.coverage == 1.0
    shifted = {("prev", "lvl"): {"a": 50, "b": 50}, ("today", "lvl"): {"a": 95, "b": 5}}
    r = gates.evaluate(cat, ["lvl"], shifted, True)["lvl"]
    assert r.status == "withheld" and "PSI" in r.reason
    assert math.isclose(r.psi, gates.psi({"a": 50, "b": 50}, {"a": 95, "b": 5}))
    sparse = {("today", "lvl"): {"a": 10, gates.NULL_BIN: 90}}
    r = gates.evaluate(cat, ["lvl"], sparse, False)["lvl"]
    assert r.status == "withheld" and "min_coverage" in r.reason and r.psi is None


def test_binned_counts_persons_per_bin_for_each_label_and_tag(spark):
    cat = catalog_from_dicts([
        {"code": "amt", "name_zh": "a", "name_en": "a", "category": "value", "kind": "rule", "value_type": "decimal",
         "description": "x", "definition": {"expr": "1.0"}},
        {"code": "lvl", "name_zh": "l", "name_en": "l", "category": "value", "kind": "rule", "value_type": "string",
         "description": "x", "definition": {"expr": "'a'"}},
    ])
    D = decimal.Decimal
    profile = spark.createDataFrame([(D("1.00"), "a"), (D("2.00"), "a"), (D("5.00"), "b"), (D("10.00"), None),
                                     (None, "a")], "amt decimal(18,2), lvl string")
    typed = gates.comparable(profile, cat, ["amt", "lvl"])
    assert dict(typed.dtypes) == {"amt": "double", "lvl": "string"}
    got = gates.binned(typed, cat, ["amt", "lvl"], {"own": {"amt": [2.0, 6.0]}, "prev": {"amt": [0.5]}})
    # a bin is the number of edges strictly below the value; no value is its own bin
    assert got == {("own", "amt"): {"b0": 2, "b1": 1, "b2": 1, gates.NULL_BIN: 1},
                   ("prev", "amt"): {"b1": 4, gates.NULL_BIN: 1},
                   ("own", "lvl"): {"a": 3, "b": 1, gates.NULL_BIN: 1}}
    # a numeric tag without edges of its own today is counted by value, still binned at yesterday's edges
    got = gates.binned(typed, cat, ["amt"], {"own": {}, "prev": {"amt": [6.0, 0.5]}})
    assert got == {("own", "amt"): {"1.0": 1, "2.0": 1, "5.0": 1, "10.0": 1, gates.NULL_BIN: 1},
                   ("prev", "amt"): {"b1": 3, "b2": 1, gates.NULL_BIN: 1}}
    many = spark.createDataFrame([(float(i), f"v{i}") for i in range(gates.MAX_BINS + 5)], "amt double, lvl string")
    kept = gates.binned(many, cat, ["lvl"], {"own": {}})[("own", "lvl")]
    assert len(kept) == gates.MAX_BINS + 1 and kept[gates.OTHER_BIN] == 5 and sum(kept.values()) == gates.MAX_BINS + 5


def test_passes_computed_at_once_give_what_one_after_another_gives(spark, warehouse, tmp_path):
    (tmp_path / "conf" / "tags").mkdir(parents=True)
    (tmp_path / "conf" / "tags" / "t.yaml").write_text(CATALOG, encoding="utf-8")
    cfg = dataclasses.replace(PipelineConfig(), conf_dir=str(tmp_path / "conf"))
    build(warehouse)
    cat = validate(spark, catalog_for(cfg)[0])
    one = computed(warehouse, D1, cat, label="seq", workers=1)
    many = computed(warehouse, D1, cat, label="par", workers=3)
    assert one.where("txn_cnt_90d = 3").count() > 0
    assert_df_equality(one, many, ignore_row_order=True)
