"""Pure transformations of the real-time stage: who did what, and who enters which live segment.

Every function is ``DataFrame(s) -> DataFrame`` and idempotent in the sense the stream needs:
applying the same micro-batch twice (a replay after a crash) gives the same rows, because
latest-wins fields compare event times, and ``events_today`` is recounted from ``bronze.event``
rather than incremented.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .settings import RealtimeSegment

# event.source -> the master source whose key user_key is (landing contract).
ID_SOURCE = {"app": "app_user", "web": "app_user", "official_account": "wechat_user", "mini_program": "wechat_user"}

ACTIVITY_SCHEMA = ("one_id bigint, last_event_at timestamp, last_event_id string, last_source string, "
                   "last_event_type string, last_page string, activity_date date, events_today bigint, "
                   "last_login_at timestamp, last_search_at timestamp, last_search_keyword string, "
                   "updated_at timestamp")
UNRESOLVED_SCHEMA = ("event_id string, source string, user_key string, event_time timestamp, event_type string, "
                     "page string, keyword string, id_source string, queued_at timestamp")
MEMBERS_SCHEMA = ("segment_code string, one_id bigint, entered_at timestamp, last_trigger_at timestamp, "
                  "expires_at timestamp")
EVENT_FIELDS = ["event_id", "source", "user_key", "event_time", "event_type", "page", "keyword"]


def id_source(source: Column) -> Column:
    out = None
    for ev, master in ID_SOURCE.items():
        out = (F.when(source == ev, F.lit(master)) if out is None else out.when(source == ev, F.lit(master)))
    return out


def candidate_events(batch_events: DataFrame, pending: DataFrame) -> DataFrame:
    """This batch's events and the queued unresolved ones, once per event_id, with ``id_source``
    and ``from_queue`` (true when the event was already waiting)."""
    b = batch_events.select(*EVENT_FIELDS, F.lit(False).alias("from_queue"))
    p = pending.select(*EVENT_FIELDS, F.lit(True).alias("from_queue"))
    both = b.unionByName(p)
    # An event both queued and re-delivered counts as queued (it is not new to bronze).
    one = both.groupBy("event_id").agg(F.max(F.struct("from_queue", *EVENT_FIELDS[1:])).alias("e"))
    return one.select("event_id", *[F.col(f"e.{c}") for c in EVENT_FIELDS[1:]], F.col("e.from_queue"),
                      id_source(F.col("e.source")).alias("id_source"))


def resolved_events(candidates: DataFrame, id_map: DataFrame) -> DataFrame:
    """Candidates with ``one_id`` from the identity map (null when the user is not known yet)."""
    keys = candidates.select("id_source", "user_key").distinct()
    # The micro-batch's users are few: they, not the whole map, cross the network.
    known = (id_map.join(F.broadcast(keys), (id_map.source == keys.id_source) & (id_map.source_key == keys.user_key))
             .select(F.col("source").alias("_ms"), F.col("source_key").alias("_mk"), "one_id")
             .dropDuplicates(["_ms", "_mk"]))
    return (candidates.join(known, (candidates.id_source == known._ms) & (candidates.user_key == known._mk), "left")
            .drop("_ms", "_mk"))


def queue_after(pending: DataFrame, resolved: DataFrame, oldest_kept: Column, queued_at: Column) -> DataFrame:
    """The unresolved queue after this batch: still-unknown events not older than ``oldest_kept``."""
    still = resolved.where(F.col("one_id").isNull() & (F.col("event_time") >= oldest_kept))
    old = pending.select("event_id", "queued_at")
    return (still.join(old, "event_id", "left")
            .select(*EVENT_FIELDS, "id_source", F.coalesce(F.col("queued_at"), queued_at).alias("queued_at")))


def activity_updates(events: DataFrame) -> DataFrame:
    """Per one_id: latest event, latest search, latest login and the day of the latest event."""
    is_search = F.col("event_type") == "search"
    return (events.where(F.col("one_id").isNotNull()).groupBy("one_id").agg(
        F.max(F.struct("event_time", "event_id", "source", "event_type", "page")).alias("_last"),
        F.max(F.when(is_search, F.struct("event_time", "event_id", "keyword"))).alias("_search"),
        F.max(F.when(F.col("event_type") == "login", F.col("event_time"))).alias("last_login_at"))
        .select("one_id",
                F.col("_last.event_time").alias("last_event_at"), F.col("_last.event_id").alias("last_event_id"),
                F.col("_last.source").alias("last_source"), F.col("_last.event_type").alias("last_event_type"),
                F.col("_last.page").alias("last_page"), F.to_date(F.col("_last.event_time")).alias("activity_date"),
                "last_login_at", F.col("_search.event_time").alias("last_search_at"),
                F.col("_search.keyword").alias("last_search_keyword")))


def day_counts(bronze_events: DataFrame, id_map: DataFrame, days: DataFrame) -> DataFrame:
    """``(one_id, activity_date, events_on_day)``: a person's events in bronze on that day, all sources.

    ``days(one_id, activity_date)``; ``bronze_events`` should already be cut to the days' range.
    Counting what bronze holds (not adding the batch's events) keeps replays and events that
    also came by the daily batch from being counted twice.
    """
    keys = id_map.join(F.broadcast(days), "one_id").select(
        F.col("source").alias("_ms"), F.col("source_key").alias("_mk"), "one_id", "activity_date")
    ev = bronze_events.select("event_id", id_source(F.col("source")).alias("_es"), "user_key",
                              F.to_date("event_time").alias("_day"))
    return (ev.join(F.broadcast(keys), (ev._es == keys._ms) & (ev.user_key == keys._mk)
                    & (ev._day == keys.activity_date))
            .groupBy("one_id", "activity_date").agg(F.count_distinct("event_id").alias("events_on_day")))


def _newer(s_time: str, s_id: str, t_time: str, t_id: str) -> Column:
    return F.col(t_time).isNull() | (F.struct(F.col(s_time), F.col(s_id)) > F.struct(F.col(t_time), F.col(t_id)))


def merged_activity(current: DataFrame, updates: DataFrame, counts: DataFrame, now: Column) -> DataFrame:
    """New ``gold.realtime_activity`` rows for the people in ``updates``; ``current`` is the table.

    Latest event wins by (event_time, event_id), so a late event never hides a newer one;
    ``events_today`` is the count on ``activity_date`` and restarts when the date moves on.
    """
    s = (updates.join(counts, ["one_id", "activity_date"], "left")
         .withColumn("events_on_day", F.coalesce(F.col("events_on_day"), F.lit(1).cast("bigint"))))
    t = current.select(*[F.col(c).alias(f"t_{c}") for c in current.columns])
    j = s.join(t, s.one_id == t.t_one_id, "left")
    last = _newer("last_event_at", "last_event_id", "t_last_event_at", "t_last_event_id")
    search = F.col("last_search_at").isNotNull() & (
        F.col("t_last_search_at").isNull() | (F.col("last_search_at") >= F.col("t_last_search_at")))
    same_or_later_day = F.col("t_activity_date").isNull() | (F.col("activity_date") >= F.col("t_activity_date"))

    def pick(cond: Column, name: str) -> Column:
        return F.when(cond, F.col(name)).otherwise(F.col(f"t_{name}")).alias(name)

    return j.select(
        "one_id",
        *[pick(last, c) for c in ("last_event_at", "last_event_id", "last_source", "last_event_type", "last_page")],
        F.greatest("activity_date", "t_activity_date").alias("activity_date"),
        F.when(same_or_later_day, F.col("events_on_day")).otherwise(F.col("t_events_today"))
        .cast("bigint").alias("events_today"),
        F.greatest("last_login_at", "t_last_login_at").alias("last_login_at"),
        pick(search, "last_search_at"), pick(search, "last_search_keyword"),
        now.alias("updated_at"))


def _contains_any(col: Column, needles: list[str]) -> Column:
    out = F.lit(False)
    for n in needles:
        out = out | F.coalesce(F.contains(col, F.lit(n)), F.lit(False))
    return out


def rule_condition(seg: RealtimeSegment) -> Column:
    cond = F.lit(True)
    if seg.event_types:
        cond = cond & F.col("event_type").isin(*seg.event_types)
    if seg.sources:
        cond = cond & F.col("source").isin(*seg.sources)
    if seg.keyword_contains:
        cond = cond & _contains_any(F.col("keyword"), seg.keyword_contains)
    if seg.page_contains:
        cond = cond & _contains_any(F.col("page"), seg.page_contains)
    return cond


def segment_triggers(events: DataFrame, segments: tuple[RealtimeSegment, ...], now: Column) -> DataFrame:
    """``(segment_code, one_id, trigger_at, expires_at)``: people whose events match a rule and are fresh."""
    parts = []
    for seg in segments:
        window = F.expr(f"INTERVAL {int(seg.within_minutes)} MINUTES")
        hit = (events.where(F.col("one_id").isNotNull() & rule_condition(seg))
               .withColumn("expires_at", F.col("event_time") + window)
               .where(F.col("expires_at") > now)
               .groupBy("one_id").agg(F.max("event_time").alias("trigger_at"), F.max("expires_at").alias("expires_at"))
               .select(F.lit(seg.code).alias("segment_code"), "one_id", "trigger_at", "expires_at"))
        parts.append(hit)
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def merged_members(current: DataFrame, triggers: DataFrame, now: Column) -> DataFrame:
    """New ``gold.realtime_segment_members`` rows: a person whose membership lapsed (or who was
    never in) enters now; a current member's membership is extended."""
    t = current.select(*[F.col(c).alias(f"t_{c}") for c in current.columns])
    j = triggers.join(t, (triggers.segment_code == t.t_segment_code) & (triggers.one_id == t.t_one_id), "left")
    enters = F.col("t_expires_at").isNull() | (F.col("t_expires_at") <= F.col("trigger_at"))
    return j.select(
        "segment_code", "one_id",
        F.when(enters, now).otherwise(F.col("t_entered_at")).alias("entered_at"),
        F.greatest("trigger_at", "t_last_trigger_at").alias("last_trigger_at"),
        F.greatest("expires_at", "t_expires_at").alias("expires_at"))
