"""Tag-level publication gates: coverage and value-distribution drift (PSI) against the previous day.

For each tag, today's long-form values are compared with the latest earlier day in
``gold.tag_values``: coverage (share of persons with a value) must not fall below the tag's
``min_coverage`` nor collapse below ``(1 - max_coverage_drop)`` of yesterday's, and the
population stability index of the value distribution must stay at or below ``max_psi``
(numeric tags binned at yesterday's deciles, others by value, nulls excluded; only when both
days have ``psi_min_count`` values). A tag that fails is withheld from the day's outputs; the
rest publish. Two Spark jobs in all (percentiles, binned counts); the results are small.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .catalog import Catalog

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


def distributions(today: DataFrame, prev: Optional[DataFrame], catalog: Catalog, codes: list[str]):
    """Binned counts per (day, tag) and today's quantiles; returns (counts, quantiles) as dicts."""
    numeric = [c for c in codes if catalog.get(c).value_type in ("int", "decimal")]
    both = today.withColumn("_day", F.lit("today"))
    if prev is not None:
        both = both.unionByName(prev.withColumn("_day", F.lit("prev")))
    both = both.where(F.col("tag_code").isin(codes))
    quant: dict = {}
    if numeric:
        q = (both.where(F.col("tag_code").isin(numeric) & F.col("tag_value").isNotNull())
             .groupBy("_day", "tag_code")
             .agg(F.percentile_approx(F.col("tag_value").cast("double"), QUANTILES, 1000).alias("q"),
                  F.min(F.col("tag_value").cast("double")).alias("mn"),
                  F.max(F.col("tag_value").cast("double")).alias("mx"))
             .collect())
        for r in q:
            quant[(r["_day"], r["tag_code"])] = (list(r["q"]), r["mn"], r["mx"])
    edge_rows = [(c, sorted(set(quant[("prev", c)][0]))) for c in numeric if ("prev", c) in quant]
    if not edge_rows:
        edge_rows = [(c, sorted(set(quant[("today", c)][0]))) for c in numeric if ("today", c) in quant]
    spark = today.sparkSession
    edges = spark.createDataFrame(edge_rows or [("", [])], "tag_code string, edges array<double>")
    binned = (both.join(F.broadcast(edges), "tag_code", "left")
              .withColumn("bin", F.when(F.col("tag_value").isNull(), F.lit(NULL_BIN))
                          .when(F.col("edges").isNotNull(),
                                F.concat(F.lit("b"), F.expr("size(filter(edges, e -> CAST(tag_value AS DOUBLE) > e))")
                                         .cast("string")))
                          .otherwise(F.col("tag_value"))))
    counts = binned.groupBy("_day", "tag_code", "bin").agg(F.count(F.lit(1)).alias("n"))
    w = Window.partitionBy("_day", "tag_code").orderBy(F.col("n").desc(), F.col("bin"))
    counts = (counts.withColumn("_r", F.row_number().over(w))
              .withColumn("bin", F.when((F.col("_r") > MAX_BINS) & (F.col("bin") != NULL_BIN), F.lit(OTHER_BIN))
                          .otherwise(F.col("bin")))
              .groupBy("_day", "tag_code", "bin").agg(F.sum("n").alias("n")))
    out: dict = {}
    for r in counts.collect():
        out.setdefault((r["_day"], r["tag_code"]), {})[r["bin"]] = int(r["n"])
    return out, quant


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
