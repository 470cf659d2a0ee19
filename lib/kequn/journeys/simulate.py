"""A delivery system stand-in: journey actions of day D become touch CSV rows in the landing zone.

Every action of ``gold.journey_actions`` for ``D`` is sent on ``D+1`` and written to
``<landing>/touch/dt=<D+1>/journey-<D>.csv`` (the landing contract's touch columns).
The target is one record of the person able to receive the channel. A share of
sends is opened (``open_rates`` per channel), deterministically from ``seed`` and
the touch id, 0 to 2 days after sending: a same-day open fills ``opened_time`` in
that row; a later open is a re-delivery of the row in
``<landing>/touch/dt=<open day>/journey-<D>-opens.csv``, as the contract says.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta

from pyspark.sql import functions as F

from ..sampling import unit_draw
from ..segments.files import write_single_csv
from ..segments.persons import contact_records, one_id_map

log = logging.getLogger(__name__)

TOUCH_COLUMNS = ("touch_id", "campaign_id", "step", "channel", "target_source", "target_key", "sent_time",
                 "opened_time", "converted_time")
MAX_OPEN_LAG_DAYS = 2


def simulate_delivery(spark, wh, as_of: str, landing: str, open_rates: dict, seed: int = 0) -> dict[str, int]:
    d = date.fromisoformat(as_of)
    sent_day = (d + timedelta(days=1)).isoformat()
    actions = wh.read("gold.journey_actions").where(F.col("as_of") == F.lit(as_of).cast("date"))
    id_map = one_id_map(wh, as_of)
    contacts = contact_records(wh, as_of, id_map)
    rows = actions.join(contacts, ["one_id", "channel"])
    ident = F.concat_ws("|", "journey_code", F.lit(as_of), "one_id", "step", "channel")
    touch_id = F.concat(F.lit("J"), F.substring(F.sha2(ident, 256), 1, 24))
    rates = F.create_map(*[x for k, v in sorted(open_rates.items()) for x in (F.lit(k), F.lit(float(v)))])

    def unit(salt):  # per touch
        return unit_draw(F.lit(int(seed)), F.lit(salt), F.col("touch_id"))

    sent_ts = (F.lit(f"{sent_day} 09:00:00").cast("timestamp") +
               F.make_dt_interval(F.lit(0), F.lit(0), F.lit(0), (unit("sent") * 36000).cast("int")))
    df = (rows.withColumn("touch_id", touch_id)
          .withColumn("sent_ts", sent_ts)
          .withColumn("_opened", unit("open") < F.coalesce(rates[F.col("channel")], F.lit(0.0)))
          .withColumn("_lag", (unit("lag") * (MAX_OPEN_LAG_DAYS + 1)).cast("int"))
          .withColumn("open_ts", F.when(F.col("_opened"), F.col("sent_ts") + F.make_dt_interval(
              F.col("_lag"), F.lit(0), (unit("minutes") * 600).cast("int"), F.lit(0)))))
    df = df.cache()

    base = landing.rstrip("/") + "/touch"
    same_day = df.where(F.col("_opened") & (F.col("_lag") == 0)).select("touch_id").withColumn("_same", F.lit(True))
    first = df.join(same_day, "touch_id", "left")
    fmt = "yyyy-MM-dd HH:mm:ss"
    first_rows = first.select(F.col("touch_id"), F.col("journey_code").alias("campaign_id"),
                              F.col("step").cast("string").alias("step"), "channel", "target_source", "target_key",
                              F.date_format("sent_ts", fmt).alias("sent_time"),
                              F.when(F.col("_same"), F.date_format("open_ts", fmt)).alias("opened_time"),
                              F.lit(None).cast("string").alias("converted_time")).orderBy("touch_id")
    write_single_csv(first_rows, f"{base}/dt={sent_day}/journey-{as_of}.csv")
    counts = {"sent": df.count(), "opened_same_day": same_day.count(), "opened_later": 0}
    for lag in range(1, MAX_OPEN_LAG_DAYS + 1):
        later = df.where(F.col("_opened") & (F.col("_lag") == lag))
        n = later.count()
        if not n:
            continue
        open_day = (d + timedelta(days=1 + lag)).isoformat()
        rows_l = later.select(F.col("touch_id"), F.col("journey_code").alias("campaign_id"),
                              F.col("step").cast("string").alias("step"), "channel", "target_source", "target_key",
                              F.date_format("sent_ts", fmt).alias("sent_time"),
                              F.date_format("open_ts", fmt).alias("opened_time"),
                              F.lit(None).cast("string").alias("converted_time")).orderBy("touch_id")
        write_single_csv(rows_l, f"{base}/dt={open_day}/journey-{as_of}-opens.csv")
        counts["opened_later"] += n
    df.unpersist()
    log.info("simulate_delivery %s: %s", as_of, counts)
    return counts
