"""The journeys stage: state, actions and funnel per journey; the groups journeys feed."""
from __future__ import annotations

import logging
import time
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..identity import with_one_id
from ..segments import membership as SM
from ..segments.definitions import load_definitions
from ..segments.persons import (channel_availability, current_ids, facts, one_id_map, reachable_records,
                                revoked_persons)
from ..segments.files import overwrite
from ..segments.stage import MEMBERS, STATS, codes_scope, conf_dir_of, day_scope, previous_members
from . import machine as J
from .definitions import Goal, load_journeys

log = logging.getLogger(__name__)

STATE = "gold.journey_state"
ACTIONS = "gold.journey_actions"
FUNNEL = "gold.journey_funnel"

# Fact source -> (column with the source, mapping of its values to master sources, key column, time column)
_GOAL_SOURCES = {
    "transaction": ("source", {"core": "core_customer", "card": "card_account"}, "source_key", "txn_time"),
    "event": ("source", {"app": "app_user", "web": "app_user", "official_account": "wechat_user",
                         "mini_program": "wechat_user"}, "user_key", "event_time"),
}


def goal_days(wh, as_of: str, goal: Goal, id_map: DataFrame) -> DataFrame:
    """(one_id, goal_on) of the facts meeting the goal, as of ``as_of`` (empty when the source is absent)."""
    df = facts(wh, goal.source, as_of)
    if df is None:
        return id_map.sparkSession.createDataFrame([], "one_id bigint, goal_on date")
    src_col, mapping, key_col, time_col = _GOAL_SOURCES[goal.source]
    m = F.create_map(*[x for k, v in mapping.items() for x in (F.lit(k), F.lit(v))])
    g = df.where(F.expr(goal.where)).select(m[F.col(src_col)].alias("_src"), F.col(key_col).alias("_key"),
                                            F.to_date(time_col).alias("goal_on"))
    return with_one_id(g, id_map, F.col("_src"), F.col("_key")).select("one_id", "goal_on").distinct()


def previous_entries(wh, as_of: str) -> tuple[Optional[str], DataFrame]:
    """The latest day before ``as_of`` with a journey state, and its (journey_code, one_id, entered_at), the
    ids a merge retired since replaced by the id kept (None and no rows when there is no such day)."""
    empty = wh.spark.createDataFrame([], "journey_code string, one_id bigint, entered_at date")
    if not wh.exists(STATE):
        return None, empty
    state = wh.read(STATE)
    day = state.where(F.col("as_of") < F.lit(as_of).cast("date")).agg(F.max("as_of")).first()[0]
    if day is None:
        return None, empty
    rows = state.where(F.col("as_of") == F.lit(day)).select("journey_code", F.col("one_id").cast("bigint"), "entered_at")
    return day.isoformat(), current_ids(rows, wh, as_of)


def compute(spark, wh, as_of: str, config, materialise=None) -> dict:
    """The day's journey tables as DataFrames, writing nothing (``materialise(df, name)`` may stage
    intermediates: the inputs every journey reads, then each journey's persons).

    Returns ``state``, ``actions``, ``funnel``, ``members`` (journey-fed groups:
    segment_code, one_id), ``stats`` (of those groups) and ``fed_codes``.
    """
    conf_dir = conf_dir_of(config)
    segments = {d.code: d for d in load_definitions(conf_dir)}
    jc = load_journeys(conf_dir, segments)  # raises on a bad definition before any Spark job
    fed_codes = [c for c, d in segments.items() if d.journey_fed]
    log.info("journeys %s: %s", as_of, [j.code for j in jc.journeys])

    def held(df: DataFrame, name: str) -> DataFrame:
        return materialise(df, name) if materialise is not None else df

    t0 = time.time()
    id_map = one_id_map(wh, as_of)
    touches = facts(wh, "touch", as_of)
    opens = (J.first_opens(touches, id_map, [j.code for j in jc.journeys], as_of) if touches is not None
             else spark.createDataFrame([], "journey_code string, one_id bigint, opened_on date, open_channel string"))
    # Every journey reads these three; held once, the next journey does not compute them again
    # (the stage 37.6 -> 30.4 s warm at 100,000 persons: the reachable records alone read every master source).
    availability = held(channel_availability(reachable_records(wh, as_of, id_map)), "availability")
    revoked = held(revoked_persons(facts(wh, "consent", as_of), id_map), "revoked")
    opens = held(opens, "opens")
    if materialise is not None:
        log.info("journeys %s: channels, revocations and opens held at %.1f s", as_of, time.time() - t0)
    history = (wh.read(MEMBERS).select("as_of", "segment_code", F.col("one_id").cast("bigint"))
               if wh.exists(MEMBERS) else spark.createDataFrame([], SM.MEMBERS_SCHEMA))
    # A person whose one_id a merge retired continues the journey under the id kept: entered on the
    # earliest entry of either, not left behind under an id no record carries any more.
    history = current_ids(history, wh, as_of)
    # Journey-fed groups of today come from this run, not from a previous run of the same day.
    history = history.where(~(F.col("segment_code").isin(fed_codes) & (F.col("as_of") >= F.lit(as_of).cast("date"))))
    # The entries up to the latest earlier day with a journey state are that state's; only the member days
    # after it are read for a journey it holds (a journey new since then reads every day).
    prior_day, prior = previous_entries(wh, as_of)
    prior_codes = {r["journey_code"] for r in prior.select("journey_code").distinct().collect()}  # one per journey
    recent = history.where(F.col("as_of") > F.lit(prior_day).cast("date")) if prior_day else history

    states, actions, funnels, fed = [], [], [], []
    marketing_fed = [c for c in fed_codes if segments[c].purpose == "marketing"]
    for j in jc.journeys:
        if j.code in prior_codes:
            known = prior.where(F.col("journey_code") == j.code)
            entries = J.entry_days(recent, j.entry_segment, as_of, known)
        else:
            entries = J.entry_days(history, j.entry_segment, as_of)
        goals = goal_days(wh, as_of, j.goal, id_map) if j.goal else None
        ppl = J.people(j, as_of, entries, availability, opens, revoked, goals)
        ppl = ppl.drop(*[c for c in ppl.columns if c.startswith("_") and not c.startswith(("_day_", "_avail_", "_first"))])
        ppl = held(ppl, f"people_{j.code}")
        if materialise is not None:
            log.info("journeys %s: %s: %d persons staged at %.1f s", as_of, j.code, ppl.count(), time.time() - t0)
        states.append(J.state(as_of, ppl))
        actions.append(J.due_actions(j, as_of, ppl))
        funnels.append(J.funnel(j, as_of, ppl))
        groups = SM.consent_applied(J.fed_members(j, ppl), marketing_fed, revoked)
        fed.append(groups)
        # Later journeys may enter from what this one feeds today.
        today = SM.with_day(groups, as_of).select("as_of", "segment_code", "one_id")
        history, recent = history.unionByName(today), recent.unionByName(today)

    def union(parts, schema):
        if not parts:
            return spark.createDataFrame([], schema)
        out = parts[0]
        for p in parts[1:]:
            out = out.unionByName(p)
        return out

    state_df = union(states, J.STATE_SCHEMA)
    actions_df = J.capped(union(actions, "journey_code string, one_id bigint, step int, channel string, priority int"),
                          jc.frequency_cap.max_steps_per_day)
    actions_df = actions_df.select(F.lit(as_of).cast("date").alias("as_of"), "journey_code", "one_id", "step", "channel")
    funnel_df = union(funnels, J.FUNNEL_SCHEMA)
    members = union(fed, "segment_code string, one_id bigint").distinct()
    stats = SM.segment_stats(as_of, members, previous_members(wh, as_of, fed_codes),
                             {c: segments[c].purpose for c in fed_codes})
    return {"state": state_df, "actions": actions_df, "funnel": funnel_df, "members": members, "stats": stats,
            "fed_codes": fed_codes}


def run(spark, wh, as_of: str, config) -> dict[str, int]:
    t0 = time.time()
    out = compute(spark, wh, as_of, config,
                  materialise=lambda df, name: wh.stage(df, f"gold.journey_{name}"))
    fed_codes = out["fed_codes"]
    members_s = wh.stage(SM.with_day(out["members"], as_of), MEMBERS)
    stats = out["stats"]
    staged = {
        STATE: wh.stage(out["state"], STATE),
        ACTIONS: wh.stage(out["actions"], ACTIONS),
        FUNNEL: wh.stage(out["funnel"], FUNNEL),
        MEMBERS: members_s,
        STATS: wh.stage(stats, STATS),
    }
    from .. import quality
    # Only the journey-fed groups' rows are this stage's: their row count is compared with theirs alone.
    mine = codes_scope(fed_codes, include=True)
    quality.gate(wh, as_of, staged, scopes={MEMBERS: mine, STATS: mine})

    day = f"as_of = DATE'{as_of}'"
    for name in (STATE, ACTIONS, FUNNEL):
        overwrite(wh, staged[name], name, partition_by=("as_of",), replace_where=day)
    scope = day_scope(as_of, fed_codes, include=True)
    overwrite(wh, staged[MEMBERS], MEMBERS, partition_by=("as_of",), replace_where=scope)
    overwrite(wh, staged[STATS], STATS, partition_by=("as_of",), replace_where=scope)
    counts = {name: df.count() for name, df in staged.items()}
    log.info("journeys %s: wrote %s in %.1fs", as_of, counts, time.time() - t0)
    return counts
