"""Hand-built tiny tables for the segments and journeys tests (builders only, no tests here)."""
from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from pathlib import Path

from pyspark.sql import functions as F

from kequn.segments.files import overwrite

KEYS = {"core_customer": "cust_no", "card_account": "card_cust_id", "app_user": "app_user_id",
        "wechat_user": "openid"}


def d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


def plus(day: str, n: int) -> str:
    return (d(day) + dt.timedelta(days=n)).isoformat()


def _hash(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def write_master(wh, source: str, rows: list[dict]) -> None:
    """rows: {key, mobile_token?, mobile_valid?, name_token?, batch}; one version each."""
    key = KEYS[source]
    data = [(r["key"], r.get("mobile_token"), r.get("mobile_valid", r.get("mobile_token") is not None),
             r.get("name_token"), ts(r["batch"] + " 08:00:00"), d(r["batch"]), _hash(source, r["key"], r["batch"]))
            for r in rows]
    schema = (f"{key} string, mobile_token string, mobile_valid boolean, name_token string, "
              "updated_at timestamp, _batch_dt date, _row_hash string")
    wh.overwrite(wh.spark.createDataFrame(data, schema), f"bronze.{source}")


def write_map(wh, rows: list[tuple], days: list[str]) -> None:
    """rows (source, source_key, one_id) repeated for each day in ``days``."""
    data = [(d(day), s, k, int(o)) for day in days for (s, k, o) in rows]
    df = wh.spark.createDataFrame(data, "as_of date, source string, source_key string, one_id bigint")
    overwrite(wh, df, "silver.one_id_map_history", partition_by=("as_of",))
    last = max(days)
    wh.overwrite(df.where(F.col("as_of") == F.lit(last).cast("date")).drop("as_of"), "gold.one_id_map")


def write_touches(wh, rows: list[dict]) -> None:
    """rows: touch_id, campaign_id, step, channel, target_source, target_key, sent, opened?, batch."""
    data = [(r["touch_id"], r["campaign_id"], int(r["step"]), r["channel"], r["target_source"], r["target_key"],
             ts(r["sent"]), ts(r["opened"]) if r.get("opened") else None, None, d(r["batch"]),
             _hash(r["touch_id"], r["batch"], r.get("opened"))) for r in rows]
    schema = ("touch_id string, campaign_id string, step int, channel string, target_source string, "
              "target_key string, sent_time timestamp, opened_time timestamp, converted_time timestamp, "
              "_batch_dt date, _row_hash string")
    wh.overwrite(wh.spark.createDataFrame(data, schema), "bronze.touch")


def write_consent(wh, rows: list[dict]) -> None:
    """rows: source, source_key, purpose, granted, event, batch."""
    data = [(r["source"], r["source_key"], r.get("purpose", "marketing"), bool(r["granted"]), ts(r["event"]),
             d(r["batch"]), _hash(r["source"], r["source_key"], r["event"])) for r in rows]
    schema = ("source string, source_key string, purpose string, granted boolean, event_time timestamp, "
              "_batch_dt date, _row_hash string")
    wh.overwrite(wh.spark.createDataFrame(data, schema), "bronze.consent")


def write_tag_values(wh, rows: list[tuple]) -> None:
    """rows (as_of, one_id, tag_code, tag_value)."""
    data = [(d(a), int(o), t, None if v is None else str(v)) for a, o, t, v in rows]
    df = wh.spark.createDataFrame(data, "as_of date, one_id bigint, tag_code string, tag_value string")
    overwrite(wh, df, "gold.tag_values", partition_by=("as_of",))


def write_members(wh, rows: list[tuple]) -> None:
    """gold.segment_members rows (as_of, segment_code, one_id)."""
    data = [(d(a), s, int(o)) for a, s, o in rows]
    df = wh.spark.createDataFrame(data, "as_of date, segment_code string, one_id bigint")
    overwrite(wh, df, "gold.segment_members", partition_by=("as_of",))


def write_conf(root: Path, files: dict[str, str]) -> str:
    """Write ``{relative path: yaml text}`` under ``root``; returns the conf dir."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(root)


TAG_CATALOG_YAML = """
tags:
  - {code: aum, value_type: decimal}
  - {code: aum_tier, value_type: string}
  - {code: txn_cnt_90d, value_type: int}
  - {code: is_first_purchase, value_type: boolean}
  - {code: age_band, value_type: string}
"""

SEGMENTS_YAML = """
segments:
  - code: rich
    name_zh: 富裕
    name_en: Rich
    purpose: marketing
    owner: test
    rule: "aum >= 50000"
  - code: rich_active
    name_zh: 富裕活跃
    name_en: Rich and active
    purpose: analysis
    owner: test
    base: rich
    rule: "txn_cnt_90d >= 3"
  - code: newcomer
    name_zh: 首购
    name_en: First purchase
    purpose: analysis
    owner: test
    rule: "is_first_purchase AND aum_tier IN ('mass', 'gold')"
  - code: broken_tag
    name_zh: 缺标签
    name_en: Missing tag
    purpose: analysis
    owner: test
    rule: "no_such_tag > 1"
  - code: churned
    name_zh: 流失
    name_en: Churned
    purpose: marketing
    owner: test
    fed_by: [some_journey]
"""
