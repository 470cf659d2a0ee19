"""Journeys: the first_loan day-by-day table of outputs.md, on hand-built touch histories.

One small world, run on the days that matter (E, E+2, E+3, E+4, E+5, E+7), with the
shipped conf (conf/journeys/first_loan.yaml, login_reactivation.yaml, conf/segments).
Persons: A (app, mobile; never opens), B (app, WeChat, mobile; opens WeChat at step 3),
C (no app; mobile, WeChat), D (app, mobile; revokes marketing on E+3), P (control group).
"""
from __future__ import annotations

import csv
import glob
import os

import pytest
from pyspark.sql import functions as F

from kequn.config import ConfigError, PipelineConfig, default_conf_dir
from kequn.journeys import load_journeys, run, simulate_delivery
from kequn.journeys.stage import compute
from kequn.journeys.definitions import Journey, Step, check
from kequn.tables import Warehouse

from test_segments_data import plus, write_consent, write_map, write_master, write_members, write_touches

E = "2026-03-02"
DAYS = [E, plus(E, 2), plus(E, 3), plus(E, 4), plus(E, 5), plus(E, 7)]


def control_flags(spark, code, ids, share=0.10):
    df = spark.createDataFrame([(i,) for i in ids], "one_id bigint")
    expr = F.pmod(F.xxhash64(F.lit(code), F.col("one_id")), F.lit(10000)) < int(share * 10000)
    return {r.one_id: r.c for r in df.select("one_id", expr.alias("c")).collect()}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("journeys_world")
    wh = Warehouse(spark, str(root / "wh"))
    ids = list(range(1, 300))
    fl, lr = control_flags(spark, "first_loan", ids), control_flags(spark, "login_reactivation", ids)
    treat = [i for i in ids if not fl[i] and not lr[i]]
    A, B, C, D = treat[:4]
    P = next(i for i in ids if fl[i])
    who = {"A": A, "B": B, "C": C, "D": D, "P": P}
    recs = [("app_user", "aA", A), ("core_customer", "cA", A),
            ("app_user", "aB", B), ("wechat_user", "wB", B), ("core_customer", "cB", B),
            ("core_customer", "cC", C), ("wechat_user", "wC", C),
            ("app_user", "aD", D), ("core_customer", "cD", D),
            ("app_user", "aP", P), ("core_customer", "cP", P)]
    write_map(wh, recs, [plus(E, -1)])
    batch = plus(E, -1)
    for source in ("core_customer", "app_user", "wechat_user"):
        write_master(wh, source, [{"key": k, "mobile_token": f"m_{k}" if source != "wechat_user" else None,
                                   "batch": batch} for s, k, _ in recs if s == source])
    members = [(plus(E, n), "first_loan_target", p) for n in range(0, 8) for p in (A, B, C, P)]
    members += [(plus(E, n), "first_loan_target", D) for n in range(0, 3)]
    write_members(wh, members)

    def t(tid, step, ch, src, key, sent_day, opened=None, camp="first_loan"):
        return {"touch_id": tid, "campaign_id": camp, "step": step, "channel": ch, "target_source": src,
                "target_key": key, "sent": f"{sent_day} 09:00:00", "opened": opened, "batch": sent_day}
    write_touches(wh, [
        t("tA1", 1, "app_push", "app_user", "aA", plus(E, 1)),
        t("tA2", 2, "app_push", "app_user", "aA", plus(E, 3)),
        t("tA3", 3, "sms", "core_customer", "cA", plus(E, 5)),
        t("tAx", 1, "app_push", "app_user", "aA", plus(E, 1), f"{plus(E, 1)} 10:00:00", camp="other_campaign"),
        t("tB1", 1, "app_push", "app_user", "aB", plus(E, 1)),
        t("tB2", 2, "app_push", "app_user", "aB", plus(E, 3)),
        t("tB3w", 3, "wechat", "wechat_user", "wB", plus(E, 5), f"{plus(E, 5)} 10:30:00"),
        t("tB3s", 3, "sms", "core_customer", "cB", plus(E, 5)),
        t("tC3s", 3, "sms", "core_customer", "cC", plus(E, 1)),
        t("tC3w", 3, "wechat", "wechat_user", "wC", plus(E, 1)),
        t("tD1", 1, "app_push", "app_user", "aD", plus(E, 1)),
        t("tD2", 2, "app_push", "app_user", "aD", plus(E, 3)),
    ])
    write_consent(wh, [
        {"source": "core_customer", "source_key": "cD", "granted": True, "event": "2026-01-01 09:00:00", "batch": "2026-01-01"},
        {"source": "app_user", "source_key": "aD", "granted": False, "event": f"{plus(E, 3)} 08:00:00", "batch": plus(E, 3)},
    ])
    cfg = PipelineConfig(conf_dir=str(default_conf_dir()))
    snap = {}
    # The stage writes on E+3 (churned then feeds login_reactivation from the written history) and runs
    # again on E+3 (idempotence); the other days are derived with compute(), the same derivation
    # without staging, quality gate and writes (a full run costs a quality gate).
    snap[plus(E, 3)] = {"result": run(spark, wh, plus(E, 3), cfg), **tables_of(wh, plus(E, 3))}
    for day in (E, plus(E, 2), plus(E, 4), plus(E, 5), plus(E, 7)):
        snap[day] = computed(spark, wh, day, cfg)
    # Replay an old day after later ones (derivation) and re-run it (stage): the same tables.
    snap["replay"] = computed(spark, wh, plus(E, 3), cfg)
    snap["rerun"] = {"result": run(spark, wh, plus(E, 3), cfg), **tables_of(wh, plus(E, 3))}
    return {"wh": wh, "who": who, "snap": snap, "cfg": cfg}


def _rows(df):
    if "as_of" in df.columns:
        df = df.drop("as_of")
    return sorted(tuple(r) for r in df.collect())


def computed(spark, wh, day, cfg):
    # A local checkpoint, not cache(): the derived tables then plan over a short lineage (cache keeps the
    # whole plan, which Spark re-analyses at every join: about 10 s a day on this tiny world).
    out = compute(spark, wh, day, cfg, materialise=lambda df, name: df.localCheckpoint())
    return {t: _rows(out[t]) for t in ("state", "actions", "funnel", "members", "stats")}


FED = ["churned", "app_habit", "wechat_habit", "sms_habit"]


def tables_of(wh, day):
    return {t: _rows(wh.read(n).where((F.col("as_of") == day) & (F.lit(t != "members") | F.col("segment_code").isin(FED))
                                      if t == "members" else F.col("as_of") == day)) for t, n in (
        ("state", "gold.journey_state"), ("actions", "gold.journey_actions"), ("funnel", "gold.journey_funnel"),
        ("members", "gold.segment_members"), ("stats", "gold.segment_stats"))}


def state_of(world, day, person, journey="first_loan"):
    p = world["who"][person]
    rows = [r for r in world["snap"][day]["state"] if r[0] == journey and r[1] == p]
    return rows[0][2:] if rows else None  # (step, status, entered_at, updated_at)


def actions_of(world, day, person):
    p = world["who"][person]
    return sorted((r[0], r[2], r[3]) for r in world["snap"][day]["actions"] if r[1] == p)


def group_of(world, day, code):
    return {r[1] for r in world["snap"][day]["members"] if r[0] == code}


def d(s):
    import datetime
    return datetime.date.fromisoformat(s)


def test_unopened_pushes_run_to_churn_on_e_plus_7_and_enter_login_reactivation(world):
    assert actions_of(world, E, "A") == [("first_loan", 1, "app_push")]
    assert actions_of(world, plus(E, 2), "A") == [("first_loan", 2, "app_push")]
    assert actions_of(world, plus(E, 3), "A") == []
    assert actions_of(world, plus(E, 4), "A") == [("first_loan", 3, "sms")]  # no WeChat record: SMS only
    assert actions_of(world, plus(E, 5), "A") == []
    assert state_of(world, plus(E, 5), "A") == (3, "active", d(E), d(plus(E, 4)))
    assert state_of(world, plus(E, 7), "A") == (3, "churned", d(E), d(plus(E, 7)))
    assert world["who"]["A"] in group_of(world, plus(E, 7), "churned")
    assert world["who"]["A"] not in group_of(world, plus(E, 5), "churned")
    # Entered login_reactivation the day they churned; its first step goes out that day.
    assert state_of(world, plus(E, 7), "A", "login_reactivation") == (1, "active", d(plus(E, 7)), d(plus(E, 7)))
    assert actions_of(world, plus(E, 7), "A") == [("login_reactivation", 1, "app_push")]


def test_open_on_wechat_at_step_3_responds_and_feeds_wechat_habit(world):
    assert actions_of(world, plus(E, 4), "B") == [("first_loan", 3, "sms"), ("first_loan", 3, "wechat")]
    assert state_of(world, plus(E, 4), "B") == (3, "active", d(E), d(plus(E, 4)))
    assert state_of(world, plus(E, 5), "B") == (3, "responded", d(E), d(plus(E, 5)))
    assert world["who"]["B"] in group_of(world, plus(E, 5), "wechat_habit")
    assert world["who"]["B"] not in group_of(world, plus(E, 5), "sms_habit")
    assert world["who"]["B"] in group_of(world, plus(E, 7), "wechat_habit")
    assert world["who"]["B"] not in group_of(world, plus(E, 7), "churned")
    assert all(actions_of(world, day, "B") == [] for day in (plus(E, 5), plus(E, 7)))


def test_no_app_account_starts_at_step_3_and_churns_on_e_plus_3(world):
    assert actions_of(world, E, "C") == [("first_loan", 3, "sms"), ("first_loan", 3, "wechat")]
    assert state_of(world, E, "C") == (3, "active", d(E), d(E))
    assert actions_of(world, plus(E, 2), "C") == []
    assert state_of(world, plus(E, 2), "C")[1] == "active"
    assert state_of(world, plus(E, 3), "C") == (3, "churned", d(E), d(plus(E, 3)))
    assert world["who"]["C"] in group_of(world, plus(E, 3), "churned")
    # login_reactivation: no app either, so its SMS/WeChat step comes on the entry day.
    assert actions_of(world, plus(E, 3), "C") == [("login_reactivation", 2, "sms"), ("login_reactivation", 2, "wechat")]
    assert state_of(world, plus(E, 7), "C", "login_reactivation")[1] == "completed"


def test_revocation_mid_journey_opts_out_with_no_further_action(world):
    assert actions_of(world, plus(E, 2), "D") == [("first_loan", 2, "app_push")]
    assert state_of(world, plus(E, 3), "D") == (2, "opted_out", d(E), d(plus(E, 3)))
    assert all(actions_of(world, day, "D") == [] for day in (plus(E, 3), plus(E, 4), plus(E, 5), plus(E, 7)))
    assert state_of(world, plus(E, 7), "D")[1] == "opted_out"
    assert all(world["who"]["D"] not in group_of(world, plus(E, 7), g)
               for g in ("churned", "app_habit", "sms_habit", "wechat_habit"))


def test_control_group_gets_state_but_never_an_action(world):
    assert state_of(world, E, "P") == (1, "active", d(E), d(E))
    assert all(actions_of(world, day, "P") == [] for day in DAYS)
    assert all(state_of(world, day, "P") is not None for day in DAYS)
    assert state_of(world, plus(E, 7), "P")[1] == "churned"
    assert world["who"]["P"] not in group_of(world, plus(E, 7), "churned")  # only treatment feeds groups


def test_funnel_counts(world):
    rows = {r[0]: r[1:] for r in world["snap"][plus(E, 7)]["funnel"]}
    fl = rows["first_loan"]
    # entered, step_1, step_2, step_3, resp app/sms/wechat, churned, opted_out, control, rates
    assert fl[:10] == (5, 3, 3, 3, 0, 0, 1, 2, 1, 1)
    assert fl[10:] == (0.0, 0.0)  # goal: a loan transaction; none here
    assert rows["login_reactivation"][0] == 2


def test_fed_groups_have_stats_like_any_segment(world):
    stats = {r[0]: r[1:] for r in world["snap"][plus(E, 7)]["stats"] if r[0] in ("churned", "wechat_habit")}
    # Previous day present: E+3 (the days in between were derived, not published).
    assert stats["churned"] == ("marketing", 2, 1, 0)       # A entered today, C since E+3
    assert stats["wechat_habit"] == ("marketing", 1, 1, 0)  # B since E+5


def test_rerunning_or_replaying_a_day_gives_identical_tables(world):
    snap = world["snap"]
    for key, day in (("replay", plus(E, 3)), ("rerun", plus(E, 3))):
        for t in ("state", "actions", "funnel", "members", "stats"):
            assert snap[key][t] == snap[day][t], (key, t)
    assert snap["rerun"]["result"] == snap[plus(E, 3)]["result"]


def test_journey_config_checks():
    with pytest.raises(ConfigError, match="steps must be numbered"):
        check([Journey(code="j", name_zh="j", name_en="j", entry_segment="s",
                       steps=[Step(step=2, channels=["sms"])])])
    jc = load_journeys(default_conf_dir())
    fl = next(j for j in jc.journeys if j.code == "first_loan")
    assert fl.offsets == [0, 2, 4] and fl.on_not_opened.after_days == 3 and fl.control_share == 0.10
    assert [j.code for j in jc.journeys] == ["first_loan", "login_reactivation"]


def test_simulated_delivery_writes_contract_touch_rows(world, spark, tmp_path):
    wh = world["wh"]
    day, sent = plus(E, 3), plus(E, 4)  # C's login_reactivation step 2: sms and wechat
    rates = {"sms": 1.0, "wechat": 0.0, "app_push": 0.0}
    out = simulate_delivery(spark, wh, day, str(tmp_path / "landing"), rates, seed=7)
    assert out["sent"] == 2 and out["opened_same_day"] + out["opened_later"] == 1

    def read(landing):
        path = os.path.join(landing, "touch", f"dt={sent}", f"journey-{day}.csv")
        with open(path, encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    rows = read(str(tmp_path / "landing"))
    assert list(rows[0]) == ["touch_id", "campaign_id", "step", "channel", "target_source", "target_key",
                             "sent_time", "opened_time", "converted_time"]
    assert sorted((r["channel"], r["target_source"], r["target_key"], r["step"]) for r in rows) == [
        ("sms", "core_customer", "cC", "2"), ("wechat", "wechat_user", "wC", "2")]
    assert all(r["sent_time"].startswith(sent) and r["campaign_id"] == "login_reactivation" for r in rows)
    later = glob.glob(os.path.join(str(tmp_path / "landing"), "touch", "dt=*", f"journey-{day}-opens.csv"))
    reopened = [r for f in later for r in csv.DictReader(open(f, encoding="utf-8"))]
    opened = [r for r in rows if r["opened_time"]] + reopened
    assert [r["channel"] for r in opened] == ["sms"] and opened[0]["opened_time"] >= opened[0]["sent_time"]
    # Same seed, same files.
    assert simulate_delivery(spark, wh, day, str(tmp_path / "landing2"), rates, seed=7) == out
    assert read(str(tmp_path / "landing2")) == rows


def test_history_under_a_retired_one_id_follows_the_person(spark, warehouse):
    from kequn.identity.stable import LINEAGE_DDL
    from kequn.journeys import machine as J
    from kequn.segments.persons import current_ids

    lineage = spark.createDataFrame([(d("2026-03-01"), 20, 50, None, "merge"),
                                     (d("2026-03-01"), 60, None, 20, "split"),
                                     (d("2026-03-03"), 10, 20, None, "merge")], LINEAGE_DDL)
    warehouse.append(lineage, "gold.one_id_lineage", partition_by=("as_of",))
    history = spark.createDataFrame([(d("2026-02-27"), "seg", 50), (d("2026-03-02"), "seg", 20),
                                     (d("2026-03-02"), "seg", 10), (d("2026-03-02"), "seg", 7)],
                                    "as_of date, segment_code string, one_id bigint")
    ids = lambda day: sorted(r.one_id for r in current_ids(history, warehouse, day).collect())  # noqa: E731
    assert ids("2026-02-28") == [7, 10, 20, 50]     # no merge yet
    assert ids("2026-03-02") == [7, 10, 20, 20]     # 50 -> 20; the merge of 20 is a day later
    assert ids("2026-03-05") == [7, 10, 10, 10]     # 50 -> 20 -> 10
    entered = J.entry_days(current_ids(history, warehouse, "2026-03-05"), "seg", "2026-03-05")
    assert {r.one_id: r.entered_at for r in entered.collect()} == {10: d("2026-02-27"), 7: d("2026-03-02")}


def test_entries_carried_from_a_days_state_equal_those_read_from_every_day(spark):
    from chispa import assert_df_equality

    from kequn.journeys import machine as J

    days = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    history = spark.createDataFrame(
        [(d(days[0]), "seg", 1), (d(days[1]), "seg", 1), (d(days[1]), "seg", 2), (d(days[1]), "other", 5),
         (d(days[3]), "seg", 2), (d(days[3]), "seg", 3), (d(days[4]), "seg", 4), (d(days[4]), "seg", 1)],
        "as_of date, segment_code string, one_id bigint")
    known = J.entry_days(history, "seg", days[2])  # what the state of 2026-03-03 holds
    assert {r.one_id: r.entered_at for r in known.collect()} == {1: d(days[0]), 2: d(days[1])}
    recent = history.where(F.col("as_of") > F.lit(days[2]).cast("date"))
    assert_df_equality(J.entry_days(recent, "seg", days[4], known), J.entry_days(history, "seg", days[4]),
                       ignore_row_order=True)
