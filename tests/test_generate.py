"""The landing-data generator: contract layout, determinism, realism the rest of the product relies on.

No Spark: the generated CSV files are read back with pandas and the standard csv module.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
import time

import numpy as np
import pandas as pd
import pytest

from kequn.generate import generate
from kequn.generate._ids import KIOSK_DEVICE, STAFF_MOBILE, id_check_char
from kequn.landing import MASTER_SOURCES, SOURCES

END = "2026-11-25"
PERSONS = 1500
KEYS = {"core_customer": "cust_no", "card_account": "card_cust_id", "app_user": "app_user_id",
        "wechat_user": "openid"}


# ---------------------------------------------------------------- helpers
def load(root: str, source: str) -> pd.DataFrame:
    frames = []
    for f in sorted(glob.glob(os.path.join(root, source, "dt=*", "*.csv"))):
        d = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        d["_dt"] = f.split("dt=")[1][:10]
        d["_file"] = f
        frames.append(d)
    return pd.concat(frames, ignore_index=True)


def ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, format="ISO8601")


def norm_mobile(x) -> str | None:
    if not isinstance(x, str):
        return None
    x = re.sub(r"[\s-]", "", x)
    for p in ("+86", "0086", "86"):
        if x.startswith(p) and len(x) - len(p) == 11:
            x = x[len(p):]
            break
    return x if re.fullmatch(r"1[3-9]\d{9}", x) else None


def id_status(x) -> str:
    if not isinstance(x, str):
        return "null"
    if re.fullmatch(r"\d{15}", x):
        return "old15"
    if not re.fullmatch(r"\d{17}[\dXx]", x):
        return "other"
    c = id_check_char(x[:17])
    if x[17] == c:
        return "ok"
    if x[17] == "x" and c == "X":
        return "lower_x"
    return "bad_check"


def norm_id(x) -> str | None:
    st = id_status(x)
    if st in ("ok", "lower_x"):
        return x.upper()
    if st == "old15":
        b = x[:6] + "19" + x[6:]
        return b + id_check_char(b)
    return None


def norm_device(x) -> str | None:
    if not isinstance(x, str):
        return None
    x = x.strip().lower()
    return None if x in ("", "unknown", "null") or set(x) == {"0"} else x


def files_digest(root: str) -> str:
    h = hashlib.sha256()
    for f in sorted(glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)):
        h.update(os.path.relpath(f, root).encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("landing"))
    summary = generate(root, persons=PERSONS, days=20, seed=7, end=END)
    return root, summary


@pytest.fixture(scope="module")
def master(sample):
    root, _ = sample
    return {s: load(root, s) for s in MASTER_SOURCES}


@pytest.fixture(scope="module")
def truth(sample):
    root, _ = sample
    return pd.read_csv(os.path.join(root, "_truth", "records.csv"), dtype=str)


@pytest.fixture(scope="module")
def facts(sample):
    root, _ = sample
    return {s: load(root, s) for s in ("transaction", "event", "touch", "consent", "holding")}


def person_of(truth: pd.DataFrame, source: pd.Series, key: pd.Series) -> pd.Series:
    t = truth.set_index(truth["source"] + "|" + truth["source_key"])["person_id"]
    return (source + "|" + key).map(t)


# ---------------------------------------------------------------- layout and contract
def test_layout_and_headers_match_the_contract(sample):
    root, summary = sample
    days = pd.date_range(end=END, periods=20).strftime("%Y-%m-%d").tolist()
    boms = reordered = 0
    for s, src in SOURCES.items():
        dts = sorted(os.path.basename(p)[3:] for p in glob.glob(os.path.join(root, s, "dt=*")))
        assert dts == days, s
        n = 0
        for f in glob.glob(os.path.join(root, s, "dt=*", "*.csv")):
            raw = open(f, "rb").read()
            boms += raw.startswith(b"\xef\xbb\xbf")
            text = raw.decode("utf-8-sig")
            rows = list(csv.reader(text.splitlines()))
            header = rows[0]
            assert sorted(header) == sorted(src.column_names), (f, header)
            reordered += header != src.column_names
            assert all(len(r) == len(header) for r in rows[1:]), f
            n += len(rows) - 1
        assert n == summary[s], s
    assert boms > 0 and reordered > 0
    with open(os.path.join(root, "_truth", "records.csv"), encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["source", "source_key", "person_id"]


def test_quoting_round_trips_commas_and_quotes(facts, master):
    pages = set(facts["event"]["page"].dropna())
    assert any("," in p for p in pages) and any('"' in p for p in pages)
    assert master["card_account"]["name"].str.contains(",").any()
    assert master["core_customer"]["name"].str.contains(r"[\u4e00-\u9fff]").any()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = (str(tmp_path / x) for x in "abc")
    assert generate(a, 300, 5, seed=1) == generate(b, 300, 5, seed=1)
    generate(c, 300, 5, seed=2)
    assert files_digest(a) == files_digest(b)
    assert files_digest(a) != files_digest(c)


def test_thinner_density_keeps_the_delivered_days_and_master_data(tmp_path, sample, facts):
    root, summary = sample
    thin = str(tmp_path / "thin")
    got = generate(thin, persons=PERSONS, days=20, seed=7, end=END, holding_every=7, activity=0.25)
    assert files_digest(os.path.join(thin, "core_customer")) == files_digest(os.path.join(root, "core_customer"))
    assert got["app_user"] == summary["app_user"] and got["touch"] == summary["touch"]
    for s in ("transaction", "event"):   # planted need signals stay, so above a quarter
        assert 0.25 * summary[s] < got[s] < 0.5 * summary[s], (s, got[s], summary[s])

    cols = SOURCES["holding"].column_names
    h = load(thin, "holding")
    delivered = pd.date_range(end=END, periods=20)[::-1][::7].strftime("%Y-%m-%d")
    assert sorted(h["_dt"].unique()) == sorted(delivered)
    # every day still has its holding batch folder; the days between deliveries are empty
    assert len(glob.glob(os.path.join(thin, "holding", "dt=*"))) == 20
    daily = facts["holding"][facts["holding"]["_dt"].isin(delivered)]
    pd.testing.assert_frame_equal(h[cols].sort_values(cols).reset_index(drop=True),
                                  daily[cols].sort_values(cols).reset_index(drop=True))
    with pytest.raises(ValueError, match="holding_every"):
        generate(str(tmp_path / "bad"), persons=10, days=2, holding_every=0)


def test_small_sample_is_fast(tmp_path):
    t = time.monotonic()
    generate(str(tmp_path / "s"), persons=200, days=10)
    assert time.monotonic() - t < 5


def test_enumerations_within_the_contract(master, facts):
    frames = {**master, **facts}
    for s, df in frames.items():
        for c in SOURCES[s].columns:
            if c.enum:
                assert set(df[c.name].dropna()) <= set(c.enum), (s, c.name)
            if c.type == "timestamp":
                ts(df[c.name].dropna())
            if c.type == "date":
                pd.to_datetime(df[c.name].dropna(), format="%Y-%m-%d")
            if c.type == "decimal":
                assert df[c.name].dropna().str.fullmatch(r"-?\d+\.\d{2}").all(), (s, c.name)
    core = master["core_customer"]
    assert set(core["gender"]) == {"M", "F"}
    assert set(core["marital_status"]) == {"single", "married", "divorced", "widowed"}
    assert {"教师", "医生", "工程师", "公务员", "个体户", "学生", "退休", "企业主", "其他"} <= set(core["occupation"])
    ages = (pd.Timestamp(END) - pd.to_datetime(core["birth_date"])).dt.days / 365.25
    assert ages.min() >= 18 and ages.max() < 81
    tx = facts["transaction"]
    assert {"education", "mother_baby", "luxury", "travel", "catering", "supermarket", "medical", "real_estate",
            "auto", "other"} <= set(tx["category"])
    prefixes = set(tx["product_code"].dropna().str[:2])
    assert prefixes == {"WM", "FD", "IN", "LN"}
    share = tx["product_code"].notna().mean()
    assert 0.015 < share < 0.06
    kws = set(facts["event"]["keyword"].dropna())
    assert {"教育金", "房贷", "理财", "基金", "信用卡", "车贷", "养老"} <= kws
    assert set(facts["event"]["event_type"]) == set(SOURCES["event"].column("event_type").enum)
    assert set(facts["holding"]["product_type"]) == set(SOURCES["holding"].column("product_type").enum)


def test_master_versions_and_batches(master):
    for s, df in master.items():
        upd = ts(df["updated_at"]).dt.strftime("%Y-%m-%d")
        assert (upd == df["_dt"]).all(), s  # updated_at inside the batch's day
        first = (df.groupby(KEYS[s])["_dt"].min() == df["_dt"].min()).mean()
        assert first > 0.9, s  # most records come with the first batch
        redelivered = df[KEYS[s]].duplicated(keep=False)
        assert 0.05 < redelivered.mean() < 0.5, s
        assert df.loc[df["_dt"] > df["_dt"].min(), KEYS[s]].nunique() > 0
    app = master["app_user"].sort_values("updated_at")
    last = app.groupby("app_user_id").tail(1)
    had = app.groupby("app_user_id")["cust_no"].apply(lambda x: x.notna().any())
    unbound = last[last["cust_no"].isna() & last["app_user_id"].map(had)]
    assert len(unbound) > 0  # a binding removed by a later delivery
    # a new record appears after the first batch
    firsts = pd.concat([df.groupby(KEYS[s])["_dt"].min() for s, df in master.items()])
    assert (firsts > firsts.min()).sum() > 10


def test_fact_batches_late_duplicates_and_history(facts):
    first = pd.Timestamp(END) - pd.Timedelta(days=19)
    for s, key, tcol in (("transaction", ["txn_id"], "txn_time"), ("event", ["event_id"], "event_time"),
                         ("consent", ["source", "source_key", "purpose", "event_time"], "event_time")):
        df = facts[s].copy()
        df[tcol] = ts(df[tcol])  # files differ in timestamp style (space or T)
        day = df[tcol].dt.normalize()
        dt = pd.to_datetime(df["_dt"])
        expected = day.clip(lower=first)
        assert (dt >= expected).all(), s
        late = (dt == expected + pd.Timedelta(days=1))
        dup = df.duplicated(key, keep="first")
        assert late.sum() > 0, s
        assert dup.sum() > 0, s
        assert (late | dup | (dt == expected)).all(), s
        pairs = df[dup].merge(df[~dup], on=key)
        assert (pairs["_dt_x"] > pairs["_dt_y"]).all(), s  # the second delivery is in a later batch
    tx = facts["transaction"]
    old = ts(tx["txn_time"]) < first - pd.Timedelta(days=170)
    assert old.sum() > 0 and (tx.loc[old, "_dt"] == first.strftime("%Y-%m-%d")).mean() > 0.95  # late ones aside
    # at least 30 fact rows a person over 90 days (events, transactions, touches, consents)
    n90 = sum(len(facts[s]) for s in ("transaction", "event", "touch", "consent")) / PERSONS * 90 / 220
    assert n90 >= 30


def test_id_numbers_check_digits(master, truth):
    core = master["core_customer"].drop_duplicates("cust_no")
    card = master["card_account"].drop_duplicates("card_cust_id")
    st = pd.concat([core.loc[core["id_type"] == "ID_CARD", "id_no"], card["id_no"]]).map(id_status)
    share = st.value_counts(normalize=True)
    assert share["ok"] > 0.75
    assert 0.01 < share["bad_check"] < 0.08  # known-invalid share
    assert share["lower_x"] > 0 and share["old15"] > 0
    assert (share.get("other", 0)) == 0
    assert core["id_no"].dropna().str.endswith("X").any()  # upper-case X check characters too
    # normalised numbers (15 -> 18 digits, upper-case X) agree within a person and differ between persons
    ids = pd.concat([core.loc[core["id_type"] == "ID_CARD", ["cust_no", "id_no"]]
                     .rename(columns={"cust_no": "k"}).assign(s="core_customer"),
                     card[["card_cust_id", "id_no"]].rename(columns={"card_cust_id": "k"}).assign(s="card_account")])
    ids["n"] = ids["id_no"].map(norm_id)
    ids["p"] = person_of(truth, ids["s"], ids["k"])
    ids = ids.dropna(subset=["n"])
    assert (ids.groupby("n")["p"].nunique() == 1).all()
    both = ids.groupby("p").filter(lambda g: len(g) == 2 and (g["id_no"].str.len() == 15).any())
    assert len(both) > 0 and (both.groupby("p")["n"].nunique() == 1).all()


def test_dirty_identifiers(master):
    allm = pd.concat([df["mobile"] for df in master.values()]).dropna()
    assert allm.str.startswith("+86").any() and allm.str.startswith("0086").any()
    assert allm.str.contains(" ").any() and allm.str.contains("-").any()
    assert (allm.map(norm_mobile).isna()).sum() > 0  # invalid mobiles (10 digits, 12...)
    assert allm.str.fullmatch(r"\d{10}").any() and allm.str.match(r"12\d{9}$").any()
    dev = master["app_user"]["device_id"]
    assert dev.isna().any()
    assert {"0000000000000000", "unknown", "null"} <= set(dev.dropna())
    assert dev.dropna().str.match(r"^[0-9A-F]{16}$").any() and dev.dropna().str.startswith(" ").any()


def test_shared_points_exceed_limits(tmp_path, master):
    def degrees(m):
        mob = pd.concat([m[s][[KEYS[s], "mobile"]].assign(src=s).rename(columns={KEYS[s]: "key"})
                         for s in ("core_customer", "card_account")])
        mob["n"] = mob["mobile"].map(norm_mobile)
        staff = mob[mob["n"] == str(STAFF_MOBILE)].drop_duplicates(["src", "key"])
        app = m["app_user"]
        kiosk = app[app["device_id"].map(norm_device) == KIOSK_DEVICE]["app_user_id"].nunique()
        return len(staff), kiosk

    s, k = degrees(master)
    assert s > 10 and k > 10
    root = str(tmp_path / "tiny")
    generate(root, persons=200, days=10)
    s, k = degrees({x: load(root, x) for x in MASTER_SOURCES})
    assert s >= 12 and k >= 12


def test_truth_covers_every_master_record_once(master, truth):
    assert not truth.duplicated(["source", "source_key"]).any()
    got = set()
    for s, df in master.items():
        got |= {(s, k) for k in df[KEYS[s]].unique()}
    assert got == set(zip(truth["source"], truth["source_key"]))
    per = truth.groupby("person_id").size()
    assert per.min() >= 1 and per.max() <= 4
    assert (per == 1).any() and (per == 4).any()
    assert truth["person_id"].nunique() == PERSONS


def test_records_link_only_through_identifiers(master, truth):
    """Union-find over normalised identifiers (shared points excluded) recovers most persons, not all."""
    latest = {s: df.sort_values("updated_at").groupby(KEYS[s]).tail(1) for s, df in master.items()}
    nodes = pd.concat([pd.DataFrame({"n": s + "|" + df[KEYS[s]]}) for s, df in latest.items()])["n"].tolist()
    idx = {n: i for i, n in enumerate(nodes)}
    parent = list(range(len(nodes)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = []
    for s, df in latest.items():
        me = (s + "|" + df[KEYS[s]]).map(idx)
        edges.append(pd.DataFrame({"r": me, "v": "m:" + df["mobile"].map(norm_mobile)}))
        if s == "core_customer":
            ok = df["id_type"] == "ID_CARD"
            edges.append(pd.DataFrame({"r": me[ok], "v": "i:" + df.loc[ok, "id_no"].map(norm_id)}))
            edges.append(pd.DataFrame({"r": me, "v": "c:" + df["cust_no"]}))
        if s == "card_account":
            edges.append(pd.DataFrame({"r": me, "v": "i:" + df["id_no"].map(norm_id)}))
        if s == "app_user":
            edges.append(pd.DataFrame({"r": me, "v": "d:" + df["device_id"].map(norm_device)}))
            edges.append(pd.DataFrame({"r": me, "v": "c:" + df["cust_no"]}))
        if s == "wechat_user":
            edges.append(pd.DataFrame({"r": me, "v": "u:" + df["unionid"]}))
    e = pd.concat(edges).dropna()
    deg = e.groupby("v")["r"].nunique()
    e = e[e["v"].map(deg) <= 5]
    for _, g in e.groupby("v")["r"]:
        rs = g.tolist()
        for r in rs[1:]:
            a, b = find(rs[0]), find(r)
            if a != b:
                parent[a] = b
    t = truth.assign(n=truth["source"] + "|" + truth["source_key"])
    t["comp"] = t["n"].map(lambda n: find(idx[n]))
    multi = t[t.groupby("person_id")["n"].transform("size") > 1]
    whole = multi.groupby("person_id")["comp"].nunique() == 1
    assert 0.6 < whole.mean() < 0.995  # mostly linkable, some persons stay split
    merged = t.groupby("comp")["person_id"].nunique()
    assert (merged == 1).mean() > 0.99  # identifiers never wrongly join persons (shared points aside)
    alone = t.groupby("comp").size() == 1
    assert alone.sum() > 0  # records with no usable identifier
    # names are not links: the same person is spelled differently, different persons share names
    names = pd.concat([latest[s][[KEYS[s], "name"]].rename(columns={KEYS[s]: "k"}).assign(s=s)
                       for s in ("core_customer", "card_account")])
    names["p"] = person_of(truth, names["s"], names["k"])
    assert (names.groupby("p")["name"].nunique() > 1).any()
    assert (names.drop_duplicates("p").groupby("name")["p"].nunique() > 1).any()


def test_touches_target_a_receiving_record_and_opens_are_redelivered(facts, master, truth):
    to = facts["touch"]
    assert set(to.loc[to["channel"] == "app_push", "target_source"]) == {"app_user"}
    assert set(to.loc[to["channel"] == "wechat", "target_source"]) == {"wechat_user"}
    sms = to[to["channel"] == "sms"]
    mob = pd.concat([df[[KEYS[s], "mobile"]].rename(columns={KEYS[s]: "k"}).assign(s=s) for s, df in master.items()])
    ok = set((mob["s"] + "|" + mob["k"])[mob["mobile"].map(norm_mobile).notna()])
    assert (sms["target_source"] + "|" + sms["target_key"]).isin(ok).all()
    assert person_of(truth, to["target_source"], to["target_key"]).notna().all()
    g = to.groupby("touch_id")
    twice = to[to["touch_id"].map(g.size()) > 1].sort_values(["touch_id", "_dt"])
    re_open = twice.groupby("touch_id").agg(first=("opened_time", lambda x: x.iloc[0]),
                                            last=("opened_time", lambda x: x.iloc[-1]))
    assert (re_open["first"].isna() & re_open["last"].notna()).sum() > 0
    opened = to.dropna(subset=["opened_time"])
    assert (ts(opened["opened_time"]).dt.strftime("%Y-%m-%d") <= opened["_dt"]).all()
    assert set(opened["channel"]) == {"app_push", "sms", "wechat"}


def test_consents_and_tiers(facts):
    co = facts["consent"]
    assert set(co["purpose"]) == {"marketing", "profiling"}
    revoked = co[(co["purpose"] == "marketing") & (co["granted"] == "false")]
    granted = co[(co["purpose"] == "marketing") & (co["granted"] == "true")]
    assert 0.005 < len(revoked) / len(granted) < 0.05
    ho = facts["holding"]
    assert ho.groupby("_dt")["snapshot_date"].agg(lambda x: set(x)).map(len).eq(1).all()
    assert (ho["_dt"] == ho["snapshot_date"]).all()
    last = ho[(ho["snapshot_date"] == END) & ho["product_type"].isin(
        ["demand_deposit", "time_deposit", "wealth", "fund", "insurance"])]
    aum = last.assign(b=last["balance"].astype(float)).groupby("source_key")["b"].sum()
    tiers = pd.cut(aum, [-1, 50_000, 500_000, 6_000_000, np.inf], right=False,
                   labels=["mass", "gold", "platinum", "private"]).value_counts()
    assert (tiers > 0).all() and tiers["mass"] > tiers["gold"] > tiers["platinum"] > tiers["private"]


def test_needs_are_learnable(facts, truth):
    tx, ev = facts["transaction"], facts["event"]
    tx = tx.assign(p=person_of(truth, tx["source"].map({"core": "core_customer", "card": "card_account"}),
                               tx["source_key"]))
    ev = ev.assign(p=person_of(truth, ev["source"].map({"app": "app_user", "web": "app_user",
                                                        "official_account": "wechat_user",
                                                        "mini_program": "wechat_user"}), ev["user_key"]))
    n = truth["person_id"].nunique()
    code = tx["product_code"].fillna("")
    edu_buyers = set(tx.loc[code.str.match(r"^(IN|WM)") & (tx["category"] == "education"), "p"])
    house_buyers = set(tx.loc[code.str.startswith("LN") & (tx["category"] == "real_estate"), "p"])
    for buyers, kw, cat in ((edu_buyers, "教育金", "education"), (house_buyers, "房贷", "real_estate")):
        base = len(buyers) / n
        searched = set(ev.loc[ev["keyword"] == kw, "p"])
        spent = set(tx.loc[(tx["category"] == cat) & (code == ""), "p"])
        assert 0.005 < base < 0.2
        assert len(buyers & searched) / len(searched) > 3 * base, kw
        assert len(buyers & spent) / len(spent) > 2 * base, cat
    # first purchase (exactly one product transaction, in the last 90 days) and repeat purchase
    prod = tx[code != ""].groupby("p").agg(n=("txn_id", "nunique"), t=("txn_time", "max"))
    first = prod[(prod["n"] == 1) & (ts(prod["t"]) > pd.Timestamp(END) - pd.Timedelta(days=90))]
    assert len(first) > 0.03 * n
    assert (prod["n"] >= 3).sum() > 0.03 * n
