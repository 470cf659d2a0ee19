"""Segments: rule checks, membership, stats, consent, overlap, profile, plan, export, forget."""
from __future__ import annotations

import csv
import datetime as dt
import os
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from kequn.config import ConfigError, PipelineConfig
from kequn.segments import check, export, forget, load_definitions, parse_rule, plan, run
from kequn.segments.definitions import SegmentDef, catalog_from_yaml
from kequn.segments import membership as M
from kequn.segments.rules import RuleError
from kequn.segments.stage import tags_of_day
from kequn.tables import Warehouse

from test_segments_data import (SEGMENTS_YAML, TAG_CATALOG_YAML, write_conf, write_consent, write_map,
                                write_master, write_members, write_tag_values)

D1, D2 = "2026-03-01", "2026-03-02"
CATALOG = {"aum": "decimal", "aum_tier": "string", "txn_cnt_90d": "int", "is_first_purchase": "boolean",
           "age_band": "string"}


def seg(code, rule, purpose="analysis", base=None):
    return SegmentDef(code=code, name_zh=code, name_en=code, purpose=purpose, owner="t", rule=rule, base=base)


# --------------------------------------------------------------------------- rules, no Spark

def test_rule_errors_are_clear_and_need_no_spark_job(spark, tmp_path):
    sc = spark.sparkContext
    sc.setJobGroup("rule-check", "rule checks must not start Spark jobs")
    try:
        with pytest.raises(ConfigError, match=r"unknown tag 'no_such_tag'"):
            check([seg("a", "no_such_tag > 1")], CATALOG, strict=True)
        with pytest.raises(ConfigError, match=r"compares numeric tag 'aum' and string literal"):
            check([seg("a", "aum >= 'lots'")], CATALOG, strict=True)
        with pytest.raises(ConfigError, match=r"compares boolean tag 'is_first_purchase' and numeric literal"):
            check([seg("a", "is_first_purchase = 1")], CATALOG, strict=True)
        with pytest.raises(ConfigError, match=r"'aum_tier' is string, not boolean"):
            check([seg("a", "aum_tier AND aum > 1")], CATALOG, strict=True)
        with pytest.raises(ConfigError, match=r"rule 'aum >=': expected a tag code or a literal"):
            check([seg("a", "aum >=")], CATALOG)  # syntax: raises even when not strict
        with pytest.raises(ConfigError, match=r"base 'nope' is not a defined segment"):
            check([seg("a", "aum > 1", base="nope")], CATALOG)
        with pytest.raises(RuleError, match="unexpected"):
            parse_rule("aum > 1 aum", CATALOG)
        # Not strict: the segment is unavailable, the others are fine.
        ok = check([seg("a", "no_such_tag > 1"), seg("b", "aum BETWEEN 1 AND 2 AND NOT is_first_purchase")], CATALOG)
        assert ok.unavailable == {"a": "unknown tag 'no_such_tag'"}
        assert list(ok.rules) == ["b"]
        # The stage itself fails on a syntax error before any job, writing nothing.
        conf = write_conf(tmp_path / "conf", {
            "tags/t.yaml": TAG_CATALOG_YAML,
            "segments/s.yaml": SEGMENTS_YAML.replace('rule: "aum >= 50000"', 'rule: "aum >= AND"')})
        wh = Warehouse(spark, str(tmp_path / "wh"))
        with pytest.raises(ConfigError, match=r"segment 'rich'"):
            run(spark, wh, D1, PipelineConfig(conf_dir=conf))
        assert sc.statusTracker().getJobIdsForGroup("rule-check") == []
        assert wh.tables() == []
    finally:
        sc.setJobGroup("", "")


def test_shipped_segment_conf_is_valid():
    defs = load_definitions()
    codes = {d.code for d in defs}
    for c in ("high_value_potential", "first_purchase", "repeat_purchase", "high_frequency", "dormant_stable",
              "churn_risk", "education_fund_need", "mortgage_need", "young_professional_card", "first_loan_target",
              "wechat_habit", "app_habit", "sms_habit", "churned"):
        assert c in codes
    assert all(d.journey_fed for d in defs if d.code in ("wechat_habit", "app_habit", "sms_habit", "churned"))
    checked = check(defs, catalog_from_yaml())  # structure and syntax hold whatever the tag catalog says
    assert set(checked.fed_codes) == {"wechat_habit", "app_habit", "sms_habit", "churned"}


# --------------------------------------------------------------------------- one small world, two days

@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("segments_world")
    conf = write_conf(root / "conf", {"tags/t.yaml": TAG_CATALOG_YAML, "segments/s.yaml": SEGMENTS_YAML})
    wh = Warehouse(spark, str(root / "wh"))
    write_map(wh, [("core_customer", "c1", 1), ("core_customer", "c2", 2), ("app_user", "a2", 2),
                   ("core_customer", "c3", 3), ("core_customer", "c4", 4)], [D1, D2])
    write_master(wh, "core_customer", [{"key": f"c{i}", "mobile_token": f"tok{i}", "batch": D1} for i in range(1, 5)])
    write_master(wh, "app_user", [{"key": "a2", "mobile_token": "tok2", "batch": D1}])
    wh.overwrite(spark.createDataFrame([(f"tok{i}", "mobile", f"1380000000{i}") for i in range(1, 5)],
                                       "token string, pii_type string, value string"), "bronze.pii_vault")
    write_consent(wh, [
        # person 1 revokes marketing; the revocation is loaded on D2
        {"source": "core_customer", "source_key": "c1", "granted": True, "event": "2026-01-01 09:00:00", "batch": "2026-01-01"},
        {"source": "core_customer", "source_key": "c1", "granted": False, "event": "2026-03-02 10:00:00", "batch": D2},
        # person 2: an old refusal on one record, a later grant on another -> latest is a grant
        {"source": "app_user", "source_key": "a2", "granted": False, "event": "2026-01-05 09:00:00", "batch": "2026-01-05"},
        {"source": "core_customer", "source_key": "c2", "granted": True, "event": "2026-02-01 09:00:00", "batch": "2026-02-01"},
        # person 3 refuses profiling only
        {"source": "core_customer", "source_key": "c3", "purpose": "profiling", "granted": False,
         "event": "2026-02-01 09:00:00", "batch": "2026-02-01"},
    ])
    tags = []
    day1 = {1: (60000, "gold", 5, True), 2: (70000, "gold", 1, False), 3: (1000, "mass", 10, True), 4: (100, "mass", 0, False)}
    day2 = {**day1, 2: (40000, "mass", 1, False), 4: (80000, "gold", 0, False)}
    for day, vals in ((D1, day1), (D2, day2)):
        for p, (aum, tier, cnt, fp) in vals.items():
            tags += [(day, p, "aum", f"{aum}.00"), (day, p, "aum_tier", tier), (day, p, "txn_cnt_90d", cnt),
                     (day, p, "is_first_purchase", str(fp).lower())]
    write_tag_values(wh, tags)
    # The tags stage's latest day in its wide shape: the D2 run reads it, the D1 run (older) the long form.
    wh.overwrite(spark.createDataFrame(
        [(p, dt.date.fromisoformat(D2), Decimal(aum), tier, cnt, fp) for p, (aum, tier, cnt, fp) in day2.items()],
        "one_id bigint, as_of date, aum decimal(18,2), aum_tier string, txn_cnt_90d int, is_first_purchase boolean"),
        "gold.customer_profile")
    cfg = PipelineConfig(conf_dir=conf)
    out = {"wh": wh, "conf": conf, "cfg": cfg}
    out["r1"] = run(spark, wh, D1, cfg)
    out["r2"] = run(spark, wh, D2, cfg)
    return out


def members(wh, day):
    rows = wh.read("gold.segment_members").where(F.col("as_of") == day).collect()
    out = {}
    for r in rows:
        out.setdefault(r["segment_code"], set()).add(r["one_id"])
    return out


def stats(wh, day):
    return {r["segment_code"]: (r["purpose"], r["size"], r["entered"], r["exited"])
            for r in wh.read("gold.segment_stats").where(F.col("as_of") == day).collect()}


def test_membership_and_day_on_day_stats(world):
    wh = world["wh"]
    assert members(wh, D1) == {"rich": {1, 2}, "rich_active": {1}, "newcomer": {1, 3}}
    assert stats(wh, D1) == {"rich": ("marketing", 2, 2, 0), "rich_active": ("analysis", 1, 1, 0),
                             "newcomer": ("analysis", 2, 2, 0)}
    # D2: 2 falls under the threshold, 4 rises above it, 1 revoked marketing consent.
    assert members(wh, D2) == {"rich": {4}, "rich_active": {1}, "newcomer": {1, 3}}
    assert stats(wh, D2) == {"rich": ("marketing", 1, 1, 2), "rich_active": ("analysis", 1, 0, 0),
                             "newcomer": ("analysis", 2, 0, 0)}
    for day in (D1, D2):  # size == member count, always
        m = members(wh, day)
        assert all(size == len(m.get(code, ())) for code, (_, size, _, _) in stats(wh, day).items())


def test_the_tags_of_the_profiles_day_are_read_from_the_profile(world):
    wh = world["wh"]
    tags = ["aum", "aum_tier", "txn_cnt_90d", "is_first_purchase", "age_band"]  # age_band: in neither
    wide = tags_of_day(wh, D2, tags, CATALOG)
    assert all("customer_profile" in f for f in wide.inputFiles())
    long = wh.read("gold.tag_values").where(F.col("as_of") == D2)
    assert_df_equality(wide, M.tags_wide(long, tags, CATALOG), ignore_row_order=True)
    older = tags_of_day(wh, D1, tags, CATALOG)  # the profile holds D2 only
    assert all("tag_values" in f for f in older.inputFiles())
    assert {r["one_id"]: r["aum_tier"] for r in older.collect()} == {1: "gold", 2: "gold", 3: "mass", 4: "mass"}


def test_missing_tag_makes_only_that_segment_unavailable(world):
    assert world["r1"]["segments_unavailable"] == 1
    wh = world["wh"]
    assert wh.read("gold.segment_stats").where(F.col("segment_code") == "broken_tag").count() == 0
    # Journey-fed groups are not written by the segments stage.
    assert wh.read("gold.segment_members").where(F.col("segment_code") == "churned").count() == 0


def test_revoked_consent_excludes_from_marketing_segments_only(world):
    wh = world["wh"]
    m1, m2 = members(wh, D1), members(wh, D2)
    assert 1 in m1["rich"] and 1 not in m2["rich"]              # marketing: out from the day it is loaded
    assert 1 in m2["rich_active"] and 1 in m2["newcomer"]       # analysis: unaffected (even on a marketing base)
    assert 2 in m1["rich"]                                      # latest consent over all records is a grant
    assert 3 in m2["newcomer"]                                  # a profiling refusal is not a marketing one


def test_overlap_and_profile(world):
    wh = world["wh"]
    ov = {(r["segment_a"], r["segment_b"]): r["overlap"]
          for r in wh.read("gold.segment_overlap").where(F.col("as_of") == D1).collect()}
    assert ov == {("rich", "rich_active"): 1, ("rich_active", "rich"): 1, ("rich", "newcomer"): 1,
                  ("newcomer", "rich"): 1, ("rich_active", "newcomer"): 1, ("newcomer", "rich_active"): 1}
    prof = wh.read("gold.segment_profile").where((F.col("as_of") == D1) & (F.col("segment_code") == "newcomer"))
    tiers = {r["tag_value"]: (r["members"], r["member_share"], r["population"], r["lift"])
             for r in prof.where(F.col("tag_code") == "aum_tier").collect()}
    assert tiers == {"gold": (1, 0.5, 2, 1.0), "mass": (1, 0.5, 2, 1.0)}
    rich = wh.read("gold.segment_profile").where((F.col("as_of") == D1) & (F.col("segment_code") == "rich"))
    aum = rich.where(F.col("tag_code") == "aum").collect()
    assert sum(r["members"] for r in aum) == 2 and all(r["tag_value"].startswith("q") for r in aum)


def test_segment_profile_counts_members_values_against_the_population(spark):
    wide = spark.createDataFrame([(1, 10.0, "a"), (2, 20.0, "a"), (3, 30.0, "b"), (4, 40.0, None)],
                                 "one_id bigint, aum double, tier string")
    # x: three persons, one without a tier; y: one person of the day and one not in it (5)
    members = spark.createDataFrame([("x", 1), ("x", 2), ("x", 4), ("y", 3), ("y", 5)], "segment_code string, one_id bigint")
    got = M.segment_profile("2026-11-03", members, wide, {"x": ["tier", "aum"], "y": ["tier"]},
                            {"aum": "double", "tier": "string"})
    rows = {(r.segment_code, r.tag_code, r.tag_value): (r.members, r.member_share, r.population, r.lift)
            for r in got.collect()}
    # aum's population quartiles (percentile_approx of 10, 20, 30, 40): 10, 20, 30; range 10..40.
    # Shares are of the segment's size (x: 3, y: 2, person 5 included) and of the population (4).
    third = (1, 1 / 3, 1, (1 / 3) / 0.25)
    assert rows == {
        ("x", "tier", "a"): (2, 2 / 3, 2, (2 / 3) / 0.5),
        ("x", "aum", "q1 [10.0, 10.0]"): third,
        ("x", "aum", "q2 [10.0, 20.0]"): third,
        ("x", "aum", "q4 [30.0, 40.0]"): third,
        ("y", "tier", "b"): (1, 1 / 2, 1, (1 / 2) / 0.25),
    }


def test_plan_shows_size_overlap_movement_and_writes_nothing(world, spark, tmp_path):
    wh = world["wh"]
    before = {t: wh.version(t) for t in wh.tables()}
    staging = sorted(os.listdir(os.path.join(wh.root, "_staging", "gold")))
    path = tmp_path / "rich2.yaml"
    path.write_text("code: rich2\nname_zh: 更富\nname_en: Richer\npurpose: marketing\nowner: t\n"
                    "rule: \"aum >= 65000\"\n", encoding="utf-8")
    p = plan(spark, wh, D1, str(path), world["cfg"])
    assert (p["code"], p["size"], p["entering"], p["leaving"]) == ("rich2", 1, 1, 0)
    assert p["overlap"] == {"rich": 1}
    assert [r.one_id for r in p["entering_ids"].collect()] == [2]
    q = plan(spark, wh, D2, "rich", world["cfg"])
    assert (q["size"], q["entering"], q["leaving"]) == (1, 0, 0)
    with pytest.raises(ConfigError, match="cannot be computed"):
        plan(spark, wh, D1, "broken_tag", world["cfg"])
    assert {t: wh.version(t) for t in wh.tables()} == before
    assert sorted(os.listdir(os.path.join(wh.root, "_staging", "gold"))) == staging


def test_export_reads_the_vault_and_skips_revoked(world, spark, tmp_path):
    wh = world["wh"]
    out = tmp_path / "out" / "rich.csv"
    assert export(spark, wh, D1, "rich", "sms", str(out), world["cfg"]) == 2
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["one_id"], r["contact"], r["target_source"]) for r in rows] == [
        ("1", "13800000001", "core_customer"), ("2", "13800000002", "core_customer")]
    # Person 1 revoked on D2 even if they were still listed: the export checks consent itself.
    assert export(spark, wh, D2, "rich", "sms", str(out), world["cfg"]) == 1
    with open(out, encoding="utf-8") as fh:
        assert [r["one_id"] for r in csv.DictReader(fh)] == ["4"]
    assert export(spark, wh, D1, "rich", "app_push", str(out), world["cfg"]) == 1  # only person 2 has an app
    with open(out, encoding="utf-8") as fh:
        assert [(r["one_id"], r["contact"]) for r in csv.DictReader(fh)] == [("2", "a2")]
    with pytest.raises(ConfigError, match="only marketing segments"):
        export(spark, wh, D1, "rich_active", "sms", str(out), world["cfg"])


# --------------------------------------------------------------------------- forget

def test_forget_removes_the_person_everywhere(spark, warehouse, tmp_path):
    wh = warehouse
    write_map(wh, [("core_customer", "c1", 1), ("core_customer", "c2", 2), ("app_user", "a2", 2)], [D1])
    write_master(wh, "core_customer", [{"key": "c1", "mobile_token": "tok1", "name_token": "nShared", "batch": D1},
                                       {"key": "c2", "mobile_token": "tok2", "name_token": "nShared", "batch": D1}])
    write_master(wh, "app_user", [{"key": "a2", "mobile_token": "tok2", "batch": D1}])
    wh.overwrite(spark.createDataFrame([("tok1", "mobile", "13800000001"), ("tok2", "mobile", "13800000002"),
                                        ("nShared", "name", "张三")], "token string, pii_type string, value string"),
                 "bronze.pii_vault")
    wh.overwrite(spark.createDataFrame([("t1", "core", "c1", 10.0), ("t2", "core", "c2", 20.0), ("t3", "card", "c2", 5.0)],
                                       "txn_id string, source string, source_key string, amount double"),
                 "bronze.transaction")
    write_consent(wh, [{"source": "app_user", "source_key": "a2", "granted": True, "event": "2026-01-01 09:00:00",
                        "batch": "2026-01-01"}])
    write_tag_values(wh, [(D1, p, "aum", "90000.00") for p in (1, 2)])
    write_members(wh, [(D1, "rich", 1), (D1, "rich", 2)])
    for scratch in ("_staging/gold/tag_values", f"_models/need_x/k/{D1}"):   # both derived from the person
        os.makedirs(os.path.join(wh.root, scratch))
    # The vertex dictionary of warehouses written before b25ae96: the person's keys and tokens, by no column
    # a delete could select them with.
    wh.overwrite(spark.createDataFrame([("record", "app_user", "a2", 1), ("identifier", "mobile", "tok2", 2)],
                                       "kind string, ns string, key string, vertex bigint"),
                 "silver.identity_vertex_dictionary")

    deleted = forget(spark, wh, "app_user", "a2", retention_hours=0)

    assert deleted["bronze.core_customer"] == 1 and deleted["bronze.app_user"] == 1
    assert wh.read("bronze.core_customer").collect()[0]["cust_no"] == "c1"
    assert wh.read("bronze.app_user").count() == 0
    assert wh.read("bronze.consent").count() == 0
    assert sorted(r.txn_id for r in wh.read("bronze.transaction").collect()) == ["t1", "t3"]  # t3 is a card record c2
    for t in ("silver.one_id_map_history", "gold.one_id_map", "gold.tag_values", "gold.segment_members"):
        assert wh.read(t).where("one_id = 2").count() == 0, t
        assert wh.read(t).where("one_id = 1").count() > 0, t
    assert sorted(r.token for r in wh.read("bronze.pii_vault").collect()) == ["nShared", "tok1"]  # shared token kept
    assert not os.path.exists(os.path.join(wh.root, "_staging"))
    assert not os.path.exists(os.path.join(wh.root, "_models"))
    assert deleted["silver.identity_vertex_dictionary"] == 2
    assert not os.path.exists(wh.path("silver.identity_vertex_dictionary"))
    assert "silver.identity_vertex_dictionary" not in wh.tables()
    # VACUUM removed the files of the old versions: the erased rows cannot be time-travelled to.
    with pytest.raises(Exception):
        # collect(), not count(): Delta answers count() from log statistics without opening data files.
        spark.read.format("delta").option("versionAsOf", 0).load(wh.path("bronze.app_user")).collect()


def test_a_merge_is_not_an_exit_from_a_segment(spark, warehouse):
    import datetime

    from kequn.identity.stable import LINEAGE_DDL
    from kequn.segments import membership as M
    from kequn.segments.stage import previous_members

    day0, day1 = datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)
    write_members(warehouse, [(str(day0), "seg", 50), (str(day0), "seg", 20), (str(day0), "seg", 7)])
    first_day = M.segment_stats(str(day0), warehouse.read("gold.segment_members").select("segment_code", "one_id"),
                              spark.createDataFrame([], "segment_code string, one_id bigint"), {"seg": "marketing"})
    warehouse.append(first_day, "gold.segment_stats", partition_by=("as_of",))
    # On day1 identity merges 50 into 20; the person is still in the segment, 7 has left.
    warehouse.append(spark.createDataFrame([(day1, 20, 50, None, "merge")], LINEAGE_DDL), "gold.one_id_lineage",
                     partition_by=("as_of",))
    today = spark.createDataFrame([("seg", 20)], "segment_code string, one_id bigint")
    stats = M.segment_stats(str(day1), today, previous_members(warehouse, str(day1), ["seg"]), {"seg": "marketing"})
    row = stats.first()
    assert (row.size, row.entered, row.exited) == (1, 0, 1)
