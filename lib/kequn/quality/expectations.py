"""Suites (config) -> Great Expectations expectations, for one table and one run.

Two batches per table at most:

* the table itself ("main"): keys, not-null, value sets, ranges, row count, freshness, PII scan
  and raw expectations;
* a one-row frame of derived measures ("derived"): foreign-key orphan counts, a long form's misfit
  keys and identity-graph measures, computed by Spark (anti-join, group-by) and then checked by GX with
  ``expect_column_max_to_be_between`` so that the observed value is the measure itself.

Each expectation carries ``meta.kequn_label``: the readable name written to
``quality.validation_results.expectation`` and named in a gate failure.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Callable, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import ConfigError
from .config import TableSuite

# A clear personal identifier inside a string value. The look-arounds keep digit runs inside
# longer alphanumeric strings (HMAC tokens, hashes) from matching.
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
PII_PATTERNS = {
    # 1[3-9]\d{9}, optionally with +86 / 0086 / 86 and spaces or dashes as people type them.
    "mobile": _B + r"(?:(?:\+|00)?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}" + _E,
    # 18-character ID (last may be X) or the old 15-digit form.
    "id_no": _B + r"(?:\d{17}[0-9Xx]|\d{15})" + _E,
    # 16-19 digit card number, optionally grouped by four with spaces or dashes. Issuer numbers
    # never start with 0, while placeholders do (the contract's all-zero device id).
    "card_no": _B + r"(?:[1-9]\d{15,18}|[1-9]\d{3}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?)" + _E,
}
PII_REGEX = "|".join(f"(?:{p})" for p in PII_PATTERNS.values())


@dataclass
class Planned:
    """Expectations of one batch of one table."""
    table: str
    batch: str                      # "main" | "derived"
    expectations: list              # GX Expectation objects
    frame: Optional[DataFrame] = None


def _snake_to_class(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _meta(label: str) -> dict:
    return {"kequn_label": label}


def _spark_value(value, dtype: T.DataType):
    """A config/as_of value in the Python type GX compares with the column's values."""
    if isinstance(dtype, T.DateType) and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(dtype, T.TimestampType) and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def main_expectations(suite: TableSuite, schema: T.StructType, as_of: str,
                      baseline_rows: Optional[int]) -> list:
    """The expectations over the table's own rows."""
    import great_expectations as gx

    E = gx.expectations
    present = {f.name: f.dataType for f in schema.fields}
    out: list = []
    referenced: list[str] = []

    def need(cols) -> bool:
        """Columns the suite names must exist; a missing one is itself a (critical) failure."""
        ok = True
        for c in cols:
            if c not in referenced:
                referenced.append(c)
                out.append(E.ExpectColumnToExist(column=c, severity="critical", meta=_meta(f"column_exists({c})")))
            ok = ok and c in present
        return ok

    def unique(cols: list[str], severity: str, prefix: str):
        label = _meta(f"{prefix}({', '.join(cols)})")
        if len(cols) == 1:
            return E.ExpectColumnValuesToBeUnique(column=cols[0], severity=severity, meta=label)
        return E.ExpectCompoundColumnsToBeUnique(column_list=list(cols), severity=severity, meta=label)

    if suite.keys:
        k = suite.keys
        if need(k.columns):
            out.append(unique(k.columns, k.severity, "key_unique"))
            for c in k.columns:
                out.append(E.ExpectColumnValuesToNotBeNull(column=c, severity=k.severity, meta=_meta(f"key_not_null({c})")))
    if suite.long_form:
        need([*suite.long_form.keys, suite.long_form.name])  # checked in the derived batch
    for u in suite.unique:
        if need(u.columns):
            out.append(unique(u.columns, u.severity, "unique"))
    for nn in suite.not_null:
        for c in nn.columns:
            if need([c]):
                out.append(E.ExpectColumnValuesToNotBeNull(column=c, severity=nn.severity, meta=_meta(f"not_null({c})")))
    for vs in suite.value_sets:
        if need([vs.column]):
            values = [_spark_value(v, present[vs.column]) for v in vs.values]
            out.append(E.ExpectColumnValuesToBeInSet(column=vs.column, value_set=values, severity=vs.severity,
                                                     meta=_meta(f"in_set({vs.column})")))
    for r in suite.ranges:
        if need([r.column]):
            out.append(E.ExpectColumnValuesToBeBetween(column=r.column, min_value=r.min, max_value=r.max,
                                                       severity=r.severity,
                                                       meta=_meta(f"between({r.column}, {r.min}, {r.max})")))
    if suite.row_count:
        rc = suite.row_count
        if baseline_rows is None:
            lo, hi, label = rc.min_rows, None, f"row_count(>= {rc.min_rows}; no previous version)"
        else:
            lo = max(rc.min_rows, math.ceil(baseline_rows * rc.min_ratio))
            hi = math.floor(baseline_rows * rc.max_ratio)
            label = f"row_count(previous {baseline_rows} x [{rc.min_ratio}, {rc.max_ratio}])"
        out.append(E.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi, severity=rc.severity, meta=_meta(label)))
    if suite.freshness:
        fr = suite.freshness
        if need([fr.column]):
            dtype = present[fr.column]
            day = _spark_value(as_of, dtype)
            if isinstance(dtype, T.TimestampType):
                day = dt.date.fromisoformat(as_of)
                # a timestamp column is fresh when its latest value falls on the run's day
                lo, hi = dt.datetime.combine(day, dt.time.min), dt.datetime.combine(day, dt.time.max)
            else:
                lo = hi = day
            if fr.mode == "max" and not isinstance(dtype, T.StringType):
                out.append(E.ExpectColumnMaxToBeBetween(column=fr.column, min_value=lo, max_value=hi, severity=fr.severity,
                                                        meta=_meta(f"freshness(max {fr.column} = {as_of})")))
            elif isinstance(dtype, T.TimestampType):
                out.append(E.ExpectColumnValuesToBeBetween(column=fr.column, min_value=lo, max_value=hi, severity=fr.severity,
                                                           meta=_meta(f"freshness(every {fr.column} on {as_of})")))
            else:
                out.append(E.ExpectColumnValuesToBeInSet(column=fr.column, value_set=[day], severity=fr.severity,
                                                         meta=_meta(f"freshness(every {fr.column} = {as_of})")))
    if suite.pii_scan.enabled:
        ps = suite.pii_scan
        for f in schema.fields:
            if isinstance(f.dataType, T.StringType) and f.name not in ps.exclude_columns:
                out.append(E.ExpectColumnValuesToNotMatchRegex(
                    column=f.name, regex=PII_REGEX, severity=ps.severity,
                    meta=_meta(f"pii_scan({f.name})"),
                    description="no value looks like a mobile, ID or card number"))
    for i, raw in enumerate(suite.expectations):
        cls = getattr(E, _snake_to_class(raw.type), None)
        if cls is None:
            raise ConfigError(f"quality suite {suite.table}: expectations[{i}].type: unknown GX expectation '{raw.type}'")
        cols = [raw.kwargs["column"]] if "column" in raw.kwargs else list(raw.kwargs.get("column_list", []))
        if need(cols):
            label = f"{raw.type}({', '.join(cols)})" if cols else raw.type
            out.append(cls(**raw.kwargs, severity=raw.severity, meta=_meta(label)))
    return out


# A long form names a table's tags (72 shipped); more names than this is not one, and would take
# a column of 63 bits for every 63 of them.
MAX_LONG_FORM_NAMES = 4096


def long_form_misfits(df: DataFrame, keys: list[str], name: str) -> DataFrame:
    """One row, one column ``misfits``: how many ``keys`` tuples of ``df`` do not hold exactly one row for
    each ``name`` found in ``df`` (a name twice, a name missing, a null name).

    Per key: its rows and, for every block of 63 names, the OR of one bit per name. A key fits when it
    has as many rows as there are names and every bit is set: n rows covering n names hold each once.
    Both are partial aggregates, reduced before the shuffle, so the shuffle carries a row per key
    rather than per key and name. The names are read first (one small aggregation), at most
    ``MAX_LONG_FORM_NAMES``.
    """
    found = [r[0] for r in df.where(F.col(name).isNotNull()).select(name).distinct()
             .limit(MAX_LONG_FORM_NAMES + 1).collect()]
    if len(found) > MAX_LONG_FORM_NAMES:
        raise ConfigError(f"long_form: more than {MAX_LONG_FORM_NAMES} distinct values of `{name}`; "
                          "a long form names at most that many (declare the key with `keys` instead)")
    names = sorted(found)
    n = len(names)
    # 0-based position of the row's name; null for a null name, whose row then sets no bit.
    position = F.array_position(F.array(*[F.lit(v) for v in names]), F.col(name)) - 1
    per_row = df.select(*keys, position.alias("_i"))
    blocks = range((n + 62) // 63)
    bits = [F.expr(f"bit_or(CASE WHEN _i >= {b * 63} AND _i < {(b + 1) * 63} "
                   f"THEN shiftleft(1L, CAST(_i - {b * 63} AS INT)) ELSE 0L END)").alias(f"_b{b}")
            for b in blocks]
    per_key = per_row.groupBy(*keys).agg(F.count(F.lit(1)).alias("_rows"), *bits)
    fits = F.col("_rows") == n
    for b in blocks:
        fits = fits & (F.col(f"_b{b}") == F.lit((1 << min(63, n - b * 63)) - 1))
    return per_key.agg(F.count(F.when(~fits, 1)).cast("long").alias("misfits"))


def _name(*parts: str) -> str:
    return "__".join(re.sub(r"[^0-9A-Za-z]+", "_", p) for p in parts)


def derived_expectations(suite: TableSuite, df: DataFrame, as_of: str,
                         lookup: Callable[[str], Optional[DataFrame]], log) -> Optional[Planned]:
    """The one-row frame of derived measures and the expectations on it; None when there is nothing."""
    import great_expectations as gx

    E = gx.expectations
    measures: list[DataFrame] = []
    exps: list = []
    present = set(df.columns)
    for fk in suite.foreign_keys:
        ref_cols = fk.ref_columns or fk.columns
        if len(ref_cols) != len(fk.columns):
            raise ConfigError(f"quality suite {suite.table}: foreign key {fk.columns} -> {fk.references}{ref_cols}: "
                              "columns and ref_columns differ in length")
        name = _name("fk_orphans", *fk.columns, fk.references)
        label = f"foreign_key({', '.join(fk.columns)} -> {fk.references}({', '.join(ref_cols)}))"
        if not set(fk.columns) <= present:
            continue  # main batch reports the missing column
        ref = lookup(fk.references)
        keys = df.select(*fk.columns).where(" AND ".join(f"`{c}` IS NOT NULL" for c in fk.columns)).distinct()
        if ref is None or not set(ref_cols) <= set(ref.columns):
            log.warning("quality: %s: reference %s missing; every key counts as an orphan", suite.table, fk.references)
            orphans = keys
        else:
            if "as_of" in ref.columns:
                # A history table: compare with its latest day on or before the run's, so re-running an
                # old day checks against that day's ids, not today's.
                ref = ref.where(F.col("as_of") <= F.lit(as_of).cast("date"))
                day = ref.agg(F.max("as_of").alias("d")).first()["d"]
                ref = ref.where(F.col("as_of") == F.lit(day))
            refk = ref.select(*[F.col(r).alias(c) for r, c in zip(ref_cols, fk.columns)]).distinct()
            orphans = keys.join(refk, list(fk.columns), "left_anti")
        measures.append(orphans.agg(F.count(F.lit(1)).cast("long").alias(name)))
        exps.append(E.ExpectColumnMaxToBeBetween(column=name, min_value=0, max_value=fk.max_orphans,
                                                 severity=fk.severity, meta=_meta(label)))
    lf = suite.long_form
    if lf is not None and set(lf.keys) | {lf.name} <= present:
        column = _name("long_form_misfits", *lf.keys, lf.name)
        measures.append(long_form_misfits(df, list(lf.keys), lf.name).withColumnRenamed("misfits", column))
        exps.append(E.ExpectColumnMaxToBeBetween(
            column=column, min_value=0, max_value=0, severity=lf.severity,
            meta=_meta(f"long_form({', '.join(lf.keys)} x {lf.name}: one row per key and {lf.name})")))
    idc = suite.identity
    if idc is not None:
        if idc.max_largest_component is not None and "one_id" in present:
            measures.append(df.groupBy("one_id").count()
                            .agg(F.coalesce(F.max("count"), F.lit(0)).cast("long").alias("largest_component")))
            exps.append(E.ExpectColumnMaxToBeBetween(column="largest_component", min_value=0,
                                                     max_value=idc.max_largest_component, severity=idc.severity,
                                                     meta=_meta(f"largest_component(<= {idc.max_largest_component})")))
        if idc.max_blocked_share is not None:
            health = lookup(idc.health_table)
            if health is None or idc.blocked_share_column not in health.columns:
                log.warning("quality: %s: %s.%s not available; blocked-share bound not checked",
                            suite.table, idc.health_table, idc.blocked_share_column)
            else:
                h = health.where(F.col("as_of") == F.lit(as_of).cast("date")) if "as_of" in health.columns else health
                measures.append(h.agg(F.max(F.col(idc.blocked_share_column)).cast("double").alias("blocked_share")))
                exps.append(E.ExpectColumnMaxToBeBetween(column="blocked_share", min_value=0.0,
                                                         max_value=idc.max_blocked_share, severity=idc.severity,
                                                         meta=_meta(f"blocked_share(<= {idc.max_blocked_share})")))
    if not measures:
        return None
    frame = measures[0]
    for m in measures[1:]:
        frame = frame.crossJoin(m)
    return Planned(suite.table, "derived", exps, frame)
