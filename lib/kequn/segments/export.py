"""Export of a marketing segment for one delivery channel: the only reader of the PII vault."""
from __future__ import annotations

import logging

from pyspark.sql import functions as F

from ..config import ConfigError
from .definitions import load_definitions
from .files import write_single_csv
from .persons import contact_records, facts, one_id_map, revoked_persons
from .stage import MEMBERS, STATS, conf_dir_of

log = logging.getLogger(__name__)

VAULT = "bronze.pii_vault"
EXPORT_COLUMNS = ("one_id", "segment_code", "channel", "target_source", "target_key", "contact")


def segment_purpose(wh, as_of: str, segment_code: str, config=None) -> str | None:
    if wh.exists(STATS):
        row = (wh.read(STATS).where((F.col("as_of") == F.lit(as_of).cast("date")) &
                                    (F.col("segment_code") == segment_code)).select("purpose").first())
        if row is not None:
            return row["purpose"]
    for d in load_definitions(conf_dir_of(config)):
        if d.code == segment_code:
            return d.purpose
    return None


def export(spark, wh, as_of: str, segment_code: str, channel: str, out_path: str, config=None) -> int:
    """Write ``out_path`` (CSV: one_id, segment_code, channel, target_source, target_key, contact).

    ``contact`` is the clear value the channel needs: the mobile number (from the
    vault) for ``sms``, the openid for ``wechat``, the app_user_id for ``app_push``.
    Only marketing segments; members whose latest marketing consent is a refusal
    as of ``as_of`` are left out, as are members with no record for the channel.
    Returns the number of rows written.
    """
    if channel not in ("sms", "wechat", "app_push"):
        raise ConfigError(f"unknown channel {channel!r}; expected sms, wechat or app_push")
    purpose = segment_purpose(wh, as_of, segment_code, config)
    if purpose is None:
        raise ConfigError(f"segment {segment_code!r} is unknown (no stats for {as_of} and no definition)")
    if purpose != "marketing":
        raise ConfigError(f"segment {segment_code!r} has purpose {purpose!r}; only marketing segments are exported")
    if not wh.exists(MEMBERS):
        raise RuntimeError(f"{MEMBERS} does not exist: run the segments stage first")
    members = (wh.read(MEMBERS).where((F.col("as_of") == F.lit(as_of).cast("date")) &
                                      (F.col("segment_code") == segment_code)).select("one_id").distinct())
    id_map = one_id_map(wh, as_of)
    revoked = revoked_persons(facts(wh, "consent", as_of), id_map)
    members = members.join(revoked.select("one_id"), "one_id", "left_anti")
    contacts = contact_records(wh, as_of, id_map).where(F.col("channel") == channel)
    rows = members.join(contacts, "one_id")
    if channel == "sms":
        if not wh.exists(VAULT):
            raise RuntimeError(f"{VAULT} does not exist: cannot resolve mobile numbers for sms")
        vault = (wh.read(VAULT).where(F.col("pii_type") == "mobile")
                 .select(F.col("token").alias("mobile_token"), F.col("value").alias("contact")).dropDuplicates(["mobile_token"]))
        rows = rows.join(vault, "mobile_token")
    else:
        rows = rows.withColumn("contact", F.col("target_key"))
    out = rows.select(F.col("one_id").cast("string"), F.lit(segment_code).alias("segment_code"),
                      F.lit(channel).alias("channel"), "target_source", "target_key", "contact").orderBy("one_id")
    out = out.cache()
    n = out.count()
    write_single_csv(out, out_path)
    out.unpersist()
    log.info("export: segment %s on %s for %s: %d rows written", segment_code, as_of, channel, n)
    return n
