"""Pure transformations: tags of a day -> members, stats, overlap, profile."""
from __future__ import annotations

from typing import Iterable, Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..tags.values import long_form, wide_form
from .rules import kind_of, spark_type_of

MEMBERS_SCHEMA = "as_of date, segment_code string, one_id bigint"
STATS_SCHEMA = "as_of date, segment_code string, purpose string, size bigint, entered bigint, exited bigint"
OVERLAP_SCHEMA = "as_of date, segment_a string, segment_b string, overlap bigint"
PROFILE_SCHEMA = ("as_of date, segment_code string, tag_code string, tag_value string, members bigint, "
                  "member_share double, population bigint, population_share double, lift double")


def tags_wide(tag_values_day: DataFrame, tags: list[str], catalog: Mapping[str, str]) -> DataFrame:
    """One row per person of the day, one column per tag in ``tags``, in segments' types (null when no value)."""
    return wide_form(tag_values_day, {t: spark_type_of(catalog.get(t)) for t in tags})


def profile_wide(profile: DataFrame, tags: list[str], catalog: Mapping[str, str]) -> DataFrame:
    """What :func:`tags_wide` gives for the long form of ``profile`` (gold.customer_profile's shape: one_id
    and one typed column per tag), read from the wide row itself: no aggregation. A tag the profile
    lacks is null, as a tag without rows is in the long form."""
    have = set(profile.columns)
    return profile.select(F.col("one_id").cast("bigint").alias("one_id"),
                          *[(F.col(f"`{t}`") if t in have else F.lit(None)).cast(spark_type_of(catalog.get(t))).alias(t)
                            for t in tags])


def rule_members(wide: DataFrame, rules: Mapping[str, str], bases: Mapping[str, str | None]) -> DataFrame:
    """(segment_code, one_id) for every rule; ``rules`` code -> SQL in dependency order (bases first)."""
    if not rules:
        return wide.sparkSession.createDataFrame([], "segment_code string, one_id bigint")
    flags = wide.select("one_id", *[F.coalesce(F.expr(sql), F.lit(False)).alias(f"_s_{c}") for c, sql in rules.items()])
    for code in rules:  # dependency order: a base is final before its children use it
        base = bases.get(code)
        if base:
            flags = flags.withColumn(f"_s_{code}", F.col(f"_s_{code}") & F.col(f"_s_{base}"))
    hit = F.explode(F.array(*[F.when(F.col(f"_s_{c}"), F.lit(c)) for c in rules])).alias("segment_code")
    return flags.select("one_id", hit).where(F.col("segment_code").isNotNull()).select("segment_code", "one_id")


def consent_applied(members: DataFrame, marketing_codes: Iterable[str], revoked: DataFrame) -> DataFrame:
    """Drop persons with revoked marketing consent from marketing segments only."""
    codes = list(marketing_codes)
    if not codes:
        return members
    mk = members.where(F.col("segment_code").isin(codes)).join(revoked.select("one_id"), "one_id", "left_anti")
    return members.where(~F.col("segment_code").isin(codes)).unionByName(mk.select("segment_code", "one_id"))


def segment_stats(as_of: str, today: DataFrame, previous: DataFrame, purposes: Mapping[str, str]) -> DataFrame:
    """Size, entered and exited per segment; a row for every code in ``purposes`` (size 0 included).

    ``previous`` holds (segment_code, one_id) of each segment's previous day present.
    """
    spark = today.sparkSession
    codes = spark.createDataFrame([(c, p) for c, p in purposes.items()], "segment_code string, purpose string")
    size = today.groupBy("segment_code").agg(F.count("*").alias("size"))
    entered = (today.join(previous, ["segment_code", "one_id"], "left_anti")
               .groupBy("segment_code").agg(F.count("*").alias("entered")))
    exited = (previous.join(today, ["segment_code", "one_id"], "left_anti")
              .groupBy("segment_code").agg(F.count("*").alias("exited")))
    # No broadcast hint on ``codes``: Spark cannot build the preserved side of a left join and logs a
    # warning per query; the parts are one row per code, so the planner broadcasts them unasked.
    out = codes
    for part in (size, entered, exited):
        out = out.join(part, "segment_code", "left")
    return out.select(F.lit(as_of).cast("date").alias("as_of"), "segment_code", "purpose",
                      *[F.coalesce(F.col(c), F.lit(0)).cast("bigint").alias(c) for c in ("size", "entered", "exited")])


def segment_overlap(as_of: str, members: DataFrame) -> DataFrame:
    """Persons in both segments, for every ordered pair of distinct segments sharing someone."""
    a = members.select(F.col("segment_code").alias("segment_a"), "one_id")
    b = members.select(F.col("segment_code").alias("segment_b"), "one_id")
    return (a.join(b, "one_id").where(F.col("segment_a") != F.col("segment_b"))
            .groupBy("segment_a", "segment_b").agg(F.count("*").cast("bigint").alias("overlap"))
            .select(F.lit(as_of).cast("date").alias("as_of"), "segment_a", "segment_b", "overlap"))


def segment_profile(as_of: str, members: DataFrame, wide: DataFrame,
                    profile_tags: Mapping[str, list[str]], catalog: Mapping[str, str]) -> DataFrame:
    """Per segment and main tag, the distribution of values among members vs the whole population.

    ``wide``: every person of the day (the population), one typed column per tag of ``profile_tags``.

    Numeric tags are bucketed by the population's quartiles (``q1 [lo, hi]`` ...);
    other tags by value. lift = member_share / population_share.

    Members take their values from the wide row (a join of persons with persons), then are stacked into
    (segment, tag, value) rows that count before the shuffle. Joining members with the population's long
    form on (one_id, tag_code) moved one row per person and tag on both sides: at 1,000,000 persons that
    plan took most of the 44 s the segments stage spent on overlap and profile.
    """
    spark = members.sparkSession
    all_tags = sorted({t for ts in profile_tags.values() for t in ts})
    pairs = spark.createDataFrame([(c, t) for c, ts in profile_tags.items() for t in ts],
                                  "segment_code string, tag_code string")
    numeric = [t for t in all_tags if kind_of(catalog.get(t)) == "numeric"]
    population_values = long_form(wide, all_tags, keys=("one_id",)).where(F.col("tag_value").isNotNull())
    member_values = (long_form(members.join(wide, "one_id"), all_tags, keys=("segment_code", "one_id"))
                     .where(F.col("tag_value").isNotNull()).join(F.broadcast(pairs), ["segment_code", "tag_code"]))
    if numeric:
        num = (population_values.where(F.col("tag_code").isin(numeric))
               .withColumn("_v", F.col("tag_value").cast("double")))
        quartiles = num.groupBy("tag_code").agg(F.percentile_approx("_v", [0.25, 0.5, 0.75], 1000).alias("_q"),
                                                F.min("_v").alias("_lo"), F.max("_v").alias("_hi"))
        population_values = bucketed(population_values, numeric, quartiles)
        member_values = bucketed(member_values, numeric, quartiles)
    population = wide.agg(F.count(F.lit(1)).alias("_pop"))
    pop = population_values.groupBy("tag_code", "tag_value").agg(F.count("*").alias("population"))
    sizes = members.groupBy("segment_code").agg(F.count("*").alias("_size"))
    mem = member_values.groupBy("segment_code", "tag_code", "tag_value").agg(F.count("*").alias("members"))
    out = mem.join(pop, ["tag_code", "tag_value"]).join(sizes, "segment_code").crossJoin(F.broadcast(population))
    member_share = F.col("members") / F.col("_size")
    pop_share = F.col("population") / F.col("_pop")
    return out.select(F.lit(as_of).cast("date").alias("as_of"), "segment_code", "tag_code", "tag_value",
                      F.col("members").cast("bigint"), member_share.cast("double").alias("member_share"),
                      F.col("population").cast("bigint"), pop_share.cast("double").alias("population_share"),
                      (member_share / pop_share).cast("double").alias("lift"))


def bucketed(values: DataFrame, numeric: list[str], quartiles: DataFrame) -> DataFrame:
    """``values`` (tag_code, tag_value, ...) with each numeric tag's value replaced by its quartile's label
    (``q2 [lo, hi]``), from ``quartiles`` (tag_code, _q: the three quartiles, _lo, _hi)."""
    edges = [F.col("_lo"), F.col("_q")[0], F.col("_q")[1], F.col("_q")[2], F.col("_hi")]

    def label(i):
        return F.format_string("q%d [%s, %s]", F.lit(i + 1), edges[i].cast("string"), edges[i + 1].cast("string"))
    v = F.col("tag_value").cast("double")
    bucket = (F.when(v <= F.col("_q")[0], label(0)).when(v <= F.col("_q")[1], label(1))
              .when(v <= F.col("_q")[2], label(2)).otherwise(label(3)))
    num = values.where(F.col("tag_code").isin(numeric)).join(F.broadcast(quartiles), "tag_code")
    return (values.where(~F.col("tag_code").isin(numeric))
            .unionByName(num.select(*[bucket.alias(c) if c == "tag_value" else F.col(c) for c in values.columns])))


def with_day(df: DataFrame, as_of: str) -> DataFrame:
    return df.select(F.lit(as_of).cast("date").alias("as_of"), *df.columns)
