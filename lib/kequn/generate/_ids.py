"""Identifiers and personal data: ID numbers (GB 11643), mobiles, card numbers, devices, names."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._util import choose, hex_str, mix64, take

# ---------------------------------------------------------------- ID numbers (GB 11643-1999)
REGIONS = np.array([
    110101, 110102, 110105, 110108, 120101, 120103, 130102, 130104, 140105, 210102, 210202, 220102,
    230102, 310101, 310104, 310105, 310112, 310115, 320102, 320106, 320205, 320506, 330102, 330106,
    330203, 340104, 350102, 350203, 360102, 370102, 370202, 410105, 420102, 420106, 430102, 430104,
    440103, 440104, 440106, 440304, 440305, 440306, 441900, 442000, 450103, 460106, 500103, 500106,
    510104, 510107, 520102, 530102, 610103, 610113, 620102, 640104, 650102, 330481, 321282, 371312,
], dtype=np.int64)

ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = "10X98765432"
_ID_CHECK_ARR = pa.array(list(ID_CHECK))


def id_check_index(body17: np.ndarray) -> np.ndarray:
    """Index into ID_CHECK of the check character of 17-digit bodies (as int64)."""
    b = np.asarray(body17, dtype=np.int64).copy()
    s = np.zeros_like(b)
    for k in range(16, -1, -1):
        s += (b % 10) * ID_WEIGHTS[k]
        b //= 10
    return s % 11


def id_check_char(body17: str) -> str:
    """Scalar version (for tests and readers)."""
    s = sum(int(c) * int(w) for c, w in zip(body17, ID_WEIGHTS))
    return ID_CHECK[s % 11]


def ymd(birth: np.ndarray):
    b = birth.astype("datetime64[D]")
    y = b.astype("datetime64[Y]").astype(np.int64) + 1970
    m = b.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (b - b.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, d


def id_seq(region_idx: np.ndarray, birth_days: np.ndarray, male: np.ndarray, salt: int) -> np.ndarray:
    """3-digit sequence, odd for men, unique within (region, birth date, gender) up to 500 people."""
    key = (region_idx.astype(np.int64) * 200_000 + (birth_days.astype(np.int64) + 100_000)) * 2 + male
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.r_[True, sk[1:] != sk[:-1]] if len(sk) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(len(sk)), 0)) if len(sk) else np.zeros(0, np.int64)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(sk)) - first
    off = (mix64(key, salt) % np.uint64(500)).astype(np.int64)
    return ((off + rank) % 500) * 2 + male.astype(np.int64)


def id_parts(region: np.ndarray, birth: np.ndarray, seq: np.ndarray):
    y, m, d = ymd(birth)
    body = region * 10**11 + (y * 10000 + m * 100 + d) * 1000 + seq
    return body, id_check_index(body)


def id18_strings(body: np.ndarray, check_idx: np.ndarray, lower_x=None) -> pa.Array:
    chk = take(_ID_CHECK_ARR, check_idx)
    if lower_x is not None:
        chk = pc.if_else(pa.array(np.asarray(lower_x, bool)), pc.utf8_lower(chk), chk)
    return pc.binary_join_element_wise(pc.cast(pa.array(body), pa.string()), chk, "")


def id15_strings(region: np.ndarray, birth: np.ndarray, seq: np.ndarray) -> pa.Array:
    y, m, d = ymd(birth)
    v = region * 10**9 + ((y % 100) * 10000 + m * 100 + d) * 1000 + seq
    return pc.cast(pa.array(v), pa.string())


# ---------------------------------------------------------------- mobiles
MOBILE_PREFIXES = np.array([130, 131, 132, 133, 134, 135, 136, 137, 139, 147, 150, 151, 152, 153, 155, 156,
                            157, 158, 159, 166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184, 185, 186,
                            187, 188, 189, 191, 198, 199], dtype=np.int64)
STAFF_MOBILE = 13800138000  # a default number typed in by branch staff (prefix 138 is not used above)


def mobiles(idx: np.ndarray, salt: int) -> np.ndarray:
    """Distinct valid 11-digit mobiles for distinct idx (< len(MOBILE_PREFIXES) * 1e8), as int64.

    An affine bijection of the whole number space spreads neighbours over prefixes and suffixes."""
    idx = np.asarray(idx, dtype=np.int64)
    space = len(MOBILE_PREFIXES) * 10**8
    a = 2_654_435_761  # prime, so coprime with the space (2, 5, 19); idx * a stays below 2**63 for idx < 3e9
    j = (idx * a + 12_345_678 + salt * 7_777_777) % space
    return MOBILE_PREFIXES[j // 10**8] * 10**8 + j % 10**8


# variants of a valid mobile: all normalise to the same 11 digits
MOB_CLEAN, MOB_PLUS86, MOB_0086, MOB_86, MOB_SPACES, MOB_DASHES, MOB_PLUS86_DASH = range(7)
# variants that are invalid
MOB_10DIGITS, MOB_12PREFIX = 7, 8


def mobile_strings(m: np.ndarray, variant: np.ndarray) -> pa.Array:
    s = pc.cast(pa.array(np.asarray(m, dtype=np.int64)), pa.string())
    a, b, c = (pc.utf8_slice_codeunits(s, 0, 3), pc.utf8_slice_codeunits(s, 3, 7), pc.utf8_slice_codeunits(s, 7, 11))
    j = pc.binary_join_element_wise
    opts = [
        s,
        j("+86 ", s, ""),
        j("0086", s, ""),
        j("86", s, ""),
        j(a, b, c, " "),
        j(a, b, c, "-"),
        j("+86-", s, ""),
        pc.utf8_slice_codeunits(s, 0, 10),
        j("12", pc.utf8_slice_codeunits(s, 2, 11), ""),
    ]
    return choose(variant, opts)


def dirty_valid_variant(rng, n: int, dirty_share: float) -> np.ndarray:
    v = np.zeros(n, dtype=np.int64)
    d = rng.random(n) < dirty_share
    v[d] = rng.choice([MOB_PLUS86, MOB_0086, MOB_86, MOB_SPACES, MOB_DASHES, MOB_PLUS86_DASH], size=int(d.sum()),
                      p=[0.25, 0.1, 0.15, 0.25, 0.2, 0.05])
    return v


# ---------------------------------------------------------------- bank card numbers (Luhn)
CARD_BINS = np.array([622588, 622202, 621700, 436742, 625807, 622848], dtype=np.int64)


def card_numbers(idx: np.ndarray, salt: int) -> pa.Array:
    idx = np.asarray(idx, dtype=np.int64)
    acct = (idx * 7_368_787 + 100_000_007 + salt) % 10**9
    body = CARD_BINS[mix64(idx, salt).astype(np.uint64) % np.uint64(len(CARD_BINS))] * 10**9 + acct  # 15 digits
    b = body.copy()
    s = np.zeros_like(b)
    for pos in range(15):  # pos 0 = rightmost digit of the body; doubled in Luhn
        d = b % 10
        b //= 10
        if pos % 2 == 0:
            d = d * 2
            d = np.where(d > 9, d - 9, d)
        s += d
    check = (10 - s % 10) % 10
    return pc.cast(pa.array(body * 10 + check), pa.string())


# ---------------------------------------------------------------- devices
INVALID_DEVICES = ["0000000000000000", "unknown", "null", "UNKNOWN", "  "]
KIOSK_DEVICE = "a1b2c3d4e5f60718"


def device_ids(idx: np.ndarray, salt: int) -> pa.Array:
    return hex_str(mix64(idx, salt))


# ---------------------------------------------------------------- names
SURNAMES = [("王", "Wang", 7.2), ("李", "Li", 7.0), ("张", "Zhang", 6.8), ("刘", "Liu", 5.4), ("陈", "Chen", 4.6),
            ("杨", "Yang", 3.1), ("黄", "Huang", 2.2), ("赵", "Zhao", 2.0), ("吴", "Wu", 1.9), ("周", "Zhou", 1.9),
            ("徐", "Xu", 1.5), ("孙", "Sun", 1.4), ("马", "Ma", 1.3), ("朱", "Zhu", 1.2), ("胡", "Hu", 1.1),
            ("郭", "Guo", 1.1), ("何", "He", 1.0), ("高", "Gao", 1.0), ("林", "Lin", 1.0), ("罗", "Luo", 0.9),
            ("郑", "Zheng", 0.9), ("梁", "Liang", 0.8), ("谢", "Xie", 0.7), ("宋", "Song", 0.6), ("唐", "Tang", 0.6),
            ("许", "Xu", 0.6), ("韩", "Han", 0.5), ("冯", "Feng", 0.5), ("邓", "Deng", 0.5), ("曹", "Cao", 0.5),
            ("欧阳", "Ouyang", 0.1), ("司马", "Sima", 0.05)]
GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
         ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
         ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"),
         ("桂", "gui"), ("英", "ying"), ("华", "hua"), ("文", "wen"), ("辉", "hui"), ("建", "jian"), ("国", "guo"),
         ("玲", "ling"), ("红", "hong"), ("鹏", "peng"), ("宇", "yu"), ("浩", "hao"), ("欣", "xin"), ("婷", "ting"),
         ("佳", "jia"), ("子", "zi"), ("晨", "chen"), ("萱", "xuan"), ("睿", "rui")]
N_VARIANTS = 6
NAME_HANZI, NAME_HANZI_SPACE, NAME_PINYIN, NAME_UPPER, NAME_WESTERN, NAME_COMMA = range(N_VARIANTS)

_NAME_TABLE: pa.Array | None = None


def _name_table() -> pa.Array:
    global _NAME_TABLE
    if _NAME_TABLE is None:
        givens = [(h, p) for h, p in GIVEN] + [(h1 + h2, p1 + p2) for h1, p1 in GIVEN for h2, p2 in GIVEN]
        out = []
        for sh, sp, _w in SURNAMES:
            for gh, gp in givens:
                g = gp.capitalize()
                out += [sh + gh, sh + " " + gh, f"{sp} {g}", f"{sp.upper()} {gp.upper()}", f"{g} {sp}",
                        f"{sp.upper()}, {gp.upper()}"]
        _NAME_TABLE = pa.array(out)
    return _NAME_TABLE


def n_given() -> int:
    return len(GIVEN) + len(GIVEN) ** 2


def draw_name_ids(rng, n: int) -> np.ndarray:
    sw = np.array([w for _, _, w in SURNAMES])
    s = rng.choice(len(SURNAMES), size=n, p=sw / sw.sum())
    g1w = 1.0 / np.arange(1, len(GIVEN) + 1) ** 0.9
    single = rng.random(n) < 0.35
    a = rng.choice(len(GIVEN), size=n, p=g1w / g1w.sum())
    b = rng.choice(len(GIVEN), size=n, p=g1w / g1w.sum())
    g = np.where(single, a, len(GIVEN) + a * len(GIVEN) + b)
    return s * n_given() + g


def name_strings(name_ids: np.ndarray, variant: np.ndarray) -> pa.Array:
    return take(_name_table(), np.asarray(name_ids, np.int64) * N_VARIANTS + np.asarray(variant, np.int64))
