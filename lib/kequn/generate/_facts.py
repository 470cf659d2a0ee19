"""Facts of a chunk of persons: transactions, events, touches, consents (numeric arrays) and holdings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._persons import PROD_FIRST, PROD_REPEAT, Persons
from ._util import DAY, cents_str, keys, repeat_idx, stream, take, times_in

CHANNELS = ["branch", "atm", "app", "web", "wechat", "pos", "online"]
CATEGORIES = ["catering", "supermarket", "other", "travel", "medical", "mother_baby", "education", "luxury", "auto",
              "real_estate"]
CAT = {c: i for i, c in enumerate(CATEGORIES)}
CAT_W = [0.30, 0.26, 0.19, 0.04, 0.06, 0.04, 0.012, 0.015, 0.02, 0.004]
CAT_AMT = {"catering": (4.3, 0.7), "supermarket": (5.0, 0.8), "other": (5.2, 1.2), "travel": (7.6, 0.8),
           "medical": (5.8, 1.0), "mother_baby": (5.6, 0.8), "education": (8.3, 0.7), "luxury": (9.0, 0.7),
           "auto": (8.0, 1.5), "real_estate": (9.5, 1.0)}
_AMT_MU = np.array([CAT_AMT[c][0] for c in CATEGORIES])
_AMT_SD = np.array([CAT_AMT[c][1] for c in CATEGORIES])

PRODUCTS = ([f"WM{i:04d}" for i in range(1, 21)] + [f"FD{i:04d}" for i in range(1, 31)]
            + [f"IN{i:04d}" for i in range(1, 11)] + [f"LN{i:04d}" for i in range(1, 11)])
PROD_GENERIC = {p: [i for i, c in enumerate(PRODUCTS) if c.startswith(p)] for p in ("WM", "FD", "IN", "LN")}
EDU_PRODUCTS = list(range(len(PRODUCTS), len(PRODUCTS) + 7))
PRODUCTS += [f"IN{i:04d}" for i in range(301, 305)] + [f"WM{i:04d}" for i in range(301, 304)]
MORTGAGE_PRODUCTS = list(range(len(PRODUCTS), len(PRODUCTS) + 4))
PRODUCTS += [f"LN{i:04d}" for i in range(101, 105)]

EVENT_SOURCES = ["app", "web", "official_account", "mini_program"]
EVENT_TYPES = ["login", "page_view", "search", "like", "comment", "share", "click"]
ET_APP_W = [0.14, 0.42, 0.12, 0.05, 0.03, 0.08, 0.16]
ET_WX_W = [0.0, 0.50, 0.10, 0.10, 0.04, 0.08, 0.18]
PAGES = ["首页", "理财频道", "基金详情", "信用卡申请", "贷款计算器", "我的账户", "转账", "活动中心,精选推荐", "养老金专区",
         "教育金专区", "房贷计算器", "生活缴费", '产品"稳盈"详情', "搜索",
         "公众号首页", "每日财经", "积分商城", "小程序首页", "理财产品列表,按收益排序", "信用卡权益", "网点预约"]
APP_PAGES = list(range(0, 13))
WX_PAGES = list(range(14, 21))
PAGE_SEARCH = PAGES.index("搜索")
KEYWORDS = ["理财", "基金", "信用卡", "车贷", "养老", "存款利率", "转账限额", "积分兑换", "保险", "大额存单", "教育金", "房贷",
            "手机银行 登录", "外汇,美元"]
KW_W = [0.16, 0.14, 0.14, 0.06, 0.07, 0.10, 0.07, 0.07, 0.08, 0.07, 0.008, 0.008, 0.02, 0.02]
KW_EDU, KW_HOUSE = KEYWORDS.index("教育金"), KEYWORDS.index("房贷")

CAMPAIGNS = ["CMP_WEALTH_Q3", "CMP_CARD_UPGRADE", "CMP_EDU_SAVER", "CMP_MORTGAGE_RATE", "CMP_PENSION",
             "CMP_APP_ACTIVE"]
TOUCH_CHANNELS = ["app_push", "sms", "wechat"]
MASTER_ORDER = ["core_customer", "card_account", "app_user", "wechat_user"]
PRODUCT_TYPES = ["demand_deposit", "time_deposit", "wealth", "fund", "insurance", "mortgage", "consumer_loan"]

UNSET = np.iinfo(np.int64).min  # "no time" (relative times are negative in the backfilled history)
LATE_SHARE = 0.01
DUP_SHARE = 0.005


@dataclass
class Links:
    """Per local person: record index in each master source (-1 when none), keys and flags."""
    core: np.ndarray
    card: np.ndarray
    app: np.ndarray
    oa: np.ndarray
    mp: np.ndarray
    core_create: np.ndarray      # per core record
    card_create: np.ndarray
    app_create: np.ndarray
    wx_create: np.ndarray
    master_keys: pa.Array        # core, card, app, wechat keys concatenated
    offsets: dict                # source -> offset into master_keys
    sms_ok: dict                 # source -> bool per record
    device_clean: pa.Array       # per app record


def _deliver(rng, dt: np.ndarray, days: int):
    """Rows and their batch index: most on time, a few a day late, a few twice."""
    n = len(dt)
    dt = dt.copy()
    late = (rng.random(n) < LATE_SHARE) & (dt + 1 < days)
    dt[late] += 1
    dup = np.flatnonzero((rng.random(n) < DUP_SHARE) & (dt + 1 < days))
    dup_dt = np.minimum(dt[dup] + rng.integers(1, 4, len(dup)), days - 1)
    rows = np.concatenate([np.arange(n), dup])
    return rows, np.concatenate([dt, dup_dt])


def _g(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """arr[idx] where idx may be out of range (those positions are masked by the caller)."""
    if len(arr) == 0:
        return np.zeros(len(idx), dtype=arr.dtype)
    return arr[np.clip(idx, 0, len(arr) - 1)]


def _batch_of(t: np.ndarray) -> np.ndarray:
    return np.maximum(t, 0) // DAY


# ---------------------------------------------------------------- transactions
def transactions(P: Persons, L: Links, seed: int, chunk: int, t_start: int, t_end: int, days: int,
                 activity: float = 1.0) -> dict:
    rng = stream(seed, "txn", chunk)
    n = len(P)
    span = (t_end - t_start) / DAY
    has_c, has_k = L.core >= 0, L.card >= 0
    elig = (has_c | has_k) & ~P.dormant
    cnt = rng.poisson(0.16 * activity * span * P.txn_mult * elig)
    own = repeat_idx(cnt)
    m = len(own)
    t = times_in(rng, np.full(m, t_start), np.full(m, t_end))
    use_card = np.where(has_c[own] & has_k[own], rng.random(m) < 0.55, has_k[own])
    credit = rng.random(m) < 0.18
    cat = rng.choice(len(CATEGORIES), size=m, p=np.array(CAT_W) / sum(CAT_W))
    u = rng.random(m)
    cat = np.where(P.children[own] & (u < 0.12), CAT["mother_baby"], cat)
    cat = np.where((P.tier[own] >= 2) & (u >= 0.12) & (u < 0.18), CAT["luxury"], cat)
    cat = np.where((P.tier[own] >= 2) & (u >= 0.18) & (u < 0.24), CAT["travel"], cat)
    cat = np.where(credit, CAT["other"], cat)
    ch_core = rng.choice(7, size=m, p=[0.06, 0.10, 0.34, 0.07, 0.15, 0.18, 0.10])
    ch_card = rng.choice([5, 6, 2], size=m, p=[0.60, 0.35, 0.05])
    ch_cred = rng.choice([0, 6, 2], size=m, p=[0.2, 0.5, 0.3])
    chan = np.where(use_card, ch_card, ch_core)
    chan = np.where(credit, np.where(use_card, 6, ch_cred), chan)
    prod = np.full(m, -1)
    parts = [dict(own=own, t=t, card=use_card, credit=credit, cat=cat, chan=chan, prod=prod)]

    # dormant but wealthy: interest credits only
    dcnt = rng.poisson(0.03 * span * (P.dormant & has_c))
    down = repeat_idx(dcnt)
    k = len(down)
    parts.append(dict(own=down, t=times_in(rng, np.full(k, t_start), np.full(k, t_end)), card=np.zeros(k, bool),
                      credit=np.ones(k, bool), cat=np.full(k, CAT["other"]), chan=np.full(k, 6), prod=np.full(k, -1)))

    # planted need signals: spending in education / real estate before a purchase
    for interest, buy, tb, catname in ((P.edu_interest, P.edu_buy, P.t_edu, "education"),
                                       (P.house_interest, P.house_buy, P.t_house, "real_estate")):
        scnt = 1 + rng.poisson(1.3, n)
        scnt = scnt * (interest & (has_c | has_k))
        so = repeat_idx(scnt)
        k = len(so)
        lo = np.where(buy[so], np.maximum(tb[so] - 60 * DAY, t_start), t_start)
        hi = np.where(buy[so], np.maximum(tb[so] - DAY, lo + 1), t_end)
        parts.append(dict(own=so, t=times_in(rng, lo, hi), card=np.where(has_c[so] & has_k[so], rng.random(k) < 0.4,
                                                                        has_k[so]),
                          credit=np.zeros(k, bool), cat=np.full(k, CAT[catname]),
                          chan=rng.choice([0, 2, 5, 6], size=k), prod=np.full(k, -1)))

    # bank products: generic purchases, first purchases, planted need purchases
    nsig = P.edu_buy.astype(np.int64) + P.house_buy
    want = np.where(P.prod_class == PROD_FIRST, 1, np.where(P.prod_class == PROD_REPEAT, 2 + rng.poisson(2.0, n), 0))
    gcnt = np.maximum(want - nsig, 0) * has_c
    go = repeat_idx(gcnt)
    k = len(go)
    last90 = max(t_start, t_end - 90 * DAY)
    lo = np.where(P.prod_class[go] == PROD_FIRST, last90, t_start)
    pref = rng.choice(4, size=k, p=[0.35, 0.35, 0.2, 0.1])
    code = np.select([pref == i for i in range(4)],
                     [rng.choice(PROD_GENERIC[p], size=k) for p in ("WM", "FD", "IN", "LN")])
    parts.append(dict(own=go, t=times_in(rng, lo, np.full(k, t_end)), card=np.zeros(k, bool), credit=pref == 3,
                      cat=np.full(k, CAT["other"]), chan=rng.choice([0, 2, 3], size=k, p=[0.3, 0.5, 0.2]),
                      prod=code))
    for buy, tb, codes, catname, credit_ in ((P.edu_buy, P.t_edu, EDU_PRODUCTS, "education", False),
                                             (P.house_buy, P.t_house, MORTGAGE_PRODUCTS, "real_estate", True)):
        bo = np.flatnonzero(buy & has_c)
        k = len(bo)
        parts.append(dict(own=bo, t=tb[bo], card=np.zeros(k, bool), credit=np.full(k, credit_),
                          cat=np.full(k, CAT[catname]), chan=rng.choice([0, 2], size=k), prod=rng.choice(codes, size=k)))

    f = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    own = f["own"]
    rec = np.where(f["card"], L.card[own], L.core[own])
    created = np.where(f["card"], _g(L.card_create, rec), _g(L.core_create, rec))
    keep = (rec >= 0) & (f["t"] >= created) & (f["t"] >= t_start) & (f["t"] < t_end)
    f = {key: v[keep] for key, v in f.items()}
    rec = rec[keep]
    m = len(rec)
    cat = f["cat"]
    cents = np.exp(rng.normal(_AMT_MU[cat], _AMT_SD[cat])) * 100
    prod = f["prod"]
    is_prod = prod >= 0
    pc_ = np.array([c[:2] for c in PRODUCTS])[np.maximum(prod, 0)]
    pamt = np.select([pc_ == "WM", pc_ == "FD", pc_ == "IN"],
                     [np.exp(rng.normal(11.0, 1.0, m)), np.exp(rng.normal(10.0, 1.0, m)),
                      np.exp(rng.normal(9.2, 0.7, m))], np.exp(rng.normal(11.5, 0.8, m)))
    mort = np.isin(prod, MORTGAGE_PRODUCTS)
    pamt = np.where(mort, rng.uniform(300_000, 3_000_000, m), pamt)
    cents = np.where(is_prod, pamt * 100, cents)
    cents = np.where(is_prod, np.round(cents / 100_000) * 100_000, np.round(cents)).astype(np.int64)
    cents = np.maximum(cents, 1)
    order = np.argsort(f["t"], kind="stable")
    cols = dict(src=f["card"].astype(np.int8)[order], rec=rec[order], t=f["t"][order], cents=cents[order],
                credit=f["credit"][order], chan=f["chan"].astype(np.int8)[order], cat=cat.astype(np.int8)[order],
                prod=prod.astype(np.int32)[order], own=f["own"][order])
    rows, dt = _deliver(rng, _batch_of(cols["t"]), days)
    return dict(cols=cols, rows=rows, dt=dt)


def render_transactions(c: dict, rows: np.ndarray, id_base: int, L: Links, t0: int) -> pa.Table:
    src = c["src"][rows]
    rec = c["rec"][rows]
    key_idx = np.where(src == 1, rec + L.offsets["card_account"], rec + L.offsets["core_customer"])
    prod = c["prod"][rows]
    return pa.table({
        "txn_id": keys("T", id_base + rows, 12),
        "source": take(pa.array(["core", "card"]), src),
        "source_key": take(L.master_keys, key_idx),
        "txn_time": pa.array(c["t"][rows] + t0, pa.timestamp("s")),
        "amount": cents_str(c["cents"][rows]),
        "direction": take(pa.array(["debit", "credit"]), c["credit"][rows].astype(np.int64)),
        "channel": take(pa.array(CHANNELS), c["chan"][rows]),
        "category": take(pa.array(CATEGORIES), c["cat"][rows]),
        "product_code": pc.take(pa.array(PRODUCTS), pa.array(np.maximum(prod, 0).astype(np.int64), mask=prod < 0)),
    })


# ---------------------------------------------------------------- events
def events(P: Persons, L: Links, seed: int, chunk: int, t_start: int, t_end: int, days: int,
           activity: float = 1.0) -> dict:
    rng = stream(seed, "evt", chunk)
    n = len(P)
    span = (t_end - t_start) / DAY
    w = np.stack([(L.app >= 0) * 0.62, (L.app >= 0) * 0.13, (L.oa >= 0) * 0.12, (L.mp >= 0) * 0.22], axis=1)
    tot = w.sum(axis=1)
    elig = (tot > 0) & ~P.dormant
    cum = np.cumsum(w, axis=1) / np.where(tot > 0, tot, 1)[:, None]
    cnt = rng.poisson(0.24 * activity * span * P.evt_mult * elig)
    own = repeat_idx(cnt)
    m = len(own)
    t = times_in(rng, np.full(m, t_start), np.full(m, t_end))
    parts = [dict(own=own, t=t, kw=np.full(m, -1), sig=np.zeros(m, bool))]
    for interest, buy, tb, kwi in ((P.edu_interest, P.edu_buy, P.t_edu, KW_EDU),
                                   (P.house_interest, P.house_buy, P.t_house, KW_HOUSE)):
        scnt = (1 + rng.poisson(2.0, n)) * (interest & (tot > 0))
        so = repeat_idx(scnt)
        k = len(so)
        lo = np.where(buy[so], np.maximum(tb[so] - 60 * DAY, t_start), t_start)
        hi = np.where(buy[so], np.maximum(tb[so] - DAY, lo + 1), t_end)
        parts.append(dict(own=so, t=times_in(rng, lo, hi), kw=np.full(k, kwi), sig=np.ones(k, bool)))
    f = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    own = f["own"]
    m = len(own)
    src = (rng.random(m)[:, None] > cum[own]).sum(axis=1).clip(0, 3)
    is_app = src <= 1
    et_app = rng.choice(7, size=m, p=ET_APP_W)
    et_wx = rng.choice(7, size=m, p=ET_WX_W)
    et = np.where(f["sig"], 2, np.where(is_app, et_app, et_wx))
    kw = np.where(f["sig"], f["kw"], np.where(et == 2, rng.choice(len(KEYWORDS), size=m, p=np.array(KW_W) / sum(KW_W)), -1))
    page = np.where(is_app, rng.choice(APP_PAGES, size=m), rng.choice(WX_PAGES, size=m))
    page = np.where(et == 2, PAGE_SEARCH, page)
    page = np.where(et == 0, -1, page)
    rec = np.select([src == 0, src == 1, src == 2], [L.app[own], L.app[own], L.oa[own]], L.mp[own])
    created = np.where(is_app, _g(L.app_create, rec), _g(L.wx_create, rec))
    keep = (rec >= 0) & (f["t"] >= created) & (f["t"] < t_end)
    order = np.flatnonzero(keep)
    order = order[np.argsort(f["t"][order], kind="stable")]
    cols = dict(src=src[order].astype(np.int8), rec=rec[order], t=f["t"][order], et=et[order].astype(np.int8),
                page=page[order].astype(np.int16), kw=kw[order].astype(np.int16), own=own[order])
    rows, dt = _deliver(rng, _batch_of(cols["t"]), days)
    return dict(cols=cols, rows=rows, dt=dt)


def render_events(c: dict, rows: np.ndarray, id_base: int, L: Links, t0: int) -> pa.Table:
    src = c["src"][rows]
    rec = c["rec"][rows]
    is_app = src <= 1
    key_idx = np.where(is_app, rec + L.offsets["app_user"], rec + L.offsets["wechat_user"])
    dev = pc.take(L.device_clean, pa.array(np.where(src == 0, rec, 0), mask=src != 0))
    page, kw = c["page"][rows], c["kw"][rows]
    return pa.table({
        "event_id": keys("E", id_base + rows, 12),
        "source": take(pa.array(EVENT_SOURCES), src),
        "user_key": take(L.master_keys, key_idx),
        "device_id": dev,
        "event_time": pa.array(c["t"][rows] + t0, pa.timestamp("s")),
        "event_type": take(pa.array(EVENT_TYPES), c["et"][rows]),
        "page": pc.take(pa.array(PAGES), pa.array(np.maximum(page, 0).astype(np.int64), mask=page < 0)),
        "keyword": pc.take(pa.array(KEYWORDS), pa.array(np.maximum(kw, 0).astype(np.int64), mask=kw < 0)),
    })


# ---------------------------------------------------------------- touches
def touches(P: Persons, L: Links, seed: int, chunk: int, t_start: int, t_end: int, days: int) -> dict:
    rng = stream(seed, "touch", chunk)
    n = len(P)
    span = (t_end - t_start) / DAY
    # sms target: one record of the person with a valid personal mobile
    cand = np.full((n, 4), -1, dtype=np.int64)
    for j, (src, recs) in enumerate((("core_customer", L.core), ("card_account", L.card), ("app_user", L.app),
                                     ("wechat_user", np.where(L.oa >= 0, L.oa, L.mp)))):
        ok = recs >= 0
        ok[ok] = L.sms_ok[src][recs[ok]]
        cand[:, j] = np.where(ok, recs + L.offsets[src], -1)
    ncand = (cand >= 0).sum(axis=1)
    srt = np.sort(np.where(cand >= 0, cand, np.iinfo(np.int64).max), axis=1)
    sms_t = srt[np.arange(n), (rng.random(n) * np.maximum(ncand, 1)).astype(np.int64).clip(0, 3)]
    wx_rec = np.where((L.oa >= 0) & ((L.mp < 0) | (rng.random(n) < 0.5)), L.oa, L.mp)
    w = np.stack([(L.app >= 0) * 0.5, (ncand > 0) * 0.2, (wx_rec >= 0) * 0.3], axis=1)
    tot = w.sum(axis=1)
    cum = np.cumsum(w, axis=1) / np.where(tot > 0, tot, 1)[:, None]
    cnt = rng.poisson(1.6 / 90 * span * (tot > 0))
    own = repeat_idx(cnt)
    m = len(own)
    chan = (rng.random(m)[:, None] > cum[own]).sum(axis=1).clip(0, 2)
    tgt = np.select([chan == 0, chan == 1], [L.app[own] + L.offsets["app_user"], sms_t[own]],
                    wx_rec[own] + L.offsets["wechat_user"])
    tsrc = np.searchsorted(np.array([L.offsets[s] for s in MASTER_ORDER]), tgt, side="right") - 1
    sday = rng.integers(t_start // DAY, t_end // DAY, m) * DAY
    sent = sday + rng.integers(9 * 3600, 20 * 3600, m)
    created = np.select([tsrc == 0, tsrc == 1, tsrc == 2],
                        [_g(L.core_create, tgt - L.offsets["core_customer"]),
                         _g(L.card_create, tgt - L.offsets["card_account"]),
                         _g(L.app_create, tgt - L.offsets["app_user"])],
                        _g(L.wx_create, tgt - L.offsets["wechat_user"]))
    keep = sent >= created
    own, chan, tgt, tsrc, sent = own[keep], chan[keep], tgt[keep], tsrc[keep], sent[keep]
    m = len(own)
    p_open = np.array([0.25, 0.07, 0.18])[chan] * np.where(P.dormant[own], 0.15, 1.0)
    opened = rng.random(m) < p_open
    lag = rng.choice(4, size=m, p=[0.6, 0.25, 0.1, 0.05])
    sday = (sent // DAY) * DAY
    o_t = np.where(lag == 0, sent + (rng.random(m) * (sday + DAY - 1 - sent)).astype(np.int64),
                   sday + lag * DAY + rng.integers(7 * 3600, 23 * 3600, m))
    opened &= o_t < t_end
    conv = opened & (rng.random(m) < 0.15)
    oday = (o_t // DAY) * DAY
    c_t = np.where(conv, o_t + (rng.random(m) * (oday + DAY - 1 - o_t)).astype(np.int64), UNSET)
    o_t = np.where(opened, o_t, UNSET)
    camp = rng.integers(0, len(CAMPAIGNS), m)
    step = rng.choice([1, 2, 3], size=m, p=[0.6, 0.3, 0.1])
    order = np.argsort(sent, kind="stable")
    cols = dict(camp=camp[order].astype(np.int8), step=step[order].astype(np.int8), chan=chan[order].astype(np.int8),
                tgt=tgt[order], tsrc=tsrc[order].astype(np.int8), sent=sent[order], opened=o_t[order],
                conv=c_t[order], own=own[order])
    # delivery: the send in its batch; an open on a later day is a re-delivery of the row in the open's batch
    sdt = _batch_of(cols["sent"])
    op = cols["opened"] != UNSET
    odt = np.where(op, _batch_of(cols["opened"]), 0)
    same = op & (odt == sdt)
    later = op & (odt > sdt)
    base_rows = np.arange(m)
    show = same.copy()
    re_rows = np.flatnonzero(later)
    all_rows = np.concatenate([base_rows, re_rows])
    all_show = np.concatenate([show, np.ones(len(re_rows), bool)])
    all_dt = np.concatenate([sdt, odt[re_rows]])
    r2, dt = _deliver(rng, all_dt, days)
    return dict(cols=cols, rows=all_rows[r2], show=all_show[r2], dt=dt)


def render_touches(c: dict, rows: np.ndarray, show: np.ndarray, id_base: int, L: Links, t0: int) -> pa.Table:
    o = c["opened"][rows]
    cv = c["conv"][rows]
    return pa.table({
        "touch_id": keys("M", id_base + rows, 11),
        "campaign_id": take(pa.array(CAMPAIGNS), c["camp"][rows]),
        "step": pa.array(c["step"][rows].astype(np.int32)),
        "channel": take(pa.array(TOUCH_CHANNELS), c["chan"][rows]),
        "target_source": take(pa.array(MASTER_ORDER), c["tsrc"][rows]),
        "target_key": take(L.master_keys, c["tgt"][rows]),
        "sent_time": pa.array(c["sent"][rows] + t0, pa.timestamp("s")),
        "opened_time": pa.array(np.where(o == UNSET, 0, o) + t0, pa.timestamp("s"), mask=~show | (o == UNSET)),
        "converted_time": pa.array(np.where(cv == UNSET, 0, cv) + t0, pa.timestamp("s"),
                                   mask=~show | (cv == UNSET)),
    })


# ---------------------------------------------------------------- consents
def consents(L: Links, creates: dict, seed: int, chunk: int, t_end: int, days: int) -> dict:
    rng = stream(seed, "consent", chunk)
    parts = []
    for s_i, src in enumerate(MASTER_ORDER):
        ct = creates[src]
        k = len(ct)
        gidx = np.arange(k) + L.offsets[src]
        for purpose, share in ((0, 0.85), (1, 0.70)):
            g = np.flatnonzero(rng.random(k) < share)
            gt = ct[g] + rng.integers(60, 3600, len(g))
            parts.append((np.full(len(g), s_i), gidx[g], np.full(len(g), purpose), np.ones(len(g), bool), gt))
            # revocations (marketing ~2%, profiling ~0.5%), a few granted again later
            rv = g[rng.random(len(g)) < (0.02 if purpose == 0 else 0.005)]
            lo = np.maximum(ct[rv] + DAY, 0)
            okr = lo < t_end - 1
            rv, lo = rv[okr], lo[okr]
            rt = times_in(rng, lo, np.full(len(rv), t_end))
            parts.append((np.full(len(rv), s_i), gidx[rv], np.full(len(rv), purpose), np.zeros(len(rv), bool), rt))
            again = rng.random(len(rv)) < 0.1
            lo2 = rt[again] + DAY
            ok2 = lo2 < t_end - 1
            at = times_in(rng, lo2[ok2], np.full(int(ok2.sum()), t_end))
            parts.append((np.full(len(at), s_i), gidx[rv][again][ok2], np.full(len(at), purpose),
                          np.ones(len(at), bool), at))
    src, key, purpose, granted, t = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.argsort(t, kind="stable")
    cols = dict(src=src[order].astype(np.int8), key=key[order], purpose=purpose[order].astype(np.int8),
                granted=granted[order], t=t[order])
    rows, dt = _deliver(rng, _batch_of(cols["t"]), days)
    return dict(cols=cols, rows=rows, dt=dt)


def render_consents(c: dict, rows: np.ndarray, L: Links, t0: int) -> pa.Table:
    return pa.table({
        "source": take(pa.array(MASTER_ORDER), c["src"][rows]),
        "source_key": take(L.master_keys, c["key"][rows]),
        "purpose": take(pa.array(["marketing", "profiling"]), c["purpose"][rows]),
        "granted": pa.array(c["granted"][rows]),
        "event_time": pa.array(c["t"][rows] + t0, pa.timestamp("s")),
    })


# ---------------------------------------------------------------- holdings
def holdings_base(P: Persons, core_person: np.ndarray, seed: int, chunk: int) -> dict:
    """One row per (core record, product) with base balance, start day and maturity."""
    rng = stream(seed, "holding", chunk)
    nc = len(core_person)
    tier = P.tier[core_person]
    age = P.age[core_person]
    has = np.zeros((nc, 7), bool)
    has[:, 0] = rng.random(nc) < 0.97
    has[:, 1] = rng.random(nc) < 0.30 + 0.10 * tier
    has[:, 2] = rng.random(nc) < 0.08 + 0.22 * tier
    has[:, 3] = rng.random(nc) < 0.12 + 0.08 * tier
    has[:, 4] = rng.random(nc) < 0.10 + 0.05 * tier
    has[:, 5] = ((age >= 28) & (age <= 58)) & (rng.random(nc) < 0.08)
    has[:, 6] = rng.random(nc) < 0.07
    has[:, 0] |= ~has[:, :5].any(axis=1)
    w = rng.random((nc, 5)) ** 2 * has[:, :5]
    w[:, 0] += 0.05 * has[:, 0]
    w /= w.sum(axis=1, keepdims=True)
    aum = P.aum_cents[core_person].astype(float)
    bal = np.zeros((nc, 7))
    bal[:, :5] = w * aum[:, None]
    bal[:, 5] = rng.uniform(200_000, 3_000_000, nc) * 100
    bal[:, 6] = rng.uniform(10_000, 300_000, nc) * 100
    start = np.zeros((nc, 7), np.int64)
    # planted mortgages appear on the day of the loan
    hb = P.house_buy[core_person]
    has[:, 5] |= hb
    start[:, 5] = np.where(hb, np.maximum(P.t_house[core_person], 0) // DAY, 0)
    mat_lo = np.array([0, 30, 30, 0, 5 * 365, 10 * 365, 180])
    mat_hi = np.array([1, 1800, 365, 1, 20 * 365, 30 * 365, 3 * 365])
    mat = rng.integers(mat_lo, mat_hi, (nc, 7))
    r, pt = np.nonzero(has)
    balance = np.round(bal[r, pt]).astype(np.int64)
    balance = np.maximum(balance, 100)
    return dict(rec=r, pt=pt.astype(np.int8), bal=balance, start=start[r, pt], mat=mat[r, pt],
                mat_null=np.isin(pt, [0, 3]))


def render_holdings_day(h: dict, d: int, core_create_day: np.ndarray, rng, L: Links, t0_days: int) -> pa.Table:
    live = (core_create_day[h["rec"]] <= d) & (h["start"] <= d)
    idx = np.flatnonzero(live)
    pt = h["pt"][idx]
    bal = h["bal"][idx].astype(float)
    noise = np.where(pt == 0, np.clip(rng.normal(1, 0.04, len(idx)), 0.85, 1.15),
                     np.where(pt == 3, 1 + rng.normal(0, 0.01, len(idx)),
                              np.where(pt >= 5, 1 - 0.0002 * np.maximum(d - h["start"][idx], 0), 1.0)))
    cents = np.round(bal * noise).astype(np.int64)
    mat = t0_days + h["mat"][idx] + np.where(pt >= 5, h["start"][idx], 0)
    return pa.table({
        "source_key": take(L.master_keys, h["rec"][idx] + L.offsets["core_customer"]),
        "snapshot_date": pa.array(np.full(len(idx), t0_days + d, np.int32), pa.date32()),
        "product_type": take(pa.array(PRODUCT_TYPES), pt),
        "balance": cents_str(cents),
        "maturity_date": pa.array(mat.astype(np.int32), pa.date32(), mask=h["mat_null"][idx]),
    })
