"""The journey state machine as pure DataFrame functions.

For a day ``D`` and a journey, each person who entered on ``E <= D`` (first day
in the entry segment) gets a schedule: steps on ``E + offset_k - offset_f`` for
the steps ``k >= f``, where ``f`` is the first step with a channel the person
can receive (``offset_k`` = cumulative ``wait_days``), and a no-response exit
``after_days`` after the last step. Then the earliest of these, if on or before
``D``, ends the journey: a marketing revocation (``opted_out``), the first open of
any of the journey's touches (``responded``), the no-response exit. Ties go in
that order. Everything derives from facts of ``D`` and the membership history,
so re-running a day or replaying all days gives the same tables.
"""
from __future__ import annotations

from typing import Mapping

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..identity import with_one_id
from .definitions import CHANNELS, Journey

STATE_SCHEMA = ("as_of date, journey_code string, one_id bigint, step int, status string, "
                "entered_at date, updated_at date")
ACTIONS_SCHEMA = "as_of date, journey_code string, one_id bigint, step int, channel string"
FUNNEL_COLUMNS = ("entered", "step_1", "step_2", "step_3", "responded_app_push", "responded_sms",
                  "responded_wechat", "churned", "opted_out", "control")
FUNNEL_SCHEMA = ("as_of date, journey_code string, " + ", ".join(f"{c} bigint" for c in FUNNEL_COLUMNS) +
                 ", control_response_rate double, treatment_response_rate double")


def is_control(journey_code: str, share: float):
    """Deterministic by one_id (salted by the journey): pmod(xxhash64(code, one_id), 10000) < share * 10000."""
    return F.pmod(F.xxhash64(F.lit(journey_code), F.col("one_id")), F.lit(10000)) < F.lit(int(round(share * 10000)))


def entry_days(history: DataFrame, segment_code: str, as_of: str, known: DataFrame | None = None) -> DataFrame:
    """(one_id, entered_at): first day each person is in ``segment_code``, on or before ``as_of``.

    ``known`` (one_id, entered_at): the entries as of an earlier day P (that day's journey state); then
    ``history`` need only hold the days after P, and a day's work grows with the persons in the journey,
    not with the days of history kept.
    """
    days = (history.where((F.col("segment_code") == segment_code) & (F.col("as_of") <= F.lit(as_of).cast("date")))
            .select("one_id", F.col("as_of").alias("entered_at")))
    if known is not None:
        days = days.unionByName(known.select("one_id", "entered_at"))
    return days.groupBy("one_id").agg(F.min("entered_at").alias("entered_at"))


def first_opens(touches: DataFrame, id_map: DataFrame, journey_codes: list[str], as_of: str) -> DataFrame:
    """(journey_code, one_id, opened_on, open_channel): the earliest open of each person in each journey."""
    t = touches.where(F.col("campaign_id").isin(journey_codes) & F.col("opened_time").isNotNull() &
                      (F.to_date("opened_time") <= F.lit(as_of).cast("date")))
    t = with_one_id(t, id_map, F.col("target_source"), F.col("target_key"))
    order = F.create_map(*[x for i, c in enumerate(CHANNELS) for x in (F.lit(c), F.lit(i))])
    w = Window.partitionBy("campaign_id", "one_id").orderBy(F.col("opened_time"), order[F.col("channel")])
    return (t.withColumn("_rn", F.row_number().over(w)).where("_rn = 1")
            .select(F.col("campaign_id").alias("journey_code"), "one_id",
                    F.to_date("opened_time").alias("opened_on"), F.col("channel").alias("open_channel")))


def people(journey: Journey, as_of: str, entries: DataFrame, availability: DataFrame, opens: DataFrame,
           revoked: DataFrame, goals: DataFrame | None = None) -> DataFrame:
    """One row per person in the journey with schedule, outcome, status and step as of ``as_of``."""
    d = F.lit(as_of).cast("date")
    offs = journey.offsets
    n = len(journey.steps)
    df = (entries.join(availability, "one_id", "left")
          .join(opens.where(F.col("journey_code") == journey.code).drop("journey_code"), "one_id", "left")
          .join(revoked, "one_id", "left"))
    for c in CHANNELS:
        df = df.withColumn(f"has_{c}", F.coalesce(F.col(f"has_{c}"), F.lit(False)))
    for i, s in enumerate(journey.steps, start=1):
        avail = F.lit(False)
        for c in s.channels:
            avail = avail | F.col(f"has_{c}")
        df = df.withColumn(f"_avail_{i}", avail)
    first = F.lit(n)
    for i in range(n, 0, -1):
        first = F.when(F.col(f"_avail_{i}"), F.lit(i)).otherwise(first)
    df = df.withColumn("_first", first)
    first_off = F.element_at(F.array(*[F.lit(o) for o in offs]), F.col("_first"))
    df = df.withColumn("_shift", first_off)
    for i, o in enumerate(offs, start=1):
        df = df.withColumn(f"_day_{i}", F.when(F.col("_first") <= i,
                                               F.date_add("entered_at", F.lit(o) - F.col("_shift"))))
    df = df.withColumn("_end", F.date_add("entered_at", F.lit(offs[-1] + journey.on_not_opened.after_days)
                                          - F.col("_shift")))
    o = F.when((F.col("opened_on") >= F.col("entered_at")) & (F.col("opened_on") <= d), F.col("opened_on"))
    r = F.when(F.col("revoked_on").isNotNull(), F.greatest(F.col("revoked_on"), F.col("entered_at")))
    c = F.when(F.col("_end") <= d, F.col("_end"))
    df = df.withColumn("_o", o).withColumn("_r", r).withColumn("_c", c)
    df = df.withColumn("_term", F.least("_o", "_r", "_c"))
    status = (F.when(F.col("_term").isNull(), F.lit("active"))
              .when(F.col("_r") == F.col("_term"), F.lit("opted_out"))
              .when(F.col("_o") == F.col("_term"), F.lit(journey.on_opened.status))
              .otherwise(F.lit(journey.on_not_opened.status)))
    df = df.withColumn("status", status)
    # Last step reached: scheduled on or before D and before the end (an exit day sends nothing;
    # the no-response exit comes after every step anyway).
    limit = F.when(F.col("_term").isNull(), F.date_add(d, 1)).otherwise(F.col("_term"))
    step = F.lit(0)
    for i in range(1, n + 1):
        step = F.when(F.col(f"_day_{i}").isNotNull() & (F.col(f"_day_{i}") < limit), F.lit(i)).otherwise(step)
    df = df.withColumn("step", step.cast("int"))
    step_day = F.element_at(F.array(*[F.col(f"_day_{i}") for i in range(1, n + 1)]), F.greatest(F.col("step"), F.lit(1)))
    df = df.withColumn("updated_at", F.coalesce(F.col("_term"), step_day, F.col("entered_at")))
    df = df.withColumn("is_control", is_control(journey.code, journey.control_share))
    df = df.withColumn("responded_channel", F.when(F.col("status") == journey.on_opened.status, F.col("open_channel")))
    if goals is not None:
        g = (df.select("one_id", "entered_at").join(goals, "one_id")
             .where((F.col("goal_on") >= F.col("entered_at")) & (F.col("goal_on") <= d))
             .select("one_id").distinct().withColumn("goal_reached", F.lit(True)))
        df = df.join(g, "one_id", "left").withColumn("goal_reached", F.coalesce(F.col("goal_reached"), F.lit(False)))
    else:
        df = df.withColumn("goal_reached", F.col("status") == journey.on_opened.status)
    return df.withColumn("journey_code", F.lit(journey.code))


def state(as_of: str, ppl: DataFrame) -> DataFrame:
    return ppl.select(F.lit(as_of).cast("date").alias("as_of"), "journey_code", F.col("one_id").cast("bigint"),
                      "step", "status", "entered_at", "updated_at")


def due_actions(journey: Journey, as_of: str, ppl: DataFrame) -> DataFrame:
    """(journey_code, one_id, step, channel, priority) due on ``as_of``: treatment, active, step day is today."""
    d = F.lit(as_of).cast("date")
    items = []
    for i, s in enumerate(journey.steps, start=1):
        for ch in s.channels:
            items.append(F.when((F.col(f"_day_{i}") == d) & F.col(f"has_{ch}"),
                                F.struct(F.lit(i).alias("step"), F.lit(ch).alias("channel"))))
    due = (ppl.where(~F.col("is_control") & (F.col("status") == "active"))
           .select("journey_code", "one_id", F.explode(F.array(*items)).alias("a"))
           .where(F.col("a").isNotNull()))
    return due.select("journey_code", F.col("one_id").cast("bigint"), F.col("a.step").cast("int").alias("step"),
                      F.col("a.channel").alias("channel"), F.lit(journey.priority).alias("priority"))


def capped(actions: DataFrame, max_steps_per_day: int) -> DataFrame:
    """At most ``max_steps_per_day`` (journey, step) per person, by journey priority then code."""
    w = Window.partitionBy("one_id").orderBy("priority", "journey_code", "step")
    return (actions.withColumn("_rk", F.dense_rank().over(w)).where(F.col("_rk") <= max_steps_per_day)
            .drop("_rk", "priority"))


def fed_members(journey: Journey, ppl: DataFrame) -> DataFrame:
    """(segment_code, one_id) of the groups this journey feeds (treatment only)."""
    t = ppl.where(~F.col("is_control"))
    parts = []
    feeds = journey.on_opened.feeds
    if feeds:
        m = F.create_map(*[x for ch, g in feeds.items() for x in (F.lit(ch), F.lit(g))])
        parts.append(t.where(F.col("status") == journey.on_opened.status)
                     .select(m[F.col("responded_channel")].alias("segment_code"), "one_id"))
    for g in journey.on_not_opened.feeds:
        parts.append(t.where(F.col("status") == journey.on_not_opened.status)
                     .select(F.lit(g).alias("segment_code"), "one_id"))
    if not parts:
        return ppl.sparkSession.createDataFrame([], "segment_code string, one_id bigint")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.where(F.col("segment_code").isNotNull()).select("segment_code", F.col("one_id").cast("bigint"))


def funnel(journey: Journey, as_of: str, ppl: DataFrame) -> DataFrame:
    """One row: cumulative counts of the journey as of ``as_of`` (see docs/segments_journeys.md)."""
    t = ~F.col("is_control")

    def cnt(cond):
        return F.sum(F.when(cond, 1).otherwise(0)).cast("bigint")

    def sent(i):
        if i > len(journey.steps):
            return F.lit(False)
        return (F.col("_first") <= i) & (F.col("step") >= i) & F.col(f"_avail_{i}")

    def rate(group):
        return (F.sum(F.when(group & F.col("goal_reached"), 1).otherwise(0)) /
                F.nullif(F.sum(F.when(group, 1).otherwise(0)), F.lit(0))).cast("double")

    aggs = [F.count("*").cast("bigint").alias("entered")]
    aggs += [cnt(t & sent(i)).alias(f"step_{i}") for i in (1, 2, 3)]
    aggs += [cnt(t & (F.col("status") == journey.on_opened.status) & (F.col("responded_channel") == c))
             .alias(f"responded_{c}") for c in ("app_push", "sms", "wechat")]
    aggs += [cnt(t & (F.col("status") == "churned")).alias("churned"),
             cnt(t & (F.col("status") == "opted_out")).alias("opted_out"),
             cnt(F.col("is_control")).alias("control"),
             rate(F.col("is_control")).alias("control_response_rate"),
             rate(t).alias("treatment_response_rate")]
    row = ppl.agg(*aggs)
    return row.select(F.lit(as_of).cast("date").alias("as_of"), F.lit(journey.code).alias("journey_code"),
                      *[F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) for c in FUNNEL_COLUMNS],
                      "control_response_rate", "treatment_response_rate")
