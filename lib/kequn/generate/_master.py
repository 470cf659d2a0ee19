"""Master data: the four sources' records of a chunk of persons, and their daily re-deliveries."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _ids
from ._persons import MARITAL, OCCUPATIONS, WX_BOTH, WX_MP, WX_OA, Persons
from ._util import DAY, cents_str, hex_str, keys, mix64, perm10, stream

YEAR = int(365.25 * DAY)
CARD_LEVELS = ["standard", "gold", "platinum", "diamond"]
CARD_LEVEL_P = [[0.80, 0.20, 0.0, 0.0], [0.30, 0.55, 0.15, 0.0], [0.0, 0.30, 0.55, 0.15], [0.0, 0.0, 0.40, 0.60]]
CREDIT_RANGE = [(5_000, 30_000), (20_000, 80_000), (50_000, 200_000), (200_000, 1_000_000)]
UPDATE_RATE = 0.01

# id_no variants
ID_OK, ID_OLD15, ID_BADCHECK, ID_NULL = range(4)


def _obj(a) -> np.ndarray:
    if isinstance(a, (pa.Array, pa.ChunkedArray)):
        return np.asarray(a.to_numpy(zero_copy_only=False), dtype=object)
    return np.asarray(a, dtype=object)


@dataclass
class Records:
    """State of one master source for a chunk: column arrays plus hidden attributes."""
    source: str
    cols: dict                      # column -> np.ndarray (object strings, int64 rel. seconds, int days)
    person: np.ndarray              # local person index
    create_t: np.ndarray            # relative seconds
    lock_mobile: np.ndarray = None  # shared-point mobile: never changed by re-deliveries
    lock_device: np.ndarray = None
    mobile_ok: np.ndarray = None    # a valid, personal mobile (can receive sms)
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.person)

    @property
    def create_day(self) -> np.ndarray:
        return np.maximum(self.create_t, 0) // DAY


def _created(rng, P: Persons, idx, lo_years, hi_years, later_share, days) -> np.ndarray:
    n = len(idx)
    t = -(rng.uniform(lo_years, hi_years, n) * YEAR).astype(np.int64)
    t = (t // DAY) * DAY + rng.integers(8 * 3600, 20 * 3600, n)
    if days > 2 and later_share > 0:
        late = rng.random(n) < later_share
        t[late] = rng.integers(1, days, int(late.sum())) * DAY + rng.integers(8 * 3600, 20 * 3600, int(late.sum()))
    new = P.new_t[idx] > 0
    t[new] = P.new_t[idx][new] + rng.integers(0, 3 * 3600, int(new.sum()))
    t = np.minimum(t, (t // DAY) * DAY + DAY - 3600)  # keep the creation inside its day
    return t


def _mobile_column(rng, P: Persons, idx, staff, shares) -> tuple[pa.Array, np.ndarray]:
    """shares: clean, dirty, mobile2, invalid, null (sum 1). Returns strings and 'valid personal' flags."""
    n = len(idx)
    kind = rng.choice(5, size=n, p=np.array(shares) / sum(shares))
    m = np.where(kind == 2, P.mobile2[idx], P.mobile1[idx])
    variant = _ids.dirty_valid_variant(rng, n, 1.0)
    variant = np.where(kind == 0, _ids.MOB_CLEAN, variant)
    variant = np.where(kind == 2, np.where(rng.random(n) < 0.7, _ids.MOB_CLEAN, variant), variant)
    variant = np.where(kind == 3, rng.choice([_ids.MOB_10DIGITS, _ids.MOB_12PREFIX], size=n), variant)
    m = np.where(staff, _ids.STAFF_MOBILE, m)
    variant = np.where(staff, np.where(rng.random(n) < 0.8, _ids.MOB_CLEAN, _ids.MOB_SPACES), variant)
    s = _ids.mobile_strings(m, variant)
    null = (kind == 4) & ~staff
    s = pc.if_else(pa.array(null), pa.nulls(n, pa.string()), s)
    ok = (kind <= 2) & ~staff
    return s, ok


def _id_column(rng, P: Persons, idx, shares, lower_x_share) -> tuple[pa.Array, np.ndarray]:
    n = len(idx)
    v = rng.choice(4, size=n, p=np.array(shares) / sum(shares))
    y = P.birth[idx].astype("datetime64[Y]").astype(np.int64) + 1970
    v = np.where((v == ID_OLD15) & ((y < 1900) | (y > 1999)), ID_OK, v)
    body, chk = P.id_body[idx], P.id_check[idx]
    bad = (chk + rng.integers(1, 11, n)) % 11
    chk2 = np.where(v == ID_BADCHECK, bad, chk)
    lower = (chk2 == 2) & (rng.random(n) < lower_x_share)
    s18 = _ids.id18_strings(body, chk2, lower)
    s15 = _ids.id15_strings(P.region[idx], P.birth[idx], P.id_seq[idx])
    s = pc.if_else(pa.array(v == ID_OLD15), s15, s18)
    s = pc.if_else(pa.array(v == ID_NULL), pa.nulls(n, pa.string()), s)
    return s, v


def build_core(P: Persons, seed: int, chunk: int, days: int) -> Records:
    rng = stream(seed, "core", chunk)
    idx = np.flatnonzero(P.has_core)
    n = len(idx)
    pid = P.pid[idx]
    create_t = _created(rng, P, idx, 0.5, 20, 0.0, days)
    name_v = rng.choice([_ids.NAME_HANZI, _ids.NAME_HANZI_SPACE, _ids.NAME_PINYIN], size=n, p=[0.85, 0.08, 0.07])
    id_type = rng.choice(3, size=n, p=[0.95, 0.03, 0.02])
    id_no, id_v = _id_column(rng, P, idx, [0.90, 0.04, 0.035, 0.025], 0.4)
    passport = keys("E", rng.integers(0, 10**8, n), 8)
    other = keys("M", rng.integers(0, 10**9, n), 9)
    id_no = pc.if_else(pa.array(id_type == 1), passport, id_no)
    id_no = pc.if_else(pa.array(id_type == 2), other, id_no)
    mobile, mob_ok = _mobile_column(rng, P, idx, P.staff_core[idx], [0.66, 0.20, 0.06, 0.04, 0.04])
    income = cents_str(P.income_cents[idx])
    income = pc.if_else(pa.array(rng.random(n) < 0.03), pa.nulls(n, pa.string()), income)
    branch = keys("BR", np.searchsorted(_ids.REGIONS, P.region[idx]) * 10 + rng.integers(0, 6, n), 4)
    cols = {
        "cust_no": _obj(keys("C", perm10(pid, 1), 10)),
        "name": _obj(_ids.name_strings(P.name_id[idx], name_v)),
        "id_type": np.array(["ID_CARD", "PASSPORT", "OTHER"], dtype=object)[id_type],
        "id_no": _obj(id_no),
        "mobile": _obj(mobile),
        "gender": np.where(P.male[idx], "M", "F").astype(object),
        "birth_date": P.birth[idx].astype(np.int64),
        "occupation": np.array(OCCUPATIONS, dtype=object)[P.occupation[idx]],
        "marital_status": np.array(MARITAL, dtype=object)[P.marital[idx]],
        "annual_income": _obj(income),
        "branch_code": _obj(branch),
        "open_date": ("day", create_t),
        "updated_at": _first_updated(rng, create_t),
    }
    r = Records("core_customer", cols, idx, create_t, lock_mobile=P.staff_core[idx].copy(),
                mobile_ok=mob_ok)
    return r


def _first_updated(rng, create_t) -> np.ndarray:
    """updated_at of the first delivery, inside the day of the batch that carries it."""
    n = len(create_t)
    pre = create_t < 0
    u = np.where(pre, rng.integers(0, DAY, n), create_t + rng.integers(0, 3600, n))
    day_end = (np.maximum(create_t, 0) // DAY) * DAY + DAY - 1
    return np.minimum(u, day_end)


def build_card(P: Persons, seed: int, chunk: int, days: int) -> Records:
    rng = stream(seed, "card", chunk)
    idx = np.flatnonzero(P.has_card)
    n = len(idx)
    pid = P.pid[idx]
    create_t = _created(rng, P, idx, 0.3, 10, 0.01, days)
    name_v = rng.choice([_ids.NAME_HANZI, _ids.NAME_UPPER, _ids.NAME_PINYIN, _ids.NAME_COMMA, _ids.NAME_WESTERN],
                        size=n, p=[0.35, 0.35, 0.10, 0.10, 0.10])
    id_no, id_v = _id_column(rng, P, idx, [0.91, 0.03, 0.03, 0.03], 0.5)
    mobile, mob_ok = _mobile_column(rng, P, idx, P.staff_card[idx], [0.68, 0.18, 0.05, 0.04, 0.05])
    tier = P.tier[idx]
    u = rng.random(n)
    cum = np.cumsum(np.array(CARD_LEVEL_P), axis=1)[tier]
    level = (u[:, None] > cum).sum(axis=1).clip(0, 3)
    lo = np.array([c[0] for c in CREDIT_RANGE])[level]
    hi = np.array([c[1] for c in CREDIT_RANGE])[level]
    limit = (lo + rng.random(n) * (hi - lo)) // 1000 * 1000
    cols = {
        "card_cust_id": _obj(keys("K", perm10(pid, 2), 10)),
        "name": _obj(_ids.name_strings(P.name_id[idx], name_v)),
        "id_no": _obj(id_no),
        "mobile": _obj(mobile),
        "card_no": _obj(_ids.card_numbers(pid, seed)),
        "card_level": np.array(CARD_LEVELS, dtype=object)[level],
        "credit_limit": _obj(cents_str(limit.astype(np.int64) * 100)),
        "open_date": ("day", create_t),
        "updated_at": _first_updated(rng, create_t),
    }
    r = Records("card_account", cols, idx, create_t, lock_mobile=P.staff_card[idx].copy(), mobile_ok=mob_ok)
    r.extra["level"] = level
    return r


def build_app(P: Persons, seed: int, chunk: int, days: int, cust_no_of_person: np.ndarray) -> Records:
    rng = stream(seed, "app", chunk)
    idx = np.flatnonzero(P.has_app)
    n = len(idx)
    pid = P.pid[idx]
    create_t = _created(rng, P, idx, 0.1, 5, 0.02, days)
    mobile, mob_ok = _mobile_column(rng, P, idx, np.zeros(n, bool), [0.70, 0.14, 0.05, 0.04, 0.07])
    dev_clean = _ids.device_ids(pid, seed + 11)
    kiosk = P.kiosk[idx]
    dv = rng.choice(4, size=n, p=[0.72, 0.10, 0.06, 0.12])  # lower, upper, padded, invalid
    invalid = _ids.INVALID_DEVICES
    inv_pick = rng.choice(len(invalid) + 1, size=n, p=[0.25, 0.2, 0.15, 0.1, 0.05, 0.25])
    inv = pa.array(np.array(invalid + [None], dtype=object)[inv_pick], pa.string())
    dev = pc.if_else(pa.array(dv == 1), pc.utf8_upper(dev_clean), dev_clean)
    dev = pc.if_else(pa.array(dv == 2), pc.binary_join_element_wise(" ", dev_clean, " ", ""), dev)
    dev = pc.if_else(pa.array(dv == 3), inv, dev)
    kiosk_s = pa.array(np.where(rng.random(n) < 0.7, _ids.KIOSK_DEVICE, _ids.KIOSK_DEVICE.upper()), pa.string())
    dev = pc.if_else(pa.array(kiosk), kiosk_s, dev)
    cust = cust_no_of_person[idx]
    bound = (cust != None) & (rng.random(n) < 0.75)  # noqa: E711
    cols = {
        "app_user_id": _obj(keys("U", perm10(pid, 3), 10)),
        "mobile": _obj(mobile),
        "device_id": _obj(dev),
        "cust_no": np.where(bound, cust, None).astype(object),
        "register_time": create_t.copy(),
        "updated_at": _first_updated(rng, create_t),
    }
    r = Records("app_user", cols, idx, create_t, lock_mobile=np.zeros(n, bool), lock_device=kiosk.copy(),
                mobile_ok=mob_ok)
    r.extra["device_clean"] = _obj(pc.if_else(pa.array(kiosk), _ids.KIOSK_DEVICE, dev_clean))
    return r


def build_wechat(P: Persons, seed: int, chunk: int, days: int) -> Records:
    rng = stream(seed, "wechat", chunk)
    oa = np.flatnonzero((P.wx_type == WX_OA) | (P.wx_type == WX_BOTH))
    mp = np.flatnonzero((P.wx_type == WX_MP) | (P.wx_type == WX_BOTH))
    idx = np.concatenate([oa, mp])
    app = np.concatenate([np.zeros(len(oa), np.int64), np.ones(len(mp), np.int64)])
    order = np.lexsort((app, idx))
    idx, app = idx[order], app[order]
    n = len(idx)
    pid = P.pid[idx]
    rid = pid * 2 + app
    create_t = _created(rng, P, idx, 0.1, 6, 0.02, days)
    openid = pc.binary_join_element_wise("o", hex_str(mix64(rid, seed + 5)),
                                         pc.utf8_slice_codeunits(hex_str(mix64(rid, seed + 6)), 0, 11), "")
    shared_u = pc.binary_join_element_wise("u", hex_str(mix64(pid, seed + 7)),
                                           pc.utf8_slice_codeunits(hex_str(mix64(pid, seed + 8)), 0, 11), "")
    own_u = pc.binary_join_element_wise("u", hex_str(mix64(rid, seed + 9)),
                                        pc.utf8_slice_codeunits(hex_str(mix64(rid, seed + 10)), 0, 11), "")
    share = P.wx_share_union[idx]
    has_own = rng.random(n) < np.where(P.wx_type[idx] == WX_BOTH, 0.4, 0.7)
    union = pc.if_else(pa.array(share), shared_u, pc.if_else(pa.array(has_own), own_u, pa.nulls(n, pa.string())))
    mobile, mob_ok = _mobile_column(rng, P, idx, np.zeros(n, bool), [0.70, 0.25, 0.05, 0.0, 0.0])
    bound = rng.random(n) < 0.48
    mobile = pc.if_else(pa.array(bound), mobile, pa.nulls(n, pa.string()))
    cols = {
        "openid": _obj(openid),
        "unionid": _obj(union),
        "app_type": np.where(app == 0, "official_account", "mini_program").astype(object),
        "mobile": _obj(mobile),
        "subscribe_time": create_t.copy(),
        "updated_at": _first_updated(rng, create_t),
    }
    r = Records("wechat_user", cols, idx, create_t, lock_mobile=np.zeros(n, bool), mobile_ok=mob_ok & bound)
    r.extra["app"] = app
    return r


def finish(r: Records, t0_days: int) -> Records:
    """Resolve deferred columns: dates become days since 1970-01-01."""
    for k, v in list(r.cols.items()):
        if isinstance(v, tuple) and v[0] == "day":
            r.cols[k] = np.floor_divide(v[1], DAY) + t0_days
    return r


# ------------------------------------------------------------------ daily re-deliveries
def daily_updates(r: Records, P: Persons, seed: int, chunk: int, days: int) -> dict[int, dict]:
    """The rows of each batch: day 0 every record existing then; day d the records created that day
    and ~1% re-deliveries (changed, identical, or unbinding) with a later updated_at. Mutates r.
    Returns {day: {column: array as delivered, "_rec": record indices}}."""
    rng = stream(seed, "upd", r.source, chunk)
    out: dict[int, dict] = {}
    cday = r.create_day
    first = np.flatnonzero(cday == 0)
    out[0] = {k: v[first] for k, v in r.cols.items()}
    out[0]["_rec"] = first
    for d in range(1, days):
        new = np.flatnonzero(cday == d)
        parts = [({k: v[new] for k, v in r.cols.items()}, new)] if len(new) else []
        elig = cday < d
        pick = np.flatnonzero(elig & (rng.random(r.n) < UPDATE_RATE))
        if len(pick):
            _apply_change(r, P, pick, rng, d, seed)
            r.cols["updated_at"][pick] = d * DAY + rng.integers(0, DAY, len(pick))
            parts.append(({k: v[pick] for k, v in r.cols.items()}, pick))
        if parts:
            out[d] = {k: np.concatenate([p[0][k] for p in parts]) for k in r.cols}
            out[d]["_rec"] = np.concatenate([p[1] for p in parts])
    return out


def _reformat_mobile(r: Records, P: Persons, rows, rng, use_mobile2=False):
    rows = rows[~r.lock_mobile[rows]]
    if not len(rows):
        return
    p = r.person[rows]
    m = np.where(use_mobile2 & (rng.random(len(rows)) < 0.3), P.mobile2[p], P.mobile1[p])
    v = _ids.dirty_valid_variant(rng, len(rows), 0.3)
    r.cols["mobile"][rows] = _obj(_ids.mobile_strings(m, v))
    r.mobile_ok[rows] = True


def _apply_change(r: Records, P: Persons, pick, rng, d, seed):
    n = len(pick)
    kind = rng.choice(3, size=n, p=[0.40, 0.55, 0.05])  # identical, changed, unbinding
    what = rng.integers(0, 3, n)
    ch = pick[kind == 1]
    w = what[kind == 1]
    src = r.source
    if src == "core_customer":
        _reformat_mobile(r, P, ch[w == 0], rng, use_mobile2=True)
        rows = ch[w == 1]
        if len(rows):
            p = r.person[rows]
            inc = (P.income_cents[p] * rng.uniform(1.0, 1.3, len(rows))).astype(np.int64) // 10000 * 10000
            r.cols["annual_income"][rows] = _obj(cents_str(inc))
        rows = ch[w == 2]
        if len(rows):
            r.cols["occupation"][rows] = np.array(OCCUPATIONS, dtype=object)[rng.integers(0, len(OCCUPATIONS), len(rows))]
        # core/card have nothing to unbind: an unbinding pick is an identical re-delivery
    elif src == "card_account":
        rows = ch[w == 0]
        if len(rows):
            lvl = np.minimum(r.extra["level"][rows] + 1, 3)
            r.extra["level"][rows] = lvl
            r.cols["card_level"][rows] = np.array(CARD_LEVELS, dtype=object)[lvl]
            lo = np.array([c[0] for c in CREDIT_RANGE])[lvl]
            r.cols["credit_limit"][rows] = _obj(cents_str(lo.astype(np.int64) * 200))
        _reformat_mobile(r, P, ch[w == 1], rng, use_mobile2=True)
        rows = ch[w == 2]
        if len(rows):
            lim = rng.integers(10, 500, len(rows)) * 1000
            r.cols["credit_limit"][rows] = _obj(cents_str(lim * 100))
    elif src == "app_user":
        rows = ch[(w == 0) & ~r.lock_device[ch]]
        if len(rows):
            newdev = _ids.device_ids(r.person[rows] * 1000 + d, seed + 13)
            r.cols["device_id"][rows] = _obj(newdev)
            r.extra["device_clean"][rows] = _obj(newdev)
        _reformat_mobile(r, P, ch[w >= 1], rng)
        rows = pick[kind == 2]
        r.cols["cust_no"][rows] = None
    elif src == "wechat_user":
        _reformat_mobile(r, P, ch, rng)
        rows = pick[kind == 2]
        r.cols["mobile"][rows] = None
        r.mobile_ok[rows] = False
