"""Catalog validation: errors are clear and raised before any Spark job runs."""
import collections
import contextlib
from pathlib import Path

import pytest

from kequn.config import ConfigError, load_pipeline
from kequn.tags.catalog import catalog_from_dicts, load_catalog, validate

REFERENCE = ["txn_cnt_90d", "txn_amt_90d", "aum", "aum_tier", "app_active_days_30d", "is_dormant_stable",
             "is_first_purchase", "preferred_channel"]


def stat(code, agg="count(1)", source="transaction", **kw):
    d = {"source": source, "agg": agg, **kw}
    return {"code": code, "name_zh": code, "name_en": code, "category": "behaviour", "kind": "statistic",
            "value_type": "int", "description": "x", "definition": d}


def rule(code, expr, value_type="boolean"):
    return {"code": code, "name_zh": code, "name_en": code, "category": "risk", "kind": "rule",
            "value_type": value_type, "description": "x", "definition": {"expr": expr}}


@contextlib.contextmanager
def no_spark_job(spark):
    sc = spark.sparkContext
    sc.setJobGroup("tags-validation", "catalog validation must not run jobs")
    try:
        yield
    finally:
        jobs = list(sc.statusTracker().getJobIdsForGroup("tags-validation"))
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert jobs == [], f"validation ran Spark jobs {jobs}"


def test_project_catalog_is_valid_and_complete(spark):
    with no_spark_job(spark):
        cat = validate(spark, load_catalog())
    assert len(cat) >= 40
    assert set(REFERENCE) <= set(cat.codes)
    assert set(collections.Counter(t.category for t in cat)) == {
        "basic", "behaviour", "value", "risk", "marketing", "lifecycle", "need"}
    order = cat.codes   # dependencies first
    assert order.index("aum") < order.index("aum_tier") < order.index("risk_large_txn") < order.index("risk_level")
    assert cat.get("txn_amt_90d").definition.window_days == 90


def test_unknown_key_rejected_with_file_and_key(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "tags:\n  - code: a_tag\n    name_zh: a\n    name_en: a\n    category: risk\n    kind: rule\n"
        "    value_type: boolean\n    description: d\n    colour: red\n    definition:\n      expr: 'true'\n")
    with pytest.raises(ConfigError, match=r"x.yaml.*unknown key\(s\) \['colour'\]"):
        load_catalog(tmp_path)


def test_a_folder_without_tags_and_a_missing_conf_folder_are_errors_missing_optional_folders_warned(
        spark, tmp_path, caplog, monkeypatch):
    (tmp_path / "tags").mkdir()
    (tmp_path / "tags" / "notes.yaml").write_text("tags: []\n")
    with pytest.raises(ConfigError, match=r"tags: no tag declared"):
        load_catalog(tmp_path / "tags")
    with pytest.raises(ConfigError, match=r"missing: no tag declared"):
        load_catalog(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"<inline>: no tag declared"):
        catalog_from_dicts([])
    # A mistyped --conf would otherwise find no tag, suite or segment and publish empty outputs: refused
    # as a usage error while the configuration loads, before any Spark session or table is touched.
    from kequn import cli, pipeline
    wh = tmp_path / "wh"
    code = cli.main(["tags", "--landing", str(tmp_path), "--warehouse", str(wh), "--as-of", "2026-11-24",
                     "--conf", str(tmp_path / "cnof")])
    assert code == pipeline.EXIT_USAGE and not wh.exists()
    assert f"configuration folder {tmp_path / 'cnof'} does not exist" in caplog.text
    # The folder exists but declares no tag: the tags stage stops before its first job, with the same status.
    monkeypatch.setenv("KEQUN_CONF", str(tmp_path))  # the command sets it too; undone after the test
    code = cli.main(["tags", "--landing", str(tmp_path), "--warehouse", str(wh), "--as-of", "2026-11-24",
                     "--conf", str(tmp_path)])
    assert code == pipeline.EXIT_USAGE
    assert "stage tags: FAILED" in caplog.text and f"{tmp_path / 'tags'}: no tag declared" in caplog.text
    # Quality suites, segments and journeys are optional folders, but a conf without them changes what is
    # published: said when the configuration loads, whichever stage runs.
    assert f"configuration: {tmp_path} has no quality/ folder: no suite is declared" in caplog.text
    assert f"{tmp_path} has no segments/ folder" in caplog.text and f"{tmp_path} has no journeys/" in caplog.text
    caplog.clear()
    load_pipeline(Path(__file__).parents[1] / "conf")
    assert "has no" not in caplog.text


def test_unknown_category_and_missing_definition_rejected():
    bad = stat("a_tag")
    bad["category"] = "fun"
    with pytest.raises(ConfigError, match="'fun' is not one of"):
        catalog_from_dicts([bad])
    with pytest.raises(ConfigError, match="statistic needs definition.agg"):
        catalog_from_dicts([stat("a_tag", agg=None)])


def test_unknown_column_rejected_before_any_job(spark):
    cat = catalog_from_dicts([stat("amt", "sum(amountx)", where="direction = 'debit'")])
    with no_spark_job(spark), pytest.raises(ConfigError, match=r"tag 'amt'.agg: unknown column\(s\) \['amountx'\] "
                                                             r"of source 'transaction'"):
        validate(spark, cat)
    cat = catalog_from_dicts([stat("cnt", where="colour = 'red'", source="event")])
    with no_spark_job(spark), pytest.raises(ConfigError, match=r"'cnt'.where: unknown column\(s\) \['colour'\]"):
        validate(spark, cat)


def test_unknown_tag_rejected_before_any_job(spark):
    cat = catalog_from_dicts([stat("cnt"), rule("busy", "cnt > 3 AND nosuch_tag = 1")])
    with no_spark_job(spark), pytest.raises(ConfigError, match=r"tag 'busy'.expr: unknown tag\(s\) \['nosuch_tag'\]"):
        validate(spark, cat)


def test_cycle_rejected_before_any_job(spark):
    cat = catalog_from_dicts([stat("cnt"), rule("a_rule", "b_rule OR cnt > 1"), rule("b_rule", "c_rule"),
                              rule("c_rule", "a_rule")])
    with no_spark_job(spark), pytest.raises(ConfigError, match=r"cycle between tags: (a_rule|b_rule|c_rule) -> "):
        validate(spark, cat)


def test_bad_sql_distinct_and_type_errors_rejected(spark):
    with no_spark_job(spark):
        with pytest.raises(ConfigError, match="does not parse"):
            validate(spark, catalog_from_dicts([stat("cnt", "sum(amount")]))
        with pytest.raises(ConfigError, match="collect_set"):
            validate(spark, catalog_from_dicts([stat("cnt", "count(DISTINCT channel)")]))
        # Spark itself refuses an aggregate wrapped in a scalar function here; either message names the tag.
        with pytest.raises(ConfigError, match="single aggregate call|does not analyse"):
            validate(spark, catalog_from_dicts([stat("cnt", "round(sum(amount), 2)")]))
        with pytest.raises(ConfigError, match="tag 'cnt': does not analyse"):
            validate(spark, catalog_from_dicts([stat("cnt", "sum(amount, channel, 3)")]))


def test_value_maps_the_aggregate_and_leaves_a_null_aggregate_null(spark):
    """A person with rows in the source but none matching a tag's filter has no value (the default applies
    later), even when ``value`` would turn null into a number: as a query per tag (filter, aggregate) gives."""
    from chispa import assert_df_equality

    from kequn.tags.plan import SOURCE_SCHEMAS, source_pass

    cat = catalog_from_dicts([
        stat("days_since_debit", "max(event_date)", where="direction = 'debit'",
             value="greatest(0, datediff(as_of_date, value))"),
        stat("debits_doubled", "count(1)", where="direction = 'debit'", value="value * 2"),
    ])
    rows = [("T1", "core", "C1", None, None, "debit", None, None, None, "2026-11-20", 1, None),
            ("T2", "core", "C2", None, None, "credit", None, None, None, "2026-11-21", 2, None)]
    view = spark.createDataFrame(rows, SOURCE_SCHEMAS["transaction"].replace("event_date date", "event_date string"))
    view = view.withColumn("event_date", view.event_date.cast("date"))
    got = source_pass(view, cat.of_kind("statistic"), "2026-11-25").drop("_rows_in")
    expected = spark.createDataFrame([(1, 5, 2), (2, None, 0)], "one_id bigint, days_since_debit bigint, debits_doubled bigint")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    # ``value`` is bound as a column, not with a lambda, so the projection over the aggregates is compiled.
    plan = got._jdf.queryExecution().executedPlan().toString()
    assert "lambdafunction" not in plan.lower(), plan
