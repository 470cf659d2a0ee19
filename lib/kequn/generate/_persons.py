"""The hidden population: one row per person, numeric arrays only (cheap for millions)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import _ids
from ._util import DAY, stream

OCCUPATIONS = ["教师", "医生", "工程师", "公务员", "个体户", "学生", "退休", "企业主", "其他"]
OCC_W = [0.10, 0.06, 0.16, 0.09, 0.15, 0.0, 0.0, 0.07, 0.37]
OCC_INCOME = {"教师": 11.4, "医生": 11.9, "工程师": 12.0, "公务员": 11.6, "个体户": 11.5, "学生": 9.0, "退休": 10.6,
              "企业主": 12.8, "其他": 11.1}  # log of median annual income, CNY
MARITAL = ["single", "married", "divorced", "widowed"]
TIERS = ["mass", "gold", "platinum", "private"]
# AUM ranges per tier (CNY), with margins from the tier limits so daily noise does not flip the tier.
TIER_RANGE = [(200.0, 42_000.0), (60_000.0, 420_000.0), (620_000.0, 5_200_000.0), (7_000_000.0, 40_000_000.0)]

PROD_NONE, PROD_FIRST, PROD_REPEAT = 0, 1, 2
WX_NONE, WX_OA, WX_MP, WX_BOTH = 0, 1, 2, 3


@dataclass
class Persons:
    pid: np.ndarray
    male: np.ndarray
    birth: np.ndarray          # datetime64[D]
    age: np.ndarray
    region: np.ndarray         # 6-digit code
    id_body: np.ndarray        # 17-digit body of the 18-digit number
    id_check: np.ndarray       # index into ID_CHECK
    id_seq: np.ndarray
    name_id: np.ndarray
    mobile1: np.ndarray
    mobile2: np.ndarray
    marital: np.ndarray
    children: np.ndarray
    occupation: np.ndarray
    income_cents: np.ndarray
    tier: np.ndarray
    aum_cents: np.ndarray
    dormant: np.ndarray
    txn_mult: np.ndarray
    evt_mult: np.ndarray
    has_core: np.ndarray
    has_card: np.ndarray
    has_app: np.ndarray
    wx_type: np.ndarray
    wx_share_union: np.ndarray
    new_t: np.ndarray          # creation time of a person new in the window, else a large negative value
    staff_core: np.ndarray
    staff_card: np.ndarray
    kiosk: np.ndarray
    edu_target: np.ndarray
    edu_interest: np.ndarray
    edu_buy: np.ndarray
    t_edu: np.ndarray
    house_interest: np.ndarray
    house_buy: np.ndarray
    t_house: np.ndarray
    prod_class: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)

    def slice(self, lo: int, hi: int) -> "Persons":
        return Persons(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})


def _force_some(rng, flag: np.ndarray, eligible: np.ndarray, k: int) -> None:
    """Set flag on at least k eligible rows (in place)."""
    have = int((flag & eligible).sum())
    if have >= k:
        return
    cand = np.flatnonzero(eligible & ~flag)
    if len(cand):
        flag[rng.choice(cand, size=min(k - have, len(cand)), replace=False)] = True


def build_persons(n: int, seed: int, end: np.datetime64, t_start: int, t_end: int, days: int) -> Persons:
    rng = stream(seed, "persons")
    pid = np.arange(n, dtype=np.int64)
    male = rng.random(n) < 0.5

    # ages 18..80, a bank-like shape (working ages dominate)
    age_years = np.clip(rng.normal(42, 13, n), 18.02, 80.95)
    birth = end - (age_years * 365.25).astype(np.int64).astype("timedelta64[D]")
    age = ((end - birth).astype(np.int64) / 365.25).astype(np.int64)

    region_idx = rng.integers(0, len(_ids.REGIONS), n)
    region = _ids.REGIONS[region_idx]
    seq = _ids.id_seq(region_idx, birth.astype(np.int64), male.astype(np.int64), seed)
    body, chk = _ids.id_parts(region, birth, seq)

    name_id = _ids.draw_name_ids(rng, n)
    mobile1 = _ids.mobiles(pid, seed % 97)
    mobile2 = _ids.mobiles(pid + 1_500_000_000, seed % 97)

    # marital status and family
    u = rng.random(n)
    marital = np.zeros(n, dtype=np.int64)
    young = age < 25
    mid = (age >= 25) & (age < 35)
    old = (age >= 35) & (age < 60)
    senior = age >= 60
    marital[young] = np.where(u[young] < 0.15, 1, 0)
    marital[mid] = np.select([u[mid] < 0.38, u[mid] < 0.93], [0, 1], 2)
    marital[old] = np.select([u[old] < 0.09, u[old] < 0.87, u[old] < 0.97], [0, 1, 2], 3)
    marital[senior] = np.select([u[senior] < 0.04, u[senior] < 0.74, u[senior] < 0.80], [0, 1, 2], 3)
    children = np.where((marital > 0) & (age >= 26), rng.random(n) < 0.78, rng.random(n) < 0.02)

    occ = rng.choice(len(OCCUPATIONS), size=n, p=np.array(OCC_W) / sum(OCC_W))
    occ = np.where((age < 23) & (rng.random(n) < 0.75), OCCUPATIONS.index("学生"), occ)
    occ = np.where((age >= 60) & (rng.random(n) < 0.85), OCCUPATIONS.index("退休"), occ)
    mu = np.array([OCC_INCOME[o] for o in OCCUPATIONS])[occ]
    income = np.exp(rng.normal(mu, 0.45))
    income_cents = (np.round(income / 100) * 100 * 100).astype(np.int64)

    # wealth tier: skewed, correlated with income and age
    score = (np.log(income) - 11.2) * 0.8 + (age - 40) / 40 + rng.normal(0, 1.0, n)
    q = np.quantile(score, [0.55, 0.85, 0.97]) if n > 3 else np.array([0, 1, 2])
    tier = np.searchsorted(q, score)

    dormant = rng.random(n) < np.where(tier >= 1, 0.09, 0.02)
    txn_mult = rng.lognormal(0, 0.6, n)
    txn_mult /= txn_mult.mean() if n else 1
    evt_mult = rng.lognormal(0, 0.9, n)
    evt_mult /= evt_mult.mean() if n else 1

    # which systems know the person
    has_core = rng.random(n) < 0.88
    has_card = rng.random(n) < 0.40
    has_app = rng.random(n) < np.clip(0.80 - (age - 30) * 0.012, 0.2, 0.9)
    wx = rng.random(n) < 0.50
    wx_type = np.where(wx, rng.choice([WX_OA, WX_MP, WX_BOTH], size=n, p=[0.35, 0.30, 0.35]), WX_NONE)
    wx_share_union = (wx_type == WX_BOTH) & (rng.random(n) < 0.7)
    none = ~(has_core | has_card | has_app | (wx_type > 0))
    has_core |= none
    # at most four records a person: a fifth (both WeChat apps beside core, card and app) keeps one app
    five = has_core & has_card & has_app & (wx_type == WX_BOTH)
    wx_type = np.where(five, np.where(rng.random(n) < 0.5, WX_OA, WX_MP), wx_type)
    wx_share_union &= wx_type == WX_BOTH

    # a few persons appear during the window
    new_t = np.full(n, -(10**12), dtype=np.int64)
    if days > 2:
        newp = rng.random(n) < 0.03
        new_t[newp] = rng.integers(1, days, int(newp.sum())) * DAY + rng.integers(8 * 3600, 18 * 3600, int(newp.sum()))
    is_new = new_t > 0

    # shared points (global so the minimums hold for the whole sample)
    staff_core = np.zeros(n, bool)
    staff_card = np.zeros(n, bool)
    kiosk = np.zeros(n, bool)
    staff_core |= has_core & ~is_new & (rng.random(n) < 0.005)
    _force_some(rng, staff_core, has_core & ~is_new, 12)
    staff_card |= has_card & ~is_new & (rng.random(n) < 0.005)
    _force_some(rng, staff_card, has_card & ~is_new, 2)
    kiosk |= has_app & ~is_new & (rng.random(n) < 0.002)
    _force_some(rng, kiosk, has_app & ~is_new, 12)

    # ensure every tier appears among core customers
    for t in range(4):
        if not ((tier == t) & has_core).any():
            cand = np.flatnonzero(has_core & (tier != t))
            if len(cand):
                tier[rng.choice(cand)] = t
    lo = np.array([r[0] for r in TIER_RANGE])[tier]
    hi = np.array([r[1] for r in TIER_RANGE])[tier]
    aum_cents = (np.exp(np.log(lo) + rng.random(n) ** 1.6 * (np.log(hi) - np.log(lo))) * 100).astype(np.int64)

    # learnable needs
    active = ~dormant & ~is_new
    edu_target = (age >= 30) & (age <= 45) & (marital == 1) & children
    edu_interest = active & (rng.random(n) < np.where(edu_target, 0.55, 0.04))
    edu_buy = has_core & edu_interest & (rng.random(n) < np.where(edu_target, 0.55, 0.25))
    edu_buy |= has_core & active & ~edu_interest & (rng.random(n) < 0.006)
    house_target = (age >= 25) & (age <= 40) & ((marital == 1) | (income > 150_000))
    house_interest = active & (rng.random(n) < np.where(house_target, 0.30, 0.04))
    house_buy = has_core & house_interest & (rng.random(n) < 0.45)
    house_buy |= has_core & active & ~house_interest & (rng.random(n) < 0.004)
    span_lo = t_start + 50 * DAY
    t_edu = rng.integers(span_lo, t_end, n) if t_end > span_lo else np.full(n, t_end - DAY)
    t_house = rng.integers(span_lo, t_end, n) if t_end > span_lo else np.full(n, t_end - DAY)

    prod_class = np.where(has_core & active, rng.choice(3, size=n, p=[0.55, 0.2, 0.25]), PROD_NONE)

    return Persons(pid=pid, male=male, birth=birth, age=age, region=region, id_body=body, id_check=chk, id_seq=seq,
                   name_id=name_id, mobile1=mobile1, mobile2=mobile2, marital=marital, children=children,
                   occupation=occ, income_cents=income_cents, tier=tier, aum_cents=aum_cents, dormant=dormant,
                   txn_mult=txn_mult, evt_mult=evt_mult, has_core=has_core, has_card=has_card, has_app=has_app,
                   wx_type=wx_type, wx_share_union=wx_share_union, new_t=new_t, staff_core=staff_core,
                   staff_card=staff_card, kiosk=kiosk, edu_target=edu_target, edu_interest=edu_interest,
                   edu_buy=edu_buy, t_edu=t_edu, house_interest=house_interest, house_buy=house_buy,
                   t_house=t_house, prod_class=prod_class)
