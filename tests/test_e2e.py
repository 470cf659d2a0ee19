"""End to end: `kequn generate`, then `kequn run` for two days, then the tables read back.

The CLI's own entry point runs in this process (so the suite keeps one Spark
session); the checks recompute what the contract implies from the landing files
with tests/reference.py, which shares no code with kequn.
"""
import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from kequn import cli
from reference import MASTER_KEYS, expected_groups

from conftest import DEMO_DAY1 as DAY1, DEMO_END as END


@pytest.fixture(scope="module")
def demo(pipeline_demo):
    return pipeline_demo


def _map(spark, wh):
    return {(r.source, r.source_key): r.one_id for r in
            spark.read.format("delta").load(f"{wh}/gold/one_id_map").collect()}


def test_every_stage_commits(demo):
    _, wh, codes = demo
    assert codes == {DAY1: 0, END: 0}, "day 1 by spark-submit on the cluster (see test_cluster), day 2 in process"
    for table in ("gold/one_id_map", "gold/identity_shared_identifiers", "gold/tag_values", "gold/customer_profile",
                  "gold/tag_catalog", "gold/segment_members", "gold/segment_stats", "gold/journey_state",
                  "gold/journey_actions", "quality/validation_results"):
        assert (Path(wh) / table / "_delta_log").is_dir(), table


def test_one_id_map_groups_records_exactly_as_the_contract_implies(spark, demo):
    landing, wh, _ = demo
    expected, shared = expected_groups(landing, END)
    got = _map(spark, wh)
    assert set(got) == {r for g in expected for r in g}, "every master record once"
    groups: dict = {}
    for rec, one_id in got.items():
        groups.setdefault(one_id, set()).add(rec)
    assert {frozenset(g) for g in groups.values()} == expected
    reported = {(r.id_type, r.degree) for r in
                spark.read.format("delta").load(f"{wh}/gold/identity_shared_identifiers").collect()}
    assert reported == {(t, d) for (t, _), d in shared.items()}
    assert shared, "the generator plants shared points"


def test_unchanged_persons_keep_their_one_id(spark, demo):
    landing, wh, _ = demo
    before, _ = expected_groups(landing, DAY1)
    after, _ = expected_groups(landing, END)
    hist = spark.read.format("delta").load(f"{wh}/silver/one_id_map_history")
    day1 = {(r.source, r.source_key): r.one_id for r in hist.where(f"as_of = DATE'{DAY1}'").collect()}
    day2 = _map(spark, wh)
    unchanged = before & after
    assert unchanged
    for group in unchanged:
        assert {day1[r] for r in group} == {day2[r] for r in group}


def test_transaction_tags_match_an_independent_count(spark, demo):
    landing, wh, _ = demo
    one_id = _map(spark, wh)
    d = dt.date.fromisoformat(END)
    seen, cnt, amt = set(), {}, {}
    for batch in sorted((Path(landing) / "transaction").glob("dt=*")):
        if batch.name[3:] > END:
            continue
        for f in sorted(batch.glob("*.csv")):
            with open(f, encoding="utf-8-sig", newline="") as fh:
                for row in csv.DictReader(fh):
                    if row["txn_id"] in seen:
                        continue
                    seen.add(row["txn_id"])
                    when = dt.datetime.fromisoformat(row["txn_time"].replace("T", " ")).date()
                    src = "core_customer" if row["source"] == "core" else "card_account"
                    person = one_id.get((src, row["source_key"]))
                    if person is None or row["direction"] != "debit" or not (d - dt.timedelta(89) <= when <= d):
                        continue
                    cnt[person] = cnt.get(person, 0) + 1
                    amt[person] = amt.get(person, Decimal(0)) + Decimal(row["amount"])
    tags = spark.read.format("delta").load(f"{wh}/gold/tag_values").where(
        f"as_of = DATE'{END}' AND tag_code IN ('txn_cnt_90d', 'txn_amt_90d')").collect()
    got = {(r.one_id, r.tag_code): r.tag_value for r in tags}
    persons = set(one_id.values())
    assert {p for p, _ in got} == persons
    for p in persons:
        assert got[(p, "txn_cnt_90d")] == str(cnt.get(p, 0))
        assert got[(p, "txn_amt_90d")] == str(amt.get(p, Decimal(0)).quantize(Decimal("0.01")))


def test_segment_stats_agree_with_members_and_quality_is_recorded(spark, demo):
    _, wh, _ = demo
    members = spark.read.format("delta").load(f"{wh}/gold/segment_members")
    stats = spark.read.format("delta").load(f"{wh}/gold/segment_stats")
    counts = {(str(r.as_of), r.segment_code): r["count"] for r in members.groupBy("as_of", "segment_code").count().collect()}
    for r in stats.collect():
        assert r.size == counts.get((str(r.as_of), r.segment_code), 0)
    assert stats.select("segment_code").distinct().count() >= 10
    results = spark.read.format("delta").load(f"{wh}/quality/validation_results")
    assert results.where(f"as_of = DATE'{END}'").count() > 0


def test_need_models_train_on_the_generated_history_and_the_next_day_reuses_the_fit(spark, demo):
    """The generated history arrives in the first batches, after the training day: the models still
    train (as known on the run day), and the next day scores with the same fit."""
    _, wh, _ = demo
    status = {(str(r.as_of), r.model): r.status
              for r in spark.read.format("delta").load(f"{wh}/gold/tag_model_metrics").collect()}
    for model in ("need_education", "need_mortgage"):
        assert status[DAY1, model].startswith("trained as of ") and f"(as known on {DAY1})" in status[DAY1, model]
        assert status[END, model] == f"reused the fit of {DAY1}: {status[DAY1, model]}"
    profile = spark.read.format("delta").load(f"{wh}/gold/customer_profile")
    assert profile.count() > 0 and profile.where("need_education IS NULL OR need_mortgage IS NULL").count() == 0


def test_rerunning_an_earlier_day_changes_no_table(spark, demo):
    """A backfill: day 1 again, after day 2 was published. Day partitions are replaced by the same
    rows; the latest-day tables (current map, profile) keep day 2; quality checks pass."""
    landing, wh, _ = demo
    tables = ["gold/one_id_map", "gold/tag_values", "gold/segment_members", "gold/segment_stats",
              "gold/journey_state", "gold/journey_actions", "bronze/transaction", "bronze/core_customer",
              "silver/one_id_map_history", "gold/customer_profile", "gold/tag_catalog"]

    def snapshot():
        counts = {t: spark.read.format("delta").load(f"{wh}/{t}").count() for t in tables}
        current = {tuple(r) for r in spark.read.format("delta").load(f"{wh}/gold/one_id_map")
                   .select("source", "source_key", "one_id").collect()}
        profile = {str(r.as_of) for r in spark.read.format("delta").load(f"{wh}/gold/customer_profile")
                   .select("as_of").distinct().collect()}
        return counts, current, profile

    before = snapshot()
    assert before[2] == {END}
    assert cli.main(["run", "--landing", str(landing), "--warehouse", str(wh), "--as-of", DAY1]) == 0
    assert snapshot() == before


def test_sql_command_and_other_engines_read_the_tables(demo, capsys):
    _, wh, _ = demo
    assert cli.main(["sql", "--warehouse", str(wh), "--format", "csv", "SELECT count(*) AS n FROM gold.one_id_map"]) == 0
    n = int(capsys.readouterr().out.strip().splitlines()[-1])
    assert n > 0
    from kequn.readers import delta_rs_table, duckdb_connection
    assert delta_rs_table(str(wh), "gold.one_id_map").to_pyarrow_table().num_rows == n
    con = duckdb_connection(str(wh))
    assert con.execute("SELECT count(*) FROM gold.one_id_map").fetchone()[0] == n
    assert con.execute(f"SELECT count(*) FROM gold.tag_values WHERE as_of = DATE '{END}'").fetchone()[0] > 0
