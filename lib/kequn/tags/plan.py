"""Catalog -> computation: one conditional-aggregation pass per source, joined once per person.

Every statistic tag of a source becomes one aggregate column ``agg FILTER (WHERE window AND
where)`` of the SAME ``groupBy(one_id)``, so the number of aggregations is the number of
sources used, never the number of tags (distinct counts are ``collect_set`` + ``size``: no
Expand). The per-source results are left-joined onto the person list (the ``person`` pass,
which always runs: from the day's map alone when no tag reads master data), defaults are
applied, then rule tags are evaluated as SQL over the wide row in dependency order. Facts are
read point-in-time with ``kequn.bronze.facts_as_of`` (from the first day of the widest window
when every tag of the source has one: :func:`window_start`) and mapped to persons with the
one_id map as of the same day.

Source views (columns a tag may reference; ``event_date`` is the default window column,
``as_of_date`` the run day):

- transaction: the bronze columns, ``event_date = to_date(txn_time)``
- event: the bronze columns, ``event_date = to_date(event_time)``
- holding: the bronze columns, ``event_date = snapshot_date``, ``latest_snapshot_date`` (the
  person's latest snapshot on or before D), ``snapshot_date_30d_ago`` (the person's latest on
  or before D-30). When every holding tag reads only those two snapshots (a ``where`` conjunct
  ``snapshot_date = latest_snapshot_date`` or ``= snapshot_date_30d_ago``), the view holds only the
  rows of those dates: :func:`snapshot_dates`
- touch: the bronze columns (re-deliveries resolved), ``event_date = to_date(sent_time)``
- consent: the bronze columns, ``event_date = to_date(event_time)``
- person: every master record of the person (core_customer, card_account, app_user,
  wechat_user as of D) with ``record_source``, ``source_key`` and the union of their
  attributes; ``event_date`` = the record's open/register/subscribe date
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .. import bronze
from ..identity import with_one_id
from ..session import concurrently
from .catalog import Catalog, Definition, Tag

log = logging.getLogger(__name__)

_COMMON = "event_date date, one_id bigint, as_of_date date"
SOURCE_SCHEMAS: dict[str, str] = {
    "transaction": ("txn_id string, source string, source_key string, txn_time timestamp, amount decimal(18,2), "
                    "direction string, channel string, category string, product_code string, " + _COMMON),
    "event": ("event_id string, source string, user_key string, device_id string, event_time timestamp, "
              "event_type string, page string, keyword string, " + _COMMON),
    "holding": ("source_key string, snapshot_date date, product_type string, balance decimal(18,2), "
                "maturity_date date, latest_snapshot_date date, snapshot_date_30d_ago date, " + _COMMON),
    "touch": ("touch_id string, campaign_id string, step int, channel string, target_source string, "
              "target_key string, sent_time timestamp, opened_time timestamp, converted_time timestamp, " + _COMMON),
    "consent": ("source string, source_key string, purpose string, granted boolean, event_time timestamp, "
                + _COMMON),
    "person": ("record_source string, source_key string, gender string, birth_date date, occupation string, "
               "marital_status string, annual_income decimal(18,2), branch_code string, open_date date, "
               "card_level string, credit_limit decimal(18,2), register_time timestamp, app_type string, "
               "subscribe_time timestamp, bound_cust_no string, mobile_valid boolean, updated_at timestamp, "
               + _COMMON),
}
MAP_HISTORY = "silver.one_id_map_history"


# --------------------------------------------------------------------------- persons

def id_map_as_of(wh, as_of: str) -> DataFrame:
    """(source, source_key, one_id) as of the day, from kequn.identity; identity must have run.

    Marked for broadcast when small enough (``kequn.identity.small_map``): every pass joins it.
    """
    from ..identity import history_day, one_id_map_as_of, small_map

    if history_day(wh, as_of) is None:
        raise RuntimeError(f"{MAP_HISTORY} has no day on or before {as_of}: run the identity stage first")
    return small_map(one_id_map_as_of(wh, as_of))


def _empty(spark, source: str) -> DataFrame:
    return spark.createDataFrame([], SOURCE_SCHEMAS[source])


def _conform(df: DataFrame, source: str, as_of: str) -> DataFrame:
    """Exactly the columns and types of SOURCE_SCHEMAS[source]."""
    from .catalog import schema_fields
    df = df.withColumn("as_of_date", F.lit(as_of).cast("date"))
    types = dict(schema_fields(SOURCE_SCHEMAS[source]))
    return df.select(*[(F.col(c) if c in df.columns else F.lit(None)).cast(t).alias(c) for c, t in types.items()])


def source_view(wh, source: str, as_of: str, id_map: DataFrame, known_by: Optional[str] = None,
                tags: Optional[list[Tag]] = None) -> DataFrame:
    """The source's facts (or master records) as of the day, each with the person's one_id.

    ``known_by`` (a later day) reads the day as known then: see :mod:`kequn.bronze`. ``tags``, the
    tags the view is read for, lets the holding view keep only the snapshots they can read.
    """
    spark = wh.spark
    d = F.lit(as_of).cast("date")
    if source == "person":
        return _conform(person_records(wh, as_of, id_map, known_by), source, as_of)
    if not wh.exists(bronze.table_name(source)):
        log.warning("tags: %s missing; its tags have no facts", bronze.table_name(source))
        return _empty(spark, source)
    facts = bronze.facts_as_of(wh, source, as_of, known_by, since=window_start(tags, as_of))
    if source == "transaction":
        out = with_one_id(facts, id_map, F.when(F.col("source") == "core", "core_customer")
                          .when(F.col("source") == "card", "card_account"), F.col("source_key"))
        out = out.withColumn("event_date", F.to_date("txn_time"))
    elif source == "event":
        out = with_one_id(facts, id_map, F.when(F.col("source").isin("app", "web"), "app_user")
                          .when(F.col("source").isin("official_account", "mini_program"), "wechat_user"),
                          F.col("user_key"))
        out = out.withColumn("event_date", F.to_date("event_time"))
    elif source == "holding":
        if tags and snapshot_bound(spark, tags):
            facts = facts.where(F.col("snapshot_date").isin(snapshot_dates(facts, as_of)))
        out = with_one_id(facts, id_map, "core_customer", F.col("source_key"))
        w = Window.partitionBy("one_id")
        out = (out.withColumn("event_date", F.col("snapshot_date"))
               .withColumn("latest_snapshot_date", F.max("snapshot_date").over(w))
               .withColumn("snapshot_date_30d_ago",
                           F.max(F.when(F.col("snapshot_date") <= F.date_sub(d, 30), F.col("snapshot_date"))).over(w)))
    elif source == "touch":
        out = with_one_id(facts, id_map, F.col("target_source"), F.col("target_key"))
        out = out.withColumn("event_date", F.to_date("sent_time"))
    elif source == "consent":
        out = with_one_id(facts, id_map, F.col("source"), F.col("source_key"))
        out = out.withColumn("event_date", F.to_date("event_time"))
    else:
        raise ValueError(f"unknown tag source {source!r}")
    return _conform(out, source, as_of)


def window_start(tags: Optional[list[Tag]], as_of: str) -> Optional[str]:
    """The first day the tags read, when every one of them has a window over the fact's own day
    (``event_date``); else None (a tag without one, such as a first purchase, reads all history).

    With it a source's pass reads the widest window's facts, not every fact kept: its cost grows with
    persons, not with the days of history.
    """
    if not tags or any(t.definition.window_days is None or t.definition.time_column != "event_date" for t in tags):
        return None
    widest = max(t.definition.window_days for t in tags)
    return (dt.date.fromisoformat(as_of) - dt.timedelta(days=widest - 1)).isoformat()


SNAPSHOT_MARKS = {"latest_snapshot_date", "snapshot_date_30d_ago"}


def snapshot_bound(spark, tags: list[Tag]) -> bool:
    """Whether every tag reads only a person's latest or 30-days-ago snapshot (a ``where`` conjunct
    ``snapshot_date = latest_snapshot_date`` or ``= snapshot_date_30d_ago``)."""
    from .catalog import equated_columns
    return all(t.definition.where and
               equated_columns(spark, t.definition.where, f"tag '{t.code}'.where", "snapshot_date") & SNAPSHOT_MARKS
               for t in tags)


def snapshot_dates(holdings: DataFrame, as_of: str) -> list:
    """Every date that is some customer's latest snapshot, or latest on or before D-30.

    Holdings are a full daily snapshot, most of a bank's rows, and the holding tags read two days of
    them. A person's latest (or 30-days-ago) date is the latest of their cust_nos', so it is one of
    these dates, and keeping every row of these dates keeps every row the tags read; the per-person
    window then gives the same dates. Filtering by date lets Delta skip the other days' files. The
    list is one date per day of history at most, never per row.
    """
    ago = F.date_sub(F.lit(as_of).cast("date"), 30)
    per_key = holdings.groupBy("source_key").agg(
        F.max("snapshot_date").alias("latest"),
        F.max(F.when(F.col("snapshot_date") <= ago, F.col("snapshot_date"))).alias("ago"))
    dates = per_key.select(F.explode(F.array("latest", "ago")).alias("d")).where("d IS NOT NULL").distinct()
    return [r["d"] for r in dates.collect()]


def person_records(wh, as_of: str, id_map: DataFrame, known_by: Optional[str] = None) -> DataFrame:
    """Every master record as of the day with its one_id, attributes unioned (null where absent).

    Read as known by a later day, records opened, registered or subscribed after ``as_of`` are left
    out: the person was not yet a customer then.
    """
    parts = []
    spec = {  # key column, then view column <- source column (absent source columns become null)
        "core_customer": ("cust_no", {"event_date": "open_date"}),
        "card_account": ("card_cust_id", {"event_date": "open_date"}),
        "app_user": ("app_user_id", {"event_date": "register_time", "bound_cust_no": "cust_no"}),
        "wechat_user": ("openid", {"event_date": "subscribe_time"}),
    }
    for src, (key, extra) in spec.items():
        if not wh.exists(bronze.table_name(src)):
            continue
        df = bronze.master_as_of(wh, src, as_of, known_by)
        df = df.withColumn("record_source", F.lit(src)).withColumn("source_key", F.col(key))
        for c, s in extra.items():
            df = df.withColumn(c, F.to_date(F.col(s)) if s in df.columns else F.lit(None).cast("date")) \
                if c == "event_date" else df.withColumn(c, F.col(s) if s in df.columns else F.lit(None))
        df = _conform(df, "person", as_of).drop("one_id")
        if bronze.known_later(as_of, known_by):
            df = df.where(F.col("event_date").isNull() | (F.col("event_date") <= F.lit(as_of).cast("date")))
        parts.append(df)
    if not parts:
        return _empty(wh.spark, "person")
    allrec = parts[0]
    for p in parts[1:]:
        allrec = allrec.unionByName(p)
    return with_one_id(allrec, id_map, F.col("record_source"), F.col("source_key"))


# --------------------------------------------------------------------------- one pass per source

def filter_condition(d: Definition, as_of: str) -> str:
    conds = []
    if d.window_days:
        conds.append(f"({d.time_column}) BETWEEN date_sub(DATE'{as_of}', {d.window_days - 1}) AND DATE'{as_of}'")
    if d.where:
        conds.append(f"({d.where})")
    return " AND ".join(conds) if conds else "true"


def stat_column(t: Tag, as_of: str):
    """The tag's aggregate over the source, restricted to its window and ``where``."""
    d = t.definition
    return F.expr(f"{d.agg} FILTER (WHERE {filter_condition(d, as_of)})").alias(t.code)


def tag_values(aggregates: DataFrame, tags: list[Tag], as_of: str) -> DataFrame:
    """Each tag's value from its aggregate column: its ``value`` expression with ``value`` bound to the
    aggregate (and ``as_of_date`` to the day), typed; the other columns pass through.

    A null aggregate (``max`` over no matching fact) stays null for the default to fill, as for a person
    with no rows in the source: ``greatest(0, ...)`` of nothing would otherwise read 0 where the
    definition means "no loan". One query per tag (filter, then aggregate) gives the same.
    ``value`` is bound as a column, one tag after the other (a ``value`` expression reads nothing
    else: kequn.tags.catalog), so the projections collapse into one that Spark compiles; a lambda
    (``transform(array(x), value -> ...)``) would keep the whole projection interpreted.
    """
    out = aggregates.withColumn("as_of_date", F.lit(as_of).cast("date"))
    for t in tags:
        d, raw = t.definition, F.col(f"`{t.code}`")
        if d.value:
            out = (out.withColumn("value", raw)
                   .withColumn(t.code, F.when(raw.isNotNull(), F.expr(d.value)).cast(t.spark_type)).drop("value"))
        else:
            out = out.withColumn(t.code, raw.cast(t.spark_type))
    return out.drop("as_of_date")


def source_pass(view: DataFrame, tags: list[Tag], as_of: str) -> DataFrame:
    """ONE aggregation over the source: one_id, every tag of the source, and _rows_in."""
    agg = view.groupBy("one_id").agg(F.count(F.lit(1)).alias("_rows_in"), *[stat_column(t, as_of) for t in tags])
    return tag_values(agg, tags, as_of).select("one_id", "_rows_in", *[F.col(f"`{t.code}`") for t in tags])


def listed_persons(id_map: DataFrame) -> DataFrame:
    """The person pass of a catalog with no person tag: one_id and its records (``_rows_in``), from the map.

    The map of the day holds exactly the master records as of the day (identity reads the same ones),
    so this lists the persons the person pass would, without reading master data and taking each
    record's latest version: at 5,000,000 persons that pass took 122 s of the reference tags' run
    (BENCHMARKS.md, tags at five million persons).

    In :func:`wide_frame`'s single plan the map's broadcast hint rises through this aggregation to the
    first left join, where Spark cannot broadcast the left side: it warns ("build left for left outer
    join") and joins as it would have. The staged passes of the stage write this frame first.
    """
    return id_map.groupBy("one_id").agg(F.count(F.lit(1)).alias("_rows_in"))


def pass_frame(wh, src: str, tags: list[Tag], as_of: str, id_map: DataFrame,
               known_by: Optional[str] = None) -> DataFrame:
    """The source's pass: :func:`source_pass` over its view, or :func:`listed_persons` where the person
    pass has no tag. A day read as known later keeps the view: it leaves out the records opened after
    the day, which the map of that day may hold."""
    if src == "person" and not tags and not bronze.known_later(as_of, known_by):
        return listed_persons(id_map)
    return source_pass(source_view(wh, src, as_of, id_map, known_by, tags), tags, as_of)


def stats_by_source(catalog: Catalog) -> dict[str, list[Tag]]:
    out: dict[str, list[Tag]] = {s: [] for s in catalog.sources()}
    for t in catalog.of_kind("statistic"):
        out[t.definition.source].append(t)
    return out


def joined(passes: dict[str, DataFrame], catalog: Catalog) -> DataFrame:
    """Person pass left-joined with the others; statistic defaults applied; rules evaluated in order."""
    wide = passes["person"].drop("_rows_in")
    for src, df in passes.items():
        if src != "person":
            wide = wide.join(df.drop("_rows_in"), "one_id", "left")
    cols = [F.col("one_id")] + [defaulted(t, F.col(t.code)).alias(t.code) for t in catalog.of_kind("statistic")]
    return rules_applied(wide.select(*cols), catalog)


def defaulted(t: Tag, value):
    """``value``, or the tag's ``default`` where it is null (a person without a value)."""
    if t.definition.default is None:
        return value
    return F.coalesce(value, F.expr(t.definition.default).cast(t.spark_type))


def rules_applied(wide: DataFrame, catalog: Catalog) -> DataFrame:
    """Rule tags as SQL over the wide row, each after the tags it references."""
    rules = catalog.of_kind("rule")
    if not rules:
        return wide
    # One projection per dependency level keeps the plan flat.
    level: dict[str, int] = {}
    for t in rules:
        deps = [d for d in catalog.deps.get(t.code, ()) if d in level]
        level[t.code] = 1 + max((level[d] for d in deps), default=0)
    for lv in sorted(set(level.values())):
        new = {}
        for t in rules:
            if level[t.code] == lv:
                new[t.code] = defaulted(t, F.expr(t.definition.expr).cast(t.spark_type))
        wide = wide.withColumns(new)
    return wide


def wide_frame(wh, as_of: str, catalog: Catalog, id_map: Optional[DataFrame] = None) -> DataFrame:
    """Pure plan: one_id + every statistic and rule tag as of the day (nothing materialised)."""
    id_map = id_map if id_map is not None else id_map_as_of(wh, as_of)
    passes = {src: pass_frame(wh, src, tags, as_of, id_map) for src, tags in stats_by_source(catalog).items()}
    return joined(passes, catalog)


def computed(wh, as_of: str, catalog: Catalog, id_map: Optional[DataFrame] = None,
             label: str = "tags", known_by: Optional[str] = None, workers: int = 1) -> DataFrame:
    """Like :func:`wide_frame`, but each source pass is materialised (staged) and logged.

    ``workers`` passes run at once (``tags.parallel_passes``): at 100,000 persons the six passes of a
    daily run took 23.5-23.7 s one after another and 20.0-20.6 s three at a time (warm, same session),
    each pass being a few jobs with planning, staging and a count between them. Each pass builds its own
    broadcast of the day's map (``small_map``), some 200 MB at 1,000,000 persons; there, three at a time
    peaked at 10.4 GB of heap in the full run and 10.5 GB in the daily one, against 10.8 and 10.6 GB one
    after another the day before (BENCHMARKS.md). 1 computes them one after another.
    """
    id_map = id_map if id_map is not None else id_map_as_of(wh, as_of)

    def staged_pass(src: str, tags: list[Tag]) -> DataFrame:
        t0 = time.time()
        staged = wh.stage(pass_frame(wh, src, tags, as_of, id_map, known_by), f"silver.{label}_pass_{src}")
        r = staged.agg(F.coalesce(F.sum("_rows_in"), F.lit(0)).alias("r"), F.count(F.lit(1)).alias("p")).first()
        log.info("tags: %s pass as of %s: %d tags, %d rows in, %d persons, %.1f s",
                 src, as_of, len(tags), r["r"], r["p"], time.time() - t0)
        return staged

    work = list(stats_by_source(catalog).items())
    staged = concurrently(wh.spark, work, staged_pass, workers, "tags.parallel_passes")
    return joined({src: df for (src, _), df in zip(work, staged)}, catalog)


def aggregate_count(df: DataFrame) -> int:
    """Number of aggregations by person (``Aggregate [one_id#...]``) in the optimized logical plan: one per
    source pass. Reading a source may aggregate by something else (the touches' repeated ids)."""
    plan = df._jdf.queryExecution().optimizedPlan().toString()
    return sum(1 for line in plan.splitlines() if line.lstrip(" :+-").startswith("Aggregate [one_id#"))
