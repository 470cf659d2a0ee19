"""An independent, pure-Python reading of the landing contract, for checking the pipeline.

It shares no code with kequn: identifiers are cleaned from the contract's text,
records grouped with a plain union-find. Slow, obvious, and small-data only.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

LIMITS = {"mobile": 10, "device_id": 10, "id_no": 5}
MASTER_KEYS = {"core_customer": "cust_no", "card_account": "card_cust_id", "app_user": "app_user_id",
               "wechat_user": "openid"}
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def mobile(v):
    s = re.sub(r"[\s-]", "", v or "")
    for p in ("+86", "0086", "86"):
        if s.startswith(p) and re.fullmatch(r"1\d{10}", s[len(p):]):
            s = s[len(p):]
            break
    return s if re.fullmatch(r"1[3-9]\d{9}", s) else None


def check_char(first17):
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, W)) % 11]


def id_no(v):
    s = re.sub(r"\s", "", v or "").upper()
    if re.fullmatch(r"\d{15}", s):
        s17 = s[:6] + "19" + s[6:]
        s = s17 + check_char(s17)
    if re.fullmatch(r"\d{17}[\dX]", s) and s[17] == check_char(s[:17]):
        return s
    return None


def device(v):
    s = (v or "").strip().lower()
    if not s or re.fullmatch(r"[0-]+", s) or s in ("unknown", "null", "none", "nil"):
        return None
    return s


def _ts(v):
    try:
        return dt.datetime.fromisoformat((v or "").strip().replace("T", " "))
    except ValueError:
        return None


def master_records(landing: Path, as_of: str) -> dict[tuple[str, str], dict]:
    """Latest version per key of every master-data record delivered by ``as_of``."""
    out: dict[tuple[str, str], dict] = {}
    for source, key in MASTER_KEYS.items():
        for d in sorted((landing / source).glob("dt=*")):
            if d.name[3:] > as_of:
                continue
            for f in sorted(d.glob("*.csv")):
                with open(f, encoding="utf-8-sig", newline="") as fh:
                    for row in csv.DictReader(fh):
                        k = (row.get(key) or "").strip()
                        ts = _ts(row.get("updated_at"))
                        if not k or ts is None:
                            continue
                        cur = out.get((source, k))
                        if cur is None or ts >= cur["_ts"]:
                            out[(source, k)] = dict(row, _ts=ts)
    return out


def identifiers(source: str, row: dict) -> list[tuple[str, str]]:
    ids = [("mobile", mobile(row.get("mobile")))]
    if source == "core_customer":
        ids += [("id_no", id_no(row.get("id_no")) if row.get("id_type") == "ID_CARD" else None),
                ("cust_no", (row.get("cust_no") or "").strip() or None)]
    if source == "card_account":
        ids.append(("id_no", id_no(row.get("id_no"))))
    if source == "app_user":
        ids += [("device_id", device(row.get("device_id"))), ("cust_no", (row.get("cust_no") or "").strip() or None)]
    if source == "wechat_user":
        ids.append(("unionid", (row.get("unionid") or "").strip() or None))
    return [(t, v) for t, v in ids if v]


def expected_groups(landing: Path, as_of: str, limits=LIMITS):
    """(the partition of records into persons, {(type, value): degree} of the shared points)."""
    records = master_records(Path(landing), as_of)
    holders: dict[tuple[str, str], set] = {}
    for rec, row in records.items():
        for ident in identifiers(rec[0], row):
            holders.setdefault(ident, set()).add(rec)
    shared = {i: len(h) for i, h in holders.items() if len(h) > limits.get(i[0], 10)}
    parent = {r: r for r in records}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ident, recs in holders.items():
        if ident in shared:
            continue
        first, *rest = sorted(recs)
        for r in rest:
            parent[find(r)] = find(first)
    groups: dict = {}
    for r in records:
        groups.setdefault(find(r), set()).add(r)
    return {frozenset(g) for g in groups.values()}, shared
