"""The segments stage: rules over the day's tags -> gold.segment_members / _stats / _overlap / _profile."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..config import ConfigError, default_conf_dir
from . import membership as M
from .definitions import (DEFAULT_PROFILE_TAGS, Checked, SegmentDef, check, load_catalog, load_definition_file,
                          load_definitions, with_definition)
from .files import overwrite
from .persons import current_ids, facts, one_id_map, revoked_persons

log = logging.getLogger(__name__)

MEMBERS = "gold.segment_members"
STATS = "gold.segment_stats"
OVERLAP = "gold.segment_overlap"
PROFILE = "gold.segment_profile"
TAG_VALUES = "gold.tag_values"
PROFILE_TABLE = "gold.customer_profile"


def conf_dir_of(config) -> Path:
    return Path(getattr(config, "conf_dir", "") or default_conf_dir())


def _sql_list(codes) -> str:
    return ", ".join("'" + c.replace("'", "''") + "'" for c in codes)


def codes_scope(codes: list[str], include: bool) -> str:
    """SQL predicate on ``segment_code``: the rows of ``codes`` (or of every other segment)."""
    if codes:
        return f"segment_code {'IN' if include else 'NOT IN'} ({_sql_list(codes)})"
    return "false" if include else "true"


def day_scope(as_of: str, codes: list[str], include: bool) -> str:
    """replaceWhere for one day and a set of segment codes (or all but them)."""
    return f"as_of = DATE'{as_of}' AND {codes_scope(codes, include)}"


# --------------------------------------------------------------------------- reads

def tags_of_day(wh, as_of: str, tags: list[str], catalog: dict[str, str]) -> DataFrame:
    """Every person of the day, one typed column per tag in ``tags``.

    gold.customer_profile is the wide row of the tags stage's latest day, written after that day's
    gold.tag_values from the same gated values (withheld tags null in both). When it holds ``as_of`` (the
    daily case) it is read: 1.2M rows at 1M persons instead of the 89M rows of the long form and the
    aggregation that turns them back into columns. An older day (a backfill) reads the long form.
    """
    if wh.exists(PROFILE_TABLE):
        profile = wh.read(PROFILE_TABLE)
        days = profile.agg(F.min("as_of").alias("lo"), F.max("as_of").alias("hi")).first()
        if days["lo"] is not None and str(days["lo"]) == as_of == str(days["hi"]):
            return M.profile_wide(profile, tags, catalog)
    if not wh.exists(TAG_VALUES):
        raise RuntimeError(f"{TAG_VALUES} does not exist: run the tags stage before segments")
    return M.tags_wide(wh.read(TAG_VALUES).where(F.col("as_of") == F.lit(as_of).cast("date")), tags, catalog)


def previous_members(wh, as_of: str, codes: list[str]) -> DataFrame:
    """(segment_code, one_id) of each segment's previous day present (in gold.segment_stats) before ``as_of``."""
    empty = wh.spark.createDataFrame([], "segment_code string, one_id bigint")
    if not codes or not wh.exists(STATS) or not wh.exists(MEMBERS):
        return empty
    prev = (wh.read(STATS).where((F.col("as_of") < F.lit(as_of).cast("date")) & F.col("segment_code").isin(codes))
            .groupBy("segment_code").agg(F.max("as_of").alias("as_of")))
    members = (wh.read(MEMBERS).join(F.broadcast(prev), ["segment_code", "as_of"])
               .select("segment_code", F.col("one_id").cast("bigint")))
    # A person whose id a merge retired since is the same person under the id kept: not an exit.
    return current_ids(members, wh, as_of).distinct()


# --------------------------------------------------------------------------- membership of the day

def checked_definitions(wh, as_of: str, conf_dir, definitions: Optional[list[SegmentDef]] = None,
                        strict: bool = False) -> Checked:
    """Definitions checked twice: structure and syntax first (no Spark), then against the catalog."""
    definitions = load_definitions(conf_dir) if definitions is None else definitions
    check(definitions, {}, strict=False)  # raises on structure / syntax before any Spark job
    catalog = load_catalog(wh, as_of, conf_dir)
    if not catalog:
        log.warning("segments: no tag catalog found (gold.tag_catalog or conf/tags); every rule segment is unavailable")
    checked = check(definitions, catalog, strict=strict)
    for code, reason in checked.unavailable.items():
        log.error("segments: segment %s unavailable for %s: %s", code, as_of, reason)
    return checked


def members_of_day(wh, as_of: str, checked: Checked, codes: Optional[list[str]] = None) -> DataFrame:
    """(segment_code, one_id) of the rule segments (``codes`` and their bases), consent applied."""
    codes = list(checked.rules) if codes is None else codes
    wanted: list[str] = []
    for c in checked.rules:  # dependency order, with bases pulled in
        chain, x = [], c
        while x:
            chain.append(x)
            x = checked.definitions[x].base
        if c in codes:
            for y in reversed(chain):
                if y not in wanted:
                    wanted.append(y)
    wanted = [c for c in checked.rules if c in wanted]
    wide = tags_of_day(wh, as_of, checked.needed_tags(wanted), checked.catalog)
    raw = M.rule_members(wide, {c: checked.rules[c].sql for c in wanted},
                         {c: checked.definitions[c].base for c in wanted})
    marketing = [c for c in wanted if checked.definitions[c].purpose == "marketing"]
    id_map = one_id_map(wh, as_of)
    revoked = revoked_persons(facts(wh, "consent", as_of), id_map)
    return M.consent_applied(raw, marketing, revoked).where(F.col("segment_code").isin(codes))


def profile_tags(checked: Checked) -> dict[str, list[str]]:
    out = {}
    for code in checked.rules:
        d = checked.definitions[code]
        tags = [t for t in (list(d.profile_tags) or list(checked.rules[code].tags)) if t in checked.catalog]
        tags += [t for t in DEFAULT_PROFILE_TAGS if t in checked.catalog and t not in tags]
        out[code] = tags
    return out


# --------------------------------------------------------------------------- the stage

def run(spark, wh, as_of: str, config) -> dict[str, int]:
    t0 = time.time()
    conf_dir = conf_dir_of(config)
    checked = checked_definitions(wh, as_of, conf_dir)
    rule_codes = list(checked.rules)
    fed = checked.fed_codes
    purposes = {c: checked.definitions[c].purpose for c in rule_codes}
    log.info("segments %s: %d rule segments, %d unavailable, %d journey-fed", as_of, len(rule_codes),
             len(checked.unavailable), len(fed))

    members_s = wh.stage(M.with_day(members_of_day(wh, as_of, checked), as_of), MEMBERS)
    log.info("segments %s: members staged at %.1f s", as_of, time.time() - t0)
    today = members_s.select("segment_code", "one_id")
    staged = {MEMBERS: members_s,
              STATS: wh.stage(M.segment_stats(as_of, today, previous_members(wh, as_of, rule_codes), purposes), STATS)}
    log.info("segments %s: entries and exits staged at %.1f s", as_of, time.time() - t0)
    staged[OVERLAP] = wh.stage(M.segment_overlap(as_of, today), OVERLAP)
    shown = profile_tags(checked)
    described = sorted({t for ts in shown.values() for t in ts})
    staged[PROFILE] = wh.stage(M.segment_profile(as_of, today, tags_of_day(wh, as_of, described, checked.catalog),
                                                 shown, checked.catalog), PROFILE)
    log.info("segments %s: overlap and profile staged at %.1f s", as_of, time.time() - t0)
    from .. import quality
    # The journeys stage writes the journey-fed groups' rows: row counts compare like with like.
    mine = codes_scope(fed, include=False)
    quality.gate(wh, as_of, staged, scopes={MEMBERS: mine, STATS: mine})

    scope = day_scope(as_of, fed, include=False)
    overwrite(wh, staged[MEMBERS], MEMBERS, partition_by=("as_of",), replace_where=scope)
    overwrite(wh, staged[STATS], STATS, partition_by=("as_of",), replace_where=scope)
    day = f"as_of = DATE'{as_of}'"
    overwrite(wh, staged[OVERLAP], OVERLAP, partition_by=("as_of",), replace_where=day)
    overwrite(wh, staged[PROFILE], PROFILE, partition_by=("as_of",), replace_where=day)
    counts = {name: df.count() for name, df in staged.items()}
    counts["segments_unavailable"] = len(checked.unavailable)
    log.info("segments %s: wrote %s in %.1fs", as_of, counts, time.time() - t0)
    return counts


# --------------------------------------------------------------------------- plan

def plan(spark, wh, as_of: str, definition, config=None) -> dict:
    """What a segment would be on ``as_of``, writing nothing.

    ``definition``: a YAML file (a ``segments:`` list, or one definition) or the
    code of a configured segment. Returns ``code``, ``size``, ``entering`` and
    ``leaving`` (counts vs the published members of that day, zero-filled when
    none), ``overlap`` (code -> persons shared with each published segment of the
    day), and the DataFrames ``members``, ``entering_ids``, ``leaving_ids`` (one_id).
    """
    conf_dir = conf_dir_of(config)
    definitions = load_definitions(conf_dir)
    text = str(definition)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        new = load_definition_file(text)
        if not new:
            raise ConfigError(f"{text}: holds no segment definition")
        for d in new:
            definitions = with_definition(definitions, d)
        code = new[0].code
    else:
        code = text
        if code not in {d.code for d in definitions}:
            raise ConfigError(f"segment {code!r} is not defined in {conf_dir / 'segments'}")
    checked = checked_definitions(wh, as_of, conf_dir, definitions)
    if checked.definitions[code].journey_fed:
        raise ConfigError(f"segment {code!r} is fed by journeys; it has no rule to plan")
    if code in checked.unavailable:
        raise ConfigError(f"segment {code!r} cannot be computed: {checked.unavailable[code]}")
    new_members = members_of_day(wh, as_of, checked, [code]).select("one_id").distinct()
    published = (wh.read(MEMBERS).where(F.col("as_of") == F.lit(as_of).cast("date"))
                 if wh.exists(MEMBERS) else spark.createDataFrame([], M.MEMBERS_SCHEMA))
    current = published.where(F.col("segment_code") == code).select("one_id")
    entering = new_members.join(current, "one_id", "left_anti")
    leaving = current.join(new_members, "one_id", "left_anti")
    overlap_rows = (published.where(F.col("segment_code") != code).join(new_members, "one_id")
                    .groupBy("segment_code").count().collect())  # one row per segment: bounded
    return {
        "code": code,
        "as_of": as_of,
        "size": new_members.count(),
        "entering": entering.count(),
        "leaving": leaving.count(),
        "overlap": {r["segment_code"]: r["count"] for r in overlap_rows},
        "members": new_members,
        "entering_ids": entering,
        "leaving_ids": leaving,
    }
