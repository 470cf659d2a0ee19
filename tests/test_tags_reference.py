"""Reference tags of the output contract on a hand-built dataset, exact values; point in time;
one aggregation per source."""
import pytest
from chispa import assert_df_equality

from kequn.tags import load_catalog, validate
from kequn.tags.plan import aggregate_count, wide_frame
from kequn.tags.values import long_form, profile
from test_tags_helpers import day, write_bronze, write_map

D = "2026-06-30"
LATER = day(D, 1)
REF = ["txn_cnt_90d", "txn_amt_90d", "aum", "aum_tier", "app_active_days_30d", "is_dormant_stable",
       "is_first_purchase", "preferred_channel"]
MAP = [("core_customer", "C1", 1), ("card_account", "K1", 1), ("app_user", "A1", 1), ("wechat_user", "W1", 1),
       ("core_customer", "C2a", 2), ("core_customer", "C2b", 2),
       ("core_customer", "C3", 3),
       ("app_user", "A4", 4), ("card_account", "K4", 4),
       ("core_customer", "C5", 5), ("core_customer", "C6", 6)]


def ts(delta, clock="12:00:00"):
    return f"{day(D, delta)} {clock}"


def txn(i, src, key, t, amount, direction="debit", product=None, channel="app"):
    return {"txn_id": f"T{i}", "source": src, "source_key": key, "txn_time": t, "amount": amount,
            "direction": direction, "channel": channel, "category": "other", "product_code": product}


def build(wh, with_later=True):
    masters = {
        "core_customer": [{"cust_no": k, "gender": "M", "birth_date": "1980-01-01", "updated_at": ts(-400)}
                          for k in ("C1", "C2a", "C2b", "C3", "C5", "C6")],
        "card_account": [{"card_cust_id": k, "card_level": "gold", "updated_at": ts(-400)} for k in ("K1", "K4")],
        "app_user": [{"app_user_id": k, "updated_at": ts(-400)} for k in ("A1", "A4")],
        "wechat_user": [{"openid": "W1", "app_type": "official_account", "updated_at": ts(-400)}],
    }
    for src, rows in masters.items():
        write_bronze(wh, src, {day(D, -400): rows})
    txns = {D: [
        txn(1, "core", "C1", ts(-89, "00:00:00"), "10.10"),          # first day of the window
        txn(2, "card", "K1", ts(0, "23:59:59"), "20.25"),            # last moment of D
        txn(3, "core", "C1", ts(-90, "23:59:59"), "99.00"),          # one day before the window
        txn(4, "core", "C1", ts(-10), "500.00", direction="credit"), # credit: not counted
        txn(7, "core", "C1", ts(-20), "1000.00", product="WM001"),   # the only product purchase
        txn(8, "core", "C3", ts(-5), "300.00", direction="credit"),
        txn(9, "core", "C3", ts(-200), "50.00", product="FD001"),
        txn(10, "core", "C3", ts(-10), "60.00", product="IN001"),  # a debit in the window: counts
        txn(11, "card", "K4", ts(-95), "70.00", product="LN001"),     # outside 90 days
        txn(12, "core", "C5", ts(-180, "23:59:59"), "5.00"),         # outside 180 days
    ]}
    if with_later:
        txns[LATER] = [txn(5, "core", "C1", ts(1), "5.00"),           # after D
                       txn(6, "core", "C1", ts(-5), "7.00"),          # before D but delivered later
                       txn(13, "core", "C6", ts(-1), "8.00", product="WM9")]
    write_bronze(wh, "transaction", txns)

    def h(k, d, p, b):
        return {"source_key": k, "snapshot_date": day(D, d), "product_type": p, "balance": b}
    hold = {D: [h("C1", -1, "demand_deposit", "1000.00"), h("C1", -1, "wealth", "2000.00"),
                h("C1", 0, "demand_deposit", "60000.00"), h("C1", 0, "fund", "0.50"),
                h("C1", 0, "mortgage", "299000.00"),
                h("C2a", -3, "time_deposit", "40000.00"), h("C2b", -3, "wealth", "20000.00"),
                h("C2b", -5, "insurance", "5.00"),                   # not the person's latest date
                h("C5", -2, "wealth", "6000000.00"),
                h("C6", -2, "demand_deposit", "500000.00")]}
    if with_later:
        hold[LATER] = [h("C1", 1, "demand_deposit", "999999.00"), h("C3", 0, "wealth", "77777.00")]
    write_bronze(wh, "holding", hold)

    def ev(i, src, key, t, etype="login"):
        return {"event_id": f"E{i}", "source": src, "user_key": key, "event_time": t, "event_type": etype}
    events = {D: [ev(1, "app", "A1", ts(-29, "08:00:00")), ev(2, "app", "A1", ts(-29, "09:00:00")),
                  ev(3, "app", "A1", ts(0, "23:00:00")), ev(4, "app", "A1", ts(-30)),
                  ev(5, "web", "A1", ts(-3)), ev(6, "official_account", "W1", ts(-2)),
                  ev(7, "app", "A4", ts(-179)), ev(8, "app", "A9", ts(-1))]}
    if with_later:
        events[LATER] = [ev(9, "app", "A1", ts(-1)), ev(10, "app", "A1", ts(1))]
    write_bronze(wh, "event", events)

    def tc(i, ch, src, key, sent, opened):
        return {"touch_id": f"X{i}", "campaign_id": "c", "step": 1, "channel": ch, "target_source": src,
                "target_key": key, "sent_time": sent, "opened_time": opened}
    touches = {D: [tc(1, "app_push", "app_user", "A1", ts(-11), ts(-10)),
                   tc(2, "app_push", "app_user", "A1", ts(-205), ts(-200)),
                   tc(3, "wechat", "wechat_user", "W1", ts(-6), ts(-5)),
                   tc(4, "sms", "core_customer", "C1", ts(-2), ts(-1)),
                   tc(5, "sms", "core_customer", "C1", ts(-3), ts(-2)),
                   tc(6, "app_push", "core_customer", "C2a", ts(-181), ts(-179, "00:00:01")),
                   tc(7, "wechat", "core_customer", "C2b", ts(-1), ts(-1)),
                   tc(8, "wechat", "core_customer", "C3", ts(-3), ts(-3)),
                   tc(9, "sms", "core_customer", "C3", ts(-3), ts(-2)),
                   tc(10, "sms", "core_customer", "C3", ts(-181), ts(-180, "23:59:59")),
                   tc(11, "sms", "core_customer", "C5", ts(-3), None),
                   tc(12, "sms", "core_customer", "C6", ts(-3), None)]}
    if with_later:   # C5's touch opened after D, re-delivered in the later batch
        touches[LATER] = [tc(11, "sms", "core_customer", "C5", ts(-3), ts(1)),
                          tc(12, "sms", "core_customer", "C6", ts(-3), ts(-1))]
    write_bronze(wh, "touch", touches)
    write_bronze(wh, "consent", {D: [{"source": "core_customer", "source_key": "C1", "purpose": "marketing",
                                      "granted": True, "event_time": ts(-3)}]})
    write_map(wh, D, MAP, more_days=(LATER,))


EXPECTED = {
    1: ["3", "1030.35", "60000.50", "gold", "2", "false", "true", "sms"],
    2: ["0", "0.00", "60000.00", "gold", "0", "true", "false", "app_push"],
    3: ["1", "60.00", "0.00", "mass", "0", "false", "false", "wechat"],
    4: ["0", "0.00", "0.00", "mass", "0", "false", "false", None],
    5: ["0", "0.00", "6000000.00", "private", "0", "true", "false", None],
    6: ["0", "0.00", "500000.00", "platinum", "0", "true", "false", None],
}


@pytest.fixture(scope="module")
def catalog(spark):
    return validate(spark, load_catalog())


@pytest.fixture(scope="module")
def wh(spark, tmp_path_factory):
    """One small warehouse for the module: the machine is shared and every Delta write costs seconds."""
    from kequn.tables import Warehouse
    w = Warehouse(spark, str(tmp_path_factory.mktemp("tags_ref") / "wh"))
    build(w)
    return w


def reference_values(spark, wh, catalog, as_of=D):
    sub = catalog.subset(REF)
    prof = profile(wide_frame(wh, as_of, sub), REF, sub, as_of)
    return long_form(prof, REF).select("one_id", "tag_code", "tag_value")


def expected_df(spark):
    rows = [(o, c, v) for o, vals in EXPECTED.items() for c, v in zip(REF, vals)]
    return spark.createDataFrame(rows, "one_id bigint, tag_code string, tag_value string")


def test_reference_tags_exact_values(spark, wh, catalog):
    # The warehouse also holds a batch dated D+1 (facts after D, a late delivery of a fact before D,
    # a touch re-delivered with its open, a holding snapshot of D+1): none of it may count for D.
    got = reference_values(spark, wh, catalog)
    assert_df_equality(got, expected_df(spark), ignore_row_order=True, ignore_nullable=True)


def test_point_in_time_later_day_sees_later_batches(spark, wh, catalog):
    later = {(r.one_id, r.tag_code): r.tag_value for r in reference_values(spark, wh, catalog, LATER).collect()}
    assert later[(6, "preferred_channel")] == "sms"
    # window moves to D-88..D+1: T1 (D-89) leaves; T5 (D+1) and T6 (D-5, delivered late) now count
    assert later[(1, "txn_cnt_90d")] == "4"


def test_one_aggregation_per_source(spark, wh, catalog):
    wide = wide_frame(wh, D, catalog)
    sources = catalog.sources()
    assert len(sources) == 6
    assert aggregate_count(wide) == len(sources)
    # adding tags to a source adds no aggregation
    sub = catalog.subset(["txn_cnt_90d"])
    assert aggregate_count(wide_frame(wh, D, sub)) == len(sub.sources()) == 2
    # the full catalog's other tags have sensible values too
    row = wide.where("one_id = 1").first()
    assert row["gender"] == "M" and row["has_credit_card"] is True and row["credit_card_level"] == "gold"
    assert row["marketing_consent"] is True and row["product_count"] == 3 and str(row["loan_balance"]) == "299000.00"


def test_persons_come_from_the_map_when_no_tag_reads_master_data(spark, wh, catalog):
    """The reference tags include no person tag: their plan lists the persons from the day's map and
    reads no master table, and the person pass over master data lists the same persons."""
    from kequn.tags.plan import id_map_as_of, pass_frame, source_pass, source_view

    sub = catalog.subset(REF)
    assert not [t for t in sub.of_kind("statistic") if t.definition.source == "person"]
    read = " ".join(wide_frame(wh, D, sub).inputFiles())
    masters = ("core_customer", "card_account", "app_user", "wechat_user")
    assert "one_id_map_history" in read and not [m for m in masters if f"/{m}/" in read]
    for as_of in (D, LATER):
        id_map = id_map_as_of(wh, as_of)
        assert_df_equality(pass_frame(wh, "person", [], as_of, id_map),
                           source_pass(source_view(wh, "person", as_of, id_map), [], as_of),
                           ignore_row_order=True, ignore_nullable=True)


def test_holding_view_keeps_only_the_snapshots_its_tags_read(spark, wh, catalog):
    """The holding tags read a person's latest and 30-days-ago snapshots only; the view drops the other
    days' rows (C1's D-1, C2b's D-5 here) and every tag keeps its value."""
    from kequn.tags.plan import id_map_as_of, snapshot_bound, source_pass, source_view

    tags = [t for t in catalog.of_kind("statistic") if t.definition.source == "holding"]
    assert len(tags) == 10 and snapshot_bound(spark, tags)
    for as_of in (D, LATER):
        id_map = id_map_as_of(wh, as_of)
        every = source_view(wh, "holding", as_of, id_map)
        kept = source_view(wh, "holding", as_of, id_map, tags=tags)
        assert kept.count() < every.count()
        assert_df_equality(source_pass(kept, tags, as_of).drop("_rows_in"),
                           source_pass(every, tags, as_of).drop("_rows_in"), ignore_row_order=True)


def test_snapshot_dates_per_customer_and_when_tags_allow_them(spark):
    import datetime as dt

    from kequn.tags.catalog import catalog_from_dicts
    from kequn.tags.plan import snapshot_bound, snapshot_dates

    rows = [("H1", -40), ("H1", -31), ("H1", -29), ("H1", 0), ("H2", -35), ("H2", -10), ("H3", -60), ("H3", 2)]
    holdings = spark.createDataFrame([(k, dt.date.fromisoformat(day(D, d))) for k, d in rows],
                                     "source_key string, snapshot_date date").where(f"snapshot_date <= DATE'{D}'")
    # H1: latest D, latest by D-30 is D-31; H2: D-10 and D-35; H3: D-60 for both (its D+2 is after D)
    assert sorted(snapshot_dates(holdings, D)) == sorted(dt.date.fromisoformat(day(D, d))
                                                          for d in (0, -31, -10, -35, -60))

    def hold(where, **kw):
        return {"code": "held", "name_zh": "h", "name_en": "h", "category": "value", "kind": "statistic",
                "value_type": "int", "description": "h",
                "definition": {"source": "holding", "where": where, "agg": "count(1)", **kw}}
    bound = catalog_from_dicts([hold("snapshot_date = latest_snapshot_date AND balance > 0")])
    assert snapshot_bound(spark, bound.tags)
    for where in ("snapshot_date = latest_snapshot_date OR balance > 0", "balance > 0",
                  "snapshot_date >= snapshot_date_30d_ago"):
        assert not snapshot_bound(spark, catalog_from_dicts([hold(where)]).tags), where
