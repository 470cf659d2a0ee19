"""Tag-level publication gates: coverage and value-distribution drift (PSI) against the previous day.

For each tag, today's long-form values are compared with the latest earlier day in
``gold.tag_values``: coverage (share of persons with a value) must not fall below the tag's
``min_coverage`` nor collapse below ``(1 - max_coverage_drop)`` of yesterday's, and the
population stability index of the value distribution must stay at or below ``max_psi``
(numeric tags binned at yesterday's deciles, others by value, nulls excluded; only when both
days have ``psi_min_count`` values). A tag that fails is withheld from the day's outputs; the
rest publish. Today's values are binned from the wide profile (one row per person, not the long
form's one per person and tag) in three Spark jobs (deciles, numeric bins, other values), and the
day's own bins are kept in ``quality.tag_distributions`` for the next day, so yesterday's long form is
not read.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .catalog import Catalog
from .values import long_form, wide_form

log = logging.getLogger(__name__)

NULL_BIN = "__null__"
OTHER_BIN = "__other__"
MAX_BINS = 50
QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
EPS = 1e-4
GATE_RESULTS_SCHEMA = ("as_of date, tag_code string, coverage double, prev_as_of date, prev_coverage double, "
                       "psi double, status string, reason string")


@dataclasses.dataclass(frozen=True)
class GateResult:
    tag_code: str
    coverage: Optional[float]
    prev_coverage: Optional[float]
    psi: Optional[float]
    status: str            # published | withheld
    reason: str


def previous_day(wh, as_of: str) -> Optional[str]:
    if not wh.exists("gold.tag_values"):
        return None
    d = (wh.read("gold.tag_values").where(F.col("as_of") < F.lit(as_of).cast("date"))
         .agg(F.max("as_of")).first()[0])
    return None if d is None else d.isoformat()


def psi(expected: dict, actual: dict) -> float:
    """Population stability index between two {bin: count} distributions (nulls excluded)."""
    ne, na = sum(expected.values()), sum(actual.values())
    total = 0.0
    for b in set(expected) | set(actual):
        pe = max(expected.get(b, 0) / ne, EPS) if ne else EPS
        pa = max(actual.get(b, 0) / na, EPS) if na else EPS
        total += (pa - pe) * math.log(pa / pe)
    return total


@dataclasses.dataclass(frozen=True)
class DayDistribution:
    """One day's published values in bins: numeric tags at that day's deciles (``edges``), the others
    by value (the MAX_BINS commonest, the rest in OTHER_BIN); NULL_BIN counts persons without one."""
    edges: dict[str, list[float]]
    counts: dict[str, dict[str, int]]


def _numeric(catalog: Catalog, codes: list[str]) -> list[str]:
    return [c for c in codes if catalog.get(c).value_type in ("int", "decimal")]


def comparable(profile: DataFrame, catalog: Catalog, codes: list[str]) -> DataFrame:
    """The profile's tags as the gates compare them: numeric tags as double, the others as string.

    One projection of its own: written inline, a decimal's cast to double was computed once per
    comparison (nine deciles, two sets of edges, min and max); the numeric bins of 124k persons took
    5.0 s that way and 2.2 s cast once. Spark keeps a projection whose casts are read more than once
    apart (it does not inline them into the next), as the physical plan shows.
    """
    numeric = set(_numeric(catalog, codes))
    return profile.select(*[F.col(f"`{c}`").cast("double" if c in numeric else "string").alias(c) for c in codes])


def quantiles(profile: DataFrame, numeric: list[str]) -> dict[str, tuple[list, float, float]]:
    """Deciles, min and max of each numeric tag over the profile (:func:`comparable`): one aggregation,
    one row back."""
    if not numeric:
        return {}
    aggs = []
    for i, c in enumerate(numeric):
        v = F.col(f"`{c}`")
        aggs += [F.percentile_approx(v, QUANTILES, 1000).alias(f"q{i}"), F.min(v).alias(f"mn{i}"),
                 F.max(v).alias(f"mx{i}")]
    row = profile.agg(*aggs).first()
    return {c: (list(row[f"q{i}"]), row[f"mn{i}"], row[f"mx{i}"]) for i, c in enumerate(numeric) if row[f"q{i}"]}


def binned(profile: DataFrame, catalog: Catalog, codes: list[str],
           edge_sets: dict[str, dict[str, list[float]]]) -> dict[tuple[str, str], dict[str, int]]:
    """{(label, tag): {bin: persons}}: each numeric tag binned at the edges of every label that has
    edges for it, the other tags by value under the label "own". A numeric value's bin is "b<n>", n the
    number of edges strictly below it; a null's is NULL_BIN; bins of no person are left out.

    Two Spark jobs over the profile (:func:`comparable`): :func:`numeric_bins` and :func:`value_bins`.
    """
    numeric = set(_numeric(catalog, codes))
    cuts = [(label, c, edges[c]) for c in codes if c in numeric for label, edges in edge_sets.items() if c in edges]
    out = numeric_bins(profile, cuts)
    if "own" in edge_sets:
        # A numeric tag without edges of its own (no value today, so no deciles) is counted by value.
        by_value = [c for c in codes if c not in numeric or c not in edge_sets["own"]]
        out.update({("own", c): n for c, n in value_bins(profile, by_value).items()})
    return out


def numeric_bins(profile: DataFrame, cuts: list[tuple[str, str, list[float]]]) -> dict[tuple[str, str], dict[str, int]]:
    """{(label, tag): {bin: persons}} for each ``(label, tag, edges)`` of ``cuts``: one aggregation, one
    row back.

    With the edges ascending, the persons above each edge are cumulative counts, and a bin's persons
    the difference of two of them: one conditional count per edge, no row per person and bin. Stacked
    into (pair, bin) rows and grouped with the other values, 1.24M persons and 70 numeric pairs made 87M
    rows: the binning took 18-19 s, and 8-9 s counted this way (2026-12-05, BENCHMARKS.md).
    """
    if not cuts:
        return {}
    aggs = [F.count(F.lit(1))]
    for _, c, edges in cuts:
        v = F.col(f"`{c}`")
        aggs += [F.count(v)] + [F.count_if(v > F.lit(float(e))) for e in sorted(edges)]
    row = profile.agg(*[a.alias(f"_a{i}") for i, a in enumerate(aggs)]).first()
    total, at, out = row[0], 1, {}
    for label, c, edges in cuts:
        above = [row[at + i] for i in range(len(edges) + 1)] + [0]   # non-null, then above each edge
        at += len(edges) + 1
        bins = {f"b{j}": above[j] - above[j + 1] for j in range(len(edges) + 1)}
        bins[NULL_BIN] = total - above[0]
        out[(label, c)] = {b: int(n) for b, n in bins.items() if n}
    return out


def value_bins(profile: DataFrame, codes: list[str]) -> dict[str, dict[str, int]]:
    """{tag: {value: persons}} of each (string) tag of ``codes``: the MAX_BINS commonest values, the rest
    in OTHER_BIN, nulls in NULL_BIN.

    The (tag_code, value) rows are the tag values' :func:`long_form`, grouped. A stack() of this function's
    own counted 37 tags of 1.24M persons as fast (3.1-3.6 s against 3.3-3.4 s), but Spark compiles stack()
    only up to 50 rows: 80 tags took 11.1-11.4 s that way and 6.5-6.8 s this way (2026-12-07, BENCHMARKS.md).
    """
    if not codes:
        return {}
    values = long_form(profile, codes, keys=()).select(
        "tag_code", F.coalesce("tag_value", F.lit(NULL_BIN)).alias("bin"))
    counts = values.groupBy("tag_code", "bin").agg(F.count(F.lit(1)).alias("n"))
    w = Window.partitionBy("tag_code").orderBy(F.col("n").desc(), F.col("bin"))
    kept = (counts.withColumn("_r", F.row_number().over(w))
            .withColumn("bin", F.when((F.col("_r") > MAX_BINS) & (F.col("bin") != NULL_BIN), F.lit(OTHER_BIN))
                        .otherwise(F.col("bin")))
            .groupBy("tag_code", "bin").agg(F.sum("n").alias("n")))
    out: dict[str, dict[str, int]] = {}
    for r in kept.collect():   # at most MAX_BINS + 2 rows per tag
        out.setdefault(r["tag_code"], {})[r["bin"]] = int(r["n"])
    return out


def distributions(profile: DataFrame, catalog: Catalog, codes: list[str], prev: Optional[DayDistribution]):
    """Today's bins from the wide profile, for the gates and for tomorrow's.

    Returns ``(counts, quant, today)``: ``counts`` {("today"|"prev", tag): {bin: n}} with today's
    numeric values binned at the previous day's deciles where it has them (PSI compares like with
    like); ``quant`` {("today", tag): (deciles, min, max)}; ``today`` the day's own distribution, kept
    so that tomorrow need not read today's long form again.
    """
    profile = comparable(profile, catalog, codes)
    quant = quantiles(profile, _numeric(catalog, codes))
    own_edges = {c: sorted(set(q)) for c, (q, _, _) in quant.items()}
    edge_sets = {"own": own_edges}
    if prev is not None:
        edge_sets["prev"] = {c: e for c, e in prev.edges.items() if c in codes}
    b = binned(profile, catalog, codes, edge_sets)
    today = DayDistribution(own_edges, {c: b.get(("own", c), {}) for c in codes})
    counts = {("today", c): b.get(("prev", c), today.counts[c]) for c in codes}
    if prev is not None:
        counts.update({("prev", c): n for c, n in prev.counts.items() if c in codes})
    return counts, {("today", c): q for c, q in quant.items()}, today


DISTRIBUTIONS_TABLE = "quality.tag_distributions"
DISTRIBUTIONS_SCHEMA = "as_of date, tag_code string, edges array<double>, counts map<string,bigint>"


def distribution_frame(spark, as_of: str, dist: DayDistribution, codes: list[str]) -> DataFrame:
    import datetime as dt
    day = dt.date.fromisoformat(as_of)
    return spark.createDataFrame([(day, c, dist.edges.get(c), dist.counts.get(c, {})) for c in codes],
                                 DISTRIBUTIONS_SCHEMA)


def previous_distribution(wh, day: Optional[str], catalog: Catalog) -> Optional[DayDistribution]:
    """The published tags' distribution on ``day``: kept by that day's run, or (a warehouse from before
    the table existed) rebuilt once from that day's gold.tag_values."""
    if day is None:
        return None
    if wh.exists(DISTRIBUTIONS_TABLE):
        rows = wh.read(DISTRIBUTIONS_TABLE).where(F.col("as_of") == F.lit(day).cast("date")).collect()
        if rows:
            return DayDistribution({r["tag_code"]: list(r["edges"]) for r in rows if r["edges"] is not None},
                                   {r["tag_code"]: dict(r["counts"]) for r in rows})
    log.info("tags: no kept distribution for %s; rebuilding it from gold.tag_values", day)
    return published_distribution(wh, day, catalog)


def published_distribution(wh, day: str, catalog: Catalog) -> Optional[DayDistribution]:
    """The distribution of the tags published on ``day``, from gold.tag_values (its long form)."""
    long_df = wh.read("gold.tag_values").where(F.col("as_of") == F.lit(day).cast("date"))
    present = [r["tag_code"] for r in long_df.select("tag_code").distinct().collect()]  # tags published that day
    codes = [c for c in catalog.codes if c in present]
    if not codes:
        return None
    wide = wide_form(long_df, {c: catalog.get(c).spark_type for c in codes})
    return distributions(wide, catalog, codes, None)[2]


def evaluate(catalog: Catalog, codes: list[str], counts: dict, prev_exists: bool) -> dict[str, GateResult]:
    results = {}
    for c in codes:
        g = catalog.get(c).gate
        today = counts.get(("today", c), {})
        prev = counts.get(("prev", c), {})
        n_today = sum(today.values())
        cov = (n_today - today.get(NULL_BIN, 0)) / n_today if n_today else None
        n_prev = sum(prev.values())
        pcov = (n_prev - prev.get(NULL_BIN, 0)) / n_prev if (prev_exists and n_prev) else None
        vals_t = {b: n for b, n in today.items() if b != NULL_BIN}
        vals_p = {b: n for b, n in prev.items() if b != NULL_BIN}
        p = None
        if pcov is not None and sum(vals_t.values()) >= g.psi_min_count and sum(vals_p.values()) >= g.psi_min_count:
            p = psi(vals_p, vals_t)
        reasons = []
        if g.min_coverage is not None and cov is not None and cov < g.min_coverage:
            reasons.append(f"coverage {cov:.4f} below min_coverage {g.min_coverage}")
        if (g.max_coverage_drop is not None and pcov is not None and cov is not None
                and cov < (1 - g.max_coverage_drop) * pcov):
            reasons.append(f"coverage collapsed from {pcov:.4f} to {cov:.4f} (max drop {g.max_coverage_drop:.0%})")
        if g.max_psi is not None and p is not None and p > g.max_psi:
            reasons.append(f"PSI {p:.3f} above max_psi {g.max_psi}")
        status = "withheld" if reasons else "published"
        if reasons:
            log.warning("tags: gate withholds %s: %s", c, "; ".join(reasons))
        results[c] = GateResult(c, cov, pcov, p, status, "; ".join(reasons) or "ok")
    return results


def value_distribution(catalog: Catalog, code: str, counts: dict, quant: dict, top: int = 10) -> dict:
    """A small JSON-able summary of today's values: quantiles for numbers, top shares otherwise."""
    t = catalog.get(code)
    today = counts.get(("today", code), {})
    n = sum(today.values())
    nulls = today.get(NULL_BIN, 0)
    if t.value_type in ("int", "decimal"):
        q = quant.get(("today", code))
        out = {"null_share": round(nulls / n, 4) if n else None}
        if q:
            out.update({"min": q[1], "max": q[2]})
            out.update({f"p{int(round(x * 100))}": v for x, v in zip(QUANTILES, q[0]) if x in (0.1, 0.5, 0.9)})
        return out
    vals = sorted(((b, c) for b, c in today.items() if b != NULL_BIN), key=lambda x: (-x[1], x[0]))[:top]
    out = {b: round(c / n, 4) for b, c in vals} if n else {}
    if nulls:
        out["null"] = round(nulls / n, 4)
    return out


def results_frame(spark, as_of: str, prev_as_of: Optional[str], results: dict) -> DataFrame:
    import datetime as dt
    day = dt.date.fromisoformat(as_of)
    prev = dt.date.fromisoformat(prev_as_of) if prev_as_of else None
    rows = [(day, r.tag_code, r.coverage, prev, r.prev_coverage, r.psi, r.status, r.reason) for r in results.values()]
    return spark.createDataFrame(rows, GATE_RESULTS_SCHEMA)
