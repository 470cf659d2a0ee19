"""Quality gates: real GX, real Spark, real Delta, tiny frames and tiny suites."""
import os
import textwrap

import pytest
from pyspark.sql import functions as F

from kequn.config import ConfigError
from kequn.pipeline import STAGES, tables_written_by
from kequn.quality import RESULTS_TABLE, QualityGateError, gate, run, suites_for
from kequn.quality.engine import reads_stored_rows
from kequn.quality.expectations import PII_REGEX, long_form_misfits

AS_OF = "2026-11-03"
MAP_DDL = "source string, source_key string, one_id bigint"
TAGS_DDL = "as_of date, one_id bigint, tag_code string, tag_value string"


@pytest.fixture()
def conf(tmp_path, monkeypatch):
    """Write suites into a private conf/quality and point the project at it."""
    root = tmp_path / "conf"
    (root / "quality").mkdir(parents=True)
    monkeypatch.setenv("KEQUN_CONF", str(root))

    def write(text, name="suites.yaml"):
        (root / "quality" / name).write_text(textwrap.dedent(text))
        return root
    return write


def one_id_map(spark, rows):
    return spark.createDataFrame(rows, MAP_DDL)


def tag_values(spark, rows):
    return spark.createDataFrame(rows, "as_of string, one_id bigint, tag_code string, tag_value string") \
        .withColumn("as_of", F.col("as_of").cast("date"))


MAP_SUITE = """
suites:
  - table: gold.one_id_map
    keys: {columns: [source, source_key]}
    not_null: [{columns: [one_id]}]
    value_sets:
      - {column: source, values: [core_customer, app_user], severity: warning}
"""


def results(wh):
    return wh.read(RESULTS_TABLE)


def test_clean_table_passes_and_is_recorded_once_per_day(spark, warehouse, conf):
    conf(MAP_SUITE)
    staged = one_id_map(spark, [("core_customer", "C1", 1), ("app_user", "A1", 1), ("app_user", "A2", 2)])
    gate(warehouse, AS_OF, {"gold.one_id_map": staged, "gold.other": staged})  # other: no suite
    res = results(warehouse)
    rows = res.collect()
    assert {r.table_name for r in rows} == {"gold.one_id_map"}
    assert all(r.success for r in rows), [r.asDict() for r in rows if not r.success]
    exps = {r.expectation for r in rows}
    assert "expect_compound_columns_to_be_unique: key_unique(source, source_key)" in exps
    assert any(e.startswith("expect_column_values_to_not_match_regex: pii_scan(source_key)") for e in exps)
    assert res.columns[:6] == ["run_id", "as_of", "table_name", "expectation", "success", "observed_value"]
    assert {str(r.as_of) for r in rows} == {AS_OF} and len({r.run_id for r in rows}) == 1
    # gates record rows only; the quality stage renders the Data Docs
    assert not os.path.exists(f"{warehouse.root}/quality/data_docs/index.html")
    # a re-run of the same day and table replaces the earlier call's rows
    gate(warehouse, AS_OF, {"gold.one_id_map": staged})
    again = results(warehouse).collect()
    assert len(again) == len(rows) and {r.run_id for r in again} != {r.run_id for r in rows}


def test_duplicate_key_is_critical_and_names_table_expectation_value(spark, warehouse, conf):
    conf(MAP_SUITE)
    staged = one_id_map(spark, [("core_customer", "C1", 1), ("core_customer", "C1", 2), ("app_user", "A1", 3)])
    with pytest.raises(QualityGateError) as err:
        gate(warehouse, AS_OF, {"gold.one_id_map": staged})
    msg = str(err.value)
    assert "gold.one_id_map" in msg and "key_unique(source, source_key)" in msg
    assert "unexpected 2 of 3" in msg
    failed = results(warehouse).where("NOT success").collect()
    assert [(r.severity, r.observed_value) for r in failed] == [("critical", "unexpected 2 of 3 (66.67%)")]


def test_frames_that_only_read_stored_rows_are_validated_uncached(spark, warehouse, conf, tmp_path):
    path = str(tmp_path / "staged")
    one_id_map(spark, [("core_customer", "C1", 1), ("core_customer", "C1", 2)]).write.parquet(path)
    staged = spark.read.parquet(path)
    assert reads_stored_rows(staged)
    assert reads_stored_rows(staged.where("one_id > 0").select("source", "source_key", "one_id"))
    assert reads_stored_rows(staged.localCheckpoint())
    assert not reads_stored_rows(staged.groupBy("source").count())
    assert not reads_stored_rows(staged.join(staged.select("source_key").distinct(), "source_key"))
    # Read again by every GX job instead of cached, the staged files still fail the gate.
    conf(MAP_SUITE)
    with pytest.raises(QualityGateError, match="key_unique"):
        gate(warehouse, AS_OF, {"gold.one_id_map": staged})
    assert not staged.is_cached


def test_a_validation_counts_its_own_jobs_not_those_of_other_job_groups(spark):
    from kequn.quality.engine import _jobs_since, _latest_job

    sc = spark.sparkContext

    def settled():
        # The tracker learns of jobs from the listener bus, asynchronously: after a busy test its queue can lag
        # behind the jobs that have finished (the test failed once so, run after the tags tests).
        sc._jsc.sc().listenerBus().waitUntilEmpty()

    def own_work():
        spark.range(3).count()
        spark.range(3).count()
        settled()

    settled()
    before = _latest_job(sc)
    own_work()
    alone = _jobs_since(sc, before)
    assert alone == _latest_job(sc) - before > 0
    before = _latest_job(sc)
    try:
        sc.setJobGroup("kequn-test-other-stage", "jobs of another group, as run_stages gives each stage")
        for _ in range(4):
            spark.range(3).count()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    own_work()
    assert _jobs_since(sc, before) == alone < _latest_job(sc) - before


def test_warning_is_recorded_and_does_not_raise(spark, warehouse, conf, caplog):
    conf(MAP_SUITE)
    staged = one_id_map(spark, [("core_customer", "C1", 1), ("wechat_user", "W1", 1)])
    gate(warehouse, AS_OF, {"gold.one_id_map": staged})
    failed = results(warehouse).where("NOT success").collect()
    assert [(r.expectation, r.severity, r.observed_value) for r in failed] == [
        ("expect_column_values_to_be_in_set: in_set(source)", "warning", "unexpected 1 of 2 (50%)")]
    assert any("in_set(source)" in m for m in caplog.messages)


def test_foreign_key_violation_is_detected(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.tag_values
        pii_scan: {enabled: false}
        foreign_keys:
          - {columns: [one_id], references: gold.one_id_map}
    """)
    warehouse.overwrite(one_id_map(spark, [("core_customer", "C1", 1), ("app_user", "A1", 2)]), "gold.one_id_map")
    bad = tag_values(spark, [(AS_OF, 1, "aum", "10.00"), (AS_OF, 7, "aum", "1.00"), (AS_OF, 8, "x", "1")])
    with pytest.raises(QualityGateError) as err:
        gate(warehouse, AS_OF, {"gold.tag_values": bad})
    assert "gold.tag_values" in str(err.value)
    assert "foreign_key(one_id -> gold.one_id_map(one_id)) -> observed 2" in str(err.value)
    # a map staged in the same gate call is the reference, not the published one: passes
    new_map = one_id_map(spark, [("core_customer", "C1", 1), ("app_user", "A7", 7), ("app_user", "A8", 8)])
    gate(warehouse, AS_OF, {"gold.tag_values": bad, "gold.one_id_map": new_map})


def test_long_form_misfits_are_keys_without_each_name_exactly_once(spark):
    rows = [(1, t) for t in "abc"]               # fits
    rows += [(2, "a"), (2, "a"), (2, "b")]       # as many rows as names, one twice and one missing
    rows += [(3, "a"), (3, "b")]                 # one missing
    rows += [(4, t) for t in "abc"] + [(4, None)]  # a null name beside all three
    rows += [(5, t) for t in "abcc"]             # one twice
    rows += [(6, t) for t in "cba"]              # fits, in another order
    df = spark.createDataFrame(rows, "one_id bigint, tag_code string")
    assert long_form_misfits(df, ["one_id"], "tag_code").collect()[0]["misfits"] == 4
    assert long_form_misfits(df.where("one_id IN (1, 6)"), ["one_id"], "tag_code").first()["misfits"] == 0
    # More names than one 63-bit block: a name of the second block twice, another of it missing.
    names = [f"t{i:03d}" for i in range(70)]
    wide = [(1, t) for t in names] + [(2, t) for t in names[:66] + ["t065"] + names[67:]]
    df = spark.createDataFrame(wide, "one_id bigint, tag_code string")
    assert long_form_misfits(df, ["one_id"], "tag_code").first()["misfits"] == 1
    assert long_form_misfits(df.where("one_id = 1"), ["one_id"], "tag_code").first()["misfits"] == 0


def test_long_form_suite_fails_the_gate_on_a_repeated_tag_row(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.tag_values
        partition_column: as_of
        long_form: {keys: [as_of, one_id], name: tag_code}
    """)
    good = [(AS_OF, 1, "aum", "10.00"), (AS_OF, 1, "age", "30"), (AS_OF, 2, "aum", None), (AS_OF, 2, "age", "41")]
    gate(warehouse, AS_OF, {"gold.tag_values": tag_values(spark, good)})
    passed = results(warehouse).where("table_name = 'gold.tag_values'").collect()
    label = "expect_column_max_to_be_between: long_form(as_of, one_id x tag_code: one row per key and tag_code)"
    assert [(r.expectation, r.success, r.observed_value) for r in passed if "long_form" in r.expectation] == [
        (label, True, "0")]
    repeated = good[:3] + [(AS_OF, 2, "aum", "5.00")]
    with pytest.raises(QualityGateError, match=r"gold.tag_values: .*long_form\(as_of, one_id x tag_code.* -> observed 1"):
        gate(warehouse, AS_OF, {"gold.tag_values": tag_values(spark, repeated)})


def test_pii_scanner_catches_clear_mobile_and_id_number(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.customer_profile
        pii_scan: {exclude_columns: [note]}
    """)
    hexes = "a13812345678b0c9" * 4  # a token: digit runs inside hex must not match
    clean = spark.createDataFrame([(1, hexes, "C000123", "1234.56", "x 13812345678")],
                                  "one_id bigint, token string, cust_no string, amount string, note string")
    gate(warehouse, AS_OF, {"gold.customer_profile": clean})
    dirty = spark.createDataFrame([(1, "call +86 138 1234 5678", "11010519491231002X"), (2, "ok", "ok")],
                                  "one_id bigint, remark string, ident string")
    with pytest.raises(QualityGateError) as err:
        gate(warehouse, AS_OF, {"gold.customer_profile": dirty})
    msg = str(err.value)
    assert "pii_scan(remark) -> observed unexpected 1 of 2" in msg and "pii_scan(ident)" in msg
    assert "1381234" not in msg and "110105" not in msg
    observed = " ".join(r.observed_value for r in results(warehouse).collect())
    assert "1381234" not in observed and "110105" not in observed


def test_pii_patterns(spark):
    values = {"13812345678": True, "+8613812345678": True, "0086 138-1234-5678": True, "110105194912310021": True,
              "110105491231002": True, "6222021234567890123": True, "6222 0212 3456 7890": True,
              "12812345678": False, "C000123": False, "2026-11-03": False, "1234567.89": False,
              "ab13812345678cd": False, "id 1381234567": False,
              "0000000000000000": False}  # the contract's all-zero device id placeholder
    df = spark.createDataFrame([(k,) for k in values], "v string").withColumn("hit", F.col("v").rlike(PII_REGEX))
    assert {r.v: r.hit for r in df.collect()} == values


ROW_SUITE = """
suites:
  - table: gold.one_id_map
    pii_scan: {enabled: false}
    row_count: {min_ratio: 0.5, max_ratio: 1.5, severity: critical}
"""


def test_row_count_bound_against_previous_version(spark, warehouse, conf):
    conf(ROW_SUITE)
    ten = one_id_map(spark, [("app_user", f"A{i}", i) for i in range(10)])
    warehouse.overwrite(ten, "gold.one_id_map")
    gate(warehouse, AS_OF, {"gold.one_id_map": ten.limit(6)})   # 6 within [5, 15]
    with pytest.raises(QualityGateError) as err:
        gate(warehouse, AS_OF, {"gold.one_id_map": ten.limit(3)})
    assert "row_count(previous 10 x [0.5, 1.5]) -> observed 3" in str(err.value)
    # the stage validates what is published against the version before it (Delta history)
    warehouse.overwrite(ten.limit(3), "gold.one_id_map")
    with pytest.raises(QualityGateError, match=r"gold.one_id_map: .*previous 10 .* observed 3"):
        run(spark, warehouse, AS_OF, None)
    stage_rows = results(warehouse).where("phase = 'stage'").count()
    assert stage_rows == 1


def test_partitioned_table_compares_with_previous_day_and_checks_freshness(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.tag_values
        partition_column: as_of
        pii_scan: {enabled: false}
        freshness: {column: as_of, mode: all}
        row_count: {min_ratio: 0.5, max_ratio: 2.0, severity: warning}
    """)
    warehouse.append(tag_values(spark, [("2026-11-02", i, "aum", "1") for i in range(4)]
                                   + [(AS_OF, i, "aum", "1") for i in range(3)]), "gold.tag_values",
                        partition_by=("as_of",))
    assert run(spark, warehouse, AS_OF, None) == {RESULTS_TABLE: 3}
    assert os.path.exists(f"{warehouse.root}/quality/data_docs/index.html")
    rc = results(warehouse).where("expectation LIKE '%row_count%'").first()
    assert rc.success and rc.observed_value == "3" and "previous 4" in rc.expectation
    with pytest.raises(QualityGateError, match=r"freshness\(every as_of = 2026-11-03\) -> observed unexpected 1 of 2"):
        gate(warehouse, AS_OF, {"gold.tag_values": tag_values(spark, [(AS_OF, 1, "a", "1"), ("2026-11-02", 1, "a", "1")])})


def test_scoped_write_compares_row_count_within_its_scope_and_stage_skips_unwritten_day(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.segment_members
        partition_column: as_of
        pii_scan: {enabled: false}
        row_count: {min_ratio: 0.5, max_ratio: 1.5, severity: critical}
    """)
    name, before = "gold.segment_members", "2026-11-02"
    members = lambda rows: spark.createDataFrame(rows, "as_of string, segment_code string, one_id bigint") \
        .withColumn("as_of", F.col("as_of").cast("date"))  # noqa: E731
    warehouse.append(members([(before, "rule", i) for i in range(10)] + [(before, "fed", 100), (before, "fed", 101)]),
                     name, partition_by=("as_of",))
    # The journeys stage writes only its groups' rows: 2 today against the same 2 yesterday.
    fed_today = members([(AS_OF, "fed", 100), (AS_OF, "fed", 102)])
    gate(warehouse, AS_OF, {name: fed_today}, scopes={name: "segment_code IN ('fed')"})
    rc = results(warehouse).where("expectation LIKE '%row_count%'").first()
    assert rc.success and "previous 2 " in rc.expectation
    # Unscoped, the same rows are measured against the whole day: 2 of 12.
    with pytest.raises(QualityGateError, match=r"previous 12 x \[0.5, 1.5\]\) -> observed 2"):
        gate(warehouse, AS_OF, {name: fed_today})

    # In `kequn run` the quality stage finds no row of the day yet, which a later stage writes and gates:
    # nothing to check or record.
    later = tables_written_by(STAGES[STAGES.index("quality") + 1:])
    assert name in later
    assert run(spark, warehouse, AS_OF, None, written_later=later) == {RESULTS_TABLE: 0}
    assert results(warehouse).where("phase = 'stage'").count() == 0
    # Run on its own (or last), the day is missing, and the row count says so.
    with pytest.raises(QualityGateError, match=r"row_count\(previous 12 x \[0.5, 1.5\]\) -> observed 0"):
        run(spark, warehouse, AS_OF, None)
    warehouse.replace_day(members([(AS_OF, "rule", i) for i in range(9)]), name, AS_OF)
    # A re-run of the day: the rows there now are replaced by the later stage, whose gate checks the new
    # ones; the quality stage does not validate rows about to go. On its own it checks them.
    assert run(spark, warehouse, AS_OF, None, written_later=later) == {RESULTS_TABLE: 0}
    assert run(spark, warehouse, AS_OF, None) == {RESULTS_TABLE: 1}


def test_unknown_yaml_key_is_rejected_with_file_and_key(conf):
    root = conf("""
    suites:
      - table: gold.one_id_map
        row_count: {min_ratio: 0.5, max_ration: 1.5}
    """, name="broken.yaml")
    with pytest.raises(ConfigError) as err:
        suites_for(root)
    assert "broken.yaml" in str(err.value) and "max_ration" in str(err.value) and "row_count" in str(err.value)


def test_project_suites_load_and_cover_every_gold_table():
    suites = suites_for()
    assert {"gold.one_id_map", "gold.tag_values", "gold.segment_stats", "gold.journey_state",
            "gold.journey_actions", "bronze.core_customer"} <= set(suites)
    assert "bronze.pii_vault" not in suites
    # Every gold table a stage publishes is checked before it is: the contract's and kequn's own.
    gold = {t for t in tables_written_by(STAGES) if t.startswith("gold.")}
    assert len(gold) >= 16 and gold - set(suites) == set()
    assert suites["gold.tag_values"].foreign_keys[0].references == "silver.one_id_map_history"
    assert (suites["gold.tag_values"].long_form.keys, suites["gold.tag_values"].long_form.name) == (
        ["as_of", "one_id"], "tag_code")


def test_stage_does_not_read_again_what_this_runs_gate_validated_as_published(spark, warehouse, conf):
    conf("""
    suites:
      - table: gold.one_id_map
        keys: {columns: [source, source_key]}
      - table: gold.tag_values
        partition_column: as_of
        keys: {columns: [as_of, one_id, tag_code]}
    """)
    day_before = "2026-11-02"
    staged_map = one_id_map(spark, [("app_user", "A1", 1), ("app_user", "A2", 2)])
    warehouse.replace_day(tag_values(spark, [(day_before, 1, "aum", "1")]), "gold.tag_values", day_before)
    staged_tags = tag_values(spark, [(AS_OF, 1, "aum", "2"), (AS_OF, 2, "aum", "3")])
    gate(warehouse, AS_OF, {"gold.one_id_map": staged_map, "gold.tag_values": staged_tags})
    warehouse.overwrite(staged_map, "gold.one_id_map")
    warehouse.replace_day(staged_tags, "gold.tag_values", AS_OF)
    stage_rows = lambda: results(warehouse).where("phase = 'stage'")  # noqa: E731
    assert warehouse.gate_checked("gold.one_id_map") is not None
    assert run(spark, warehouse, AS_OF, None) == {RESULTS_TABLE: 0}
    assert stage_rows().count() == 0 and results(warehouse).where("phase = 'gate'").count() > 0

    # Written again after the gate (here with a duplicated key): the stage reads it and stops.
    dup = one_id_map(spark, [("app_user", "A1", 1), ("app_user", "A1", 2)])
    warehouse.overwrite(dup, "gold.one_id_map")
    assert warehouse.gate_checked("gold.one_id_map") is None
    with pytest.raises(QualityGateError, match="gold.one_id_map: expect_compound_columns_to_be_unique"):
        run(spark, warehouse, AS_OF, None)
    assert {r.table_name for r in stage_rows().collect()} == {"gold.one_id_map"}

    # A gated frame merged into existing rows is not the table: checked again. And a stage call that
    # finds a table gated removes the rows an earlier stage call of the day left for it.
    warehouse.overwrite(staged_map.limit(1), "gold.one_id_map")
    gate(warehouse, AS_OF, {"gold.one_id_map": staged_map, "gold.tag_values": staged_tags})
    warehouse.merge(staged_map, "gold.one_id_map", ["source", "source_key"])
    warehouse.replace_day(staged_tags, "gold.tag_values", AS_OF)
    assert warehouse.gate_checked("gold.one_id_map") is None
    assert warehouse.gate_checked("gold.tag_values") is not None
    run(spark, warehouse, AS_OF, None)
    assert {r.table_name for r in stage_rows().collect()} == {"gold.one_id_map"}


def test_warehouse_version_is_the_latest_commit_as_delta_reports_it(spark, warehouse):
    from delta.tables import DeltaTable

    name = "gold.one_id_map"
    assert warehouse.version(name) is None
    df = one_id_map(spark, [("core_customer", "C1", 1)])
    warehouse.overwrite(df, name)
    warehouse.append(df, name)
    warehouse.merge(one_id_map(spark, [("core_customer", "C1", 2), ("app_user", "A1", 3)]), name,
                    ["source", "source_key"])
    delta = DeltaTable.forPath(spark, warehouse.path(name)).history(1).collect()[0]["version"]
    assert warehouse.version(name) == delta == 2
