"""The tag catalog: YAML under ``conf/tags/`` turned into frozen dataclasses and validated.

A tag is a YAML entry, never a Python function. Three kinds:

- ``statistic``: an aggregate over one source per person, optionally windowed
  (``window_days``: the dates ``D-N+1 .. D`` of ``time_column``, default ``event_date``)
  and filtered (``where``). ``agg`` is ONE built-in aggregate call; the planner attaches
  the window and filter to it as ``FILTER (WHERE ...)`` so that every tag of a source is
  computed in one aggregation pass. ``value`` is an optional scalar expression over the
  aggregate (named ``value``), ``default`` a SQL literal for persons with no value.
- ``rule``: a SQL expression over other (statistic or rule) tags, evaluated per person.
- ``model``: an MLlib model (need propensity or k-means cluster), see ``ModelDef``.

:func:`load_catalog` checks structure (no Spark); :func:`validate` checks the SQL with
Spark's parser and a cheap analysis on empty DataFrames of the sources' schemas (no Spark
job), and orders tags so that each comes after the tags it references.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal, Optional

from ..config import ConfigError, dependency_order, load_dir

CATEGORIES = ("basic", "behaviour", "value", "risk", "marketing", "lifecycle", "need")
KINDS = ("rule", "statistic", "model")
VALUE_TYPES = ("string", "int", "decimal", "boolean")
SOURCES = ("transaction", "event", "holding", "touch", "consent", "person")
# Spark type each value_type is held in (customer_profile columns); tag_values holds the string form.
SPARK_TYPES = {"string": "string", "int": "bigint", "decimal": "decimal(20,2)", "boolean": "boolean"}
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
RESERVED = {"one_id", "as_of", "as_of_date", "value"}


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Per-tag publication gate; None disables a check."""
    min_coverage: Optional[float] = None          # absolute floor on the share of persons with a value
    max_coverage_drop: Optional[float] = 0.5      # withheld when coverage < (1 - this) * yesterday's
    max_psi: Optional[float] = 0.25               # population stability index vs yesterday
    psi_min_count: int = 100                      # PSI only when both days have this many values


@dataclasses.dataclass(frozen=True)
class ModelDef:
    method: Literal["logistic", "gbt", "kmeans"]
    features: list[str]                           # tag codes (numeric or boolean)
    # propensity models
    label_source: Optional[str] = None            # transaction | event | holding | touch
    label_where: Optional[str] = None             # a fact matching this in (T, D] is a positive
    horizon_days: int = 90                        # features as of T = D - horizon_days
    min_history_days: int = 30                    # T is at least this long after the first fact
    min_label_days: int = 14                      # else: too little history, skip
    min_train_rows: int = 20
    # rows a fit uses (labelled rows and their test split; k-means: the persons the centres are fitted on),
    # about this many persons drawn by one_id when there are more: the fit's cost stays bounded as persons
    # grow (null: every row)
    max_train_rows: Optional[int] = 500_000
    # features as of T read from: delivery = batches dated <= T only; event = every batch up to D, event
    # times <= T (history that came in a later backfill); auto = delivery when batches reach back to T
    feature_cutoff: Literal["auto", "delivery", "event"] = "auto"
    # a model fitted on a run day R with D - retrain_days < R <= D under the same definition (model and
    # features) is reused, not refitted; 1 = fit every day (a re-run of a day always reuses that day's fit)
    retrain_days: int = 7
    high: float = 0.5                             # score >= high -> 'high'
    medium: float = 0.2                           # score >= medium -> 'medium', else 'low'
    # k-means
    k: int = 5
    log_features: bool = True                     # log1p before standardising (skewed money)
    seed: int = 42


@dataclasses.dataclass(frozen=True)
class Definition:
    source: Optional[str] = None
    window_days: Optional[int] = None
    time_column: str = "event_date"
    where: Optional[str] = None
    agg: Optional[str] = None
    value: Optional[str] = None
    default: Optional[str] = None
    expr: Optional[str] = None
    model: Optional[ModelDef] = None


@dataclasses.dataclass(frozen=True)
class Tag:
    code: str
    name_zh: str
    name_en: str
    category: Literal["basic", "behaviour", "value", "risk", "marketing", "lifecycle", "need"]
    kind: Literal["rule", "statistic", "model"]
    value_type: Literal["string", "int", "decimal", "boolean"]
    description: str
    definition: Definition
    gate: GateConfig = dataclasses.field(default_factory=GateConfig)

    @property
    def spark_type(self) -> str:
        return SPARK_TYPES[self.value_type]

    def definition_sql(self) -> str:
        """A one-line human-readable definition for gold.tag_catalog."""
        d = self.definition
        if self.kind == "rule":
            return d.expr or ""
        if self.kind == "model":
            m = d.model
            return f"{m.method}({', '.join(m.features)})" + (
                f" -> P({m.label_source}: {m.label_where} within {m.horizon_days}d)" if m.label_where else "")
        parts = [f"{d.agg} ON {d.source}"]
        if d.window_days:
            parts.append(f"WINDOW {d.window_days}d ON {d.time_column}")
        if d.where:
            parts.append(f"WHERE {d.where}")
        if d.value:
            parts.append(f"VALUE {d.value}")
        if d.default is not None:
            parts.append(f"DEFAULT {d.default}")
        return " ".join(parts)


@dataclasses.dataclass(frozen=True)
class Catalog:
    tags: tuple[Tag, ...]                         # in dependency order once validated
    # tag -> tags it references; filled by validate()
    deps: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __iter__(self):
        return iter(self.tags)

    def __len__(self):
        return len(self.tags)

    def get(self, code: str) -> Tag:
        return self.by_code[code]

    @property
    def by_code(self) -> dict[str, Tag]:
        return {t.code: t for t in self.tags}

    @property
    def codes(self) -> list[str]:
        return [t.code for t in self.tags]

    def of_kind(self, kind: str) -> list[Tag]:
        return [t for t in self.tags if t.kind == kind]

    def sources(self) -> list[str]:
        """Sources with at least one statistic tag; 'person' always (it is the list of persons)."""
        used = {t.definition.source for t in self.of_kind("statistic")}
        return ["person"] + [s for s in SOURCES if s in used and s != "person"]

    def subset(self, codes) -> "Catalog":
        """The given tags and everything they depend on, in catalog order."""
        need, stack = set(), list(codes)
        deps = self.deps or dependencies(self)
        while stack:
            c = stack.pop()
            if c not in need:
                need.add(c)
                stack.extend(deps.get(c, ()))
        return Catalog(tuple(t for t in self.tags if t.code in need), {c: self.deps.get(c, ()) for c in need})


def default_tags_dir() -> Path:
    from ..config import default_conf_dir
    return default_conf_dir() / "tags"


def load_catalog(directory: Optional[Path] = None) -> Catalog:
    """Read every ``*.yaml`` under ``directory`` (key ``tags``) and check its structure (no Spark)."""
    directory = Path(directory) if directory else default_tags_dir()
    tags = load_dir(Tag, directory, "tags")
    return check_structure(tags, where=str(directory))


def catalog_from_dicts(entries: list[dict], where: str = "<inline>") -> Catalog:
    """Build a catalog from plain dicts (as YAML would give); used by tests and the benchmark."""
    from ..config import parse
    return check_structure([parse(Tag, e, f"{where}: tags[{i}]") for i, e in enumerate(entries)], where)


def check_structure(tags: list[Tag], where: str) -> Catalog:
    if not tags:
        # An empty catalog would publish a profile without a tag over yesterday's: a folder mistaken, not a choice.
        raise ConfigError(f"{where}: no tag declared (in a folder: files *.yaml, each with a top-level key 'tags')")
    seen: dict[str, int] = {}
    for t in tags:
        w = f"{where}: tag '{t.code}'"
        if not CODE_RE.match(t.code) or t.code in RESERVED:
            raise ConfigError(f"{w}: code must match {CODE_RE.pattern} and not be one of {sorted(RESERVED)}")
        if t.code in seen:
            raise ConfigError(f"{w}: duplicate tag code")
        seen[t.code] = 1
        d = t.definition
        if t.kind == "statistic":
            if d.source not in SOURCES:
                raise ConfigError(f"{w}: statistic needs definition.source in {list(SOURCES)}, got {d.source!r}")
            if not d.agg:
                raise ConfigError(f"{w}: statistic needs definition.agg (one aggregate call)")
            if d.expr or d.model:
                raise ConfigError(f"{w}: statistic takes agg/where/window_days/value/default, not expr/model")
            if d.window_days is not None and d.window_days < 1:
                raise ConfigError(f"{w}: window_days must be >= 1")
        elif t.kind == "rule":
            if not d.expr:
                raise ConfigError(f"{w}: rule needs definition.expr (SQL over other tags)")
            if d.source or d.agg or d.model or d.window_days or d.where or d.value:
                raise ConfigError(f"{w}: rule takes only expr (and default)")
        else:
            if d.model is None:
                raise ConfigError(f"{w}: model tag needs definition.model")
            if d.source or d.agg or d.expr:
                raise ConfigError(f"{w}: model tag takes only definition.model")
            m = d.model
            if m.method == "kmeans":
                if t.value_type not in ("int", "string"):
                    raise ConfigError(f"{w}: a k-means tag holds a cluster id (int or string)")
                if m.k < 2:
                    raise ConfigError(f"{w}: k must be >= 2")
            else:
                if m.label_source not in ("transaction", "event", "holding", "touch") or not m.label_where:
                    raise ConfigError(f"{w}: a propensity model needs label_source (a fact source) and label_where")
                if t.value_type != "string":
                    raise ConfigError(f"{w}: a propensity tag holds a band (high/medium/low): value_type string")
                if not 0 <= m.medium <= m.high <= 1:
                    raise ConfigError(f"{w}: need 0 <= medium <= high <= 1")
                if m.retrain_days < 1:
                    raise ConfigError(f"{w}: retrain_days must be >= 1 (1 = fit every day)")
                if m.max_train_rows is not None and m.max_train_rows < m.min_train_rows:
                    raise ConfigError(f"{w}: max_train_rows ({m.max_train_rows}) is below min_train_rows "
                                      f"({m.min_train_rows})")
            if not m.features:
                raise ConfigError(f"{w}: model needs at least one feature tag")
    return Catalog(tuple(tags))


# --------------------------------------------------------------------------- SQL checks (Spark parser)

def _parser(spark):
    return spark._jsparkSession.sessionState().sqlParser()


def parse_expression(spark, sql: str, where: str):
    """Parse ``sql`` with Spark's own parser; ConfigError with the position on a syntax error."""
    try:
        return _parser(spark).parseExpression(sql)
    except Exception as e:  # ParseException
        msg = str(e).strip().splitlines()
        raise ConfigError(f"{where}: SQL does not parse: {sql!r}: {' '.join(m.strip() for m in msg[:2])}") from None


def references(spark, sql: str, where: str) -> set[str]:
    """Column names referenced by an expression (first name part; lambda variables excluded)."""
    expr = parse_expression(spark, sql, where)
    it = expr.references().iterator()
    out = set()
    while it.hasNext():
        a = it.next()
        parts = a.nameParts()
        out.add(parts.apply(0) if parts.size() else a.name())
    return out


def equated_columns(spark, sql: str, where: str, column: str) -> set[str]:
    """Columns that ``column`` must equal for ``sql`` to hold: its top-level ``column = other`` conjuncts."""
    out, stack = set(), [parse_expression(spark, sql, where)]
    while stack:
        e = stack.pop()
        kind = e.getClass().getSimpleName()
        if kind == "And":
            stack += [e.left(), e.right()]
        elif kind == "EqualTo" and all(c.getClass().getSimpleName() == "UnresolvedAttribute"
                                       for c in (e.left(), e.right())):
            names = {e.left().name().lower(), e.right().name().lower()}
            if column in names and len(names) == 2:
                out |= names - {column}
    return out


def _top_function(spark, sql: str, where: str):
    expr = parse_expression(spark, sql, where)
    name = expr.getClass().getSimpleName()
    if name != "UnresolvedFunction":
        raise ConfigError(f"{where}: agg must be a single aggregate call such as sum(amount) or "
                          f"collect_set(event_date) (use 'value' for anything around it), got {sql!r}")
    if expr.isDistinct():
        raise ConfigError(f"{where}: DISTINCT aggregates make Spark copy every row per distinct aggregate; "
                          f"write collect_set(x) with value: size(value) instead of {sql!r}")
    return expr


def dependencies(catalog: Catalog, spark=None) -> dict[str, tuple[str, ...]]:
    """Tag -> tags it references (rules: expr; models: features). Needs Spark only for rules."""
    codes = {t.code for t in catalog.tags}
    deps: dict[str, tuple[str, ...]] = {}
    for t in catalog.tags:
        d = t.definition
        if t.kind == "rule":
            if t.code in catalog.deps:
                deps[t.code] = tuple(catalog.deps[t.code])
            elif spark is not None:
                deps[t.code] = tuple(sorted(references(spark, d.expr, f"tag '{t.code}'.expr") & codes))
            else:
                raise ValueError("rule dependencies need Spark's parser: validate() the catalog first")
        elif t.kind == "model":
            deps[t.code] = tuple(d.model.features)
        else:
            deps[t.code] = ()
    return deps


def topological_order(codes: list[str], deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Codes ordered so that each follows its dependencies; ConfigError naming a cycle."""
    order, cycles = dependency_order(codes, deps)
    if cycles:
        raise ConfigError(f"tag catalog: cycle between tags: {' -> '.join(cycles[0])}")
    return order


def validate(spark, catalog: Catalog, source_schemas: Optional[dict] = None) -> Catalog:
    """Check every tag's SQL against its source's columns and the other tags; return it ordered.

    Unknown columns, unknown tags, rules over model tags and cycles raise ConfigError. Uses
    the SQL parser and analysis of empty DataFrames only: no Spark job runs.
    """
    from pyspark.sql import functions as F

    from .plan import SOURCE_SCHEMAS, filter_condition

    schemas = source_schemas or SOURCE_SCHEMAS
    by_code = catalog.by_code
    # 1. references
    for t in catalog.tags:
        d, w = t.definition, f"tag '{t.code}'"
        if t.kind == "statistic":
            cols = set(_schema_columns(schemas[d.source]))
            _top_function(spark, d.agg, f"{w}.agg")
            for field, sql in (("agg", d.agg), ("where", d.where), ("time_column", d.time_column)):
                if sql:
                    unknown = references(spark, sql, f"{w}.{field}") - cols
                    if unknown:
                        raise ConfigError(f"{w}.{field}: unknown column(s) {sorted(unknown)} of source "
                                          f"'{d.source}'; columns: {sorted(cols)}")
            if d.value:
                unknown = references(spark, d.value, f"{w}.value") - {"value", "as_of_date"}
                if unknown:
                    raise ConfigError(f"{w}.value: may reference only 'value' (the aggregate) and as_of_date, "
                                      f"got {sorted(unknown)}")
            if d.default is not None:
                unknown = references(spark, d.default, f"{w}.default")
                if unknown:
                    raise ConfigError(f"{w}.default: must be a literal, references {sorted(unknown)}")
        elif t.kind == "rule":
            refs = references(spark, d.expr, f"{w}.expr")
            unknown = refs - set(by_code)
            if unknown:
                raise ConfigError(f"{w}.expr: unknown tag(s) {sorted(unknown)} referenced in {d.expr!r}")
            models = sorted(r for r in refs if by_code[r].kind == "model")
            if models:
                raise ConfigError(f"{w}.expr: rules cannot reference model tags {models} (computed after rules)")
        else:
            m = d.model
            unknown = set(m.features) - set(by_code)
            if unknown:
                raise ConfigError(f"{w}.model.features: unknown tag(s) {sorted(unknown)}")
            bad = [f for f in m.features if by_code[f].kind == "model" or by_code[f].value_type == "string"]
            if bad:
                raise ConfigError(f"{w}.model.features: features must be numeric/boolean statistic or rule tags, "
                                  f"not {bad}")
            if m.label_where:
                cols = set(_schema_columns(schemas[m.label_source]))
                unknown = references(spark, m.label_where, f"{w}.model.label_where") - cols
                if unknown:
                    raise ConfigError(f"{w}.model.label_where: unknown column(s) {sorted(unknown)} of "
                                      f"'{m.label_source}'")
    # 2. cycles and order
    deps = dependencies(catalog, spark)
    order = topological_order(catalog.codes, deps)
    ordered = Catalog(tuple(by_code[c] for c in order), deps)
    # 3. cheap analysis (types, functions, aggregate-ness) on empty frames: no job runs.
    #    One analysis per source and one per rule level; per tag only to name a culprit.
    as_of = "2000-01-01"
    stats = ordered.of_kind("statistic")
    for src in sorted({t.definition.source for t in stats}):
        tags = [t for t in stats if t.definition.source == src]
        empty = spark.createDataFrame([], schemas[src])
        try:
            _analyse_stats(empty, tags, as_of)
        except Exception:
            for t in tags:
                try:
                    _analyse_stats(empty, [t], as_of)
                except Exception as e:
                    raise ConfigError(f"tag '{t.code}': does not analyse against source '{src}': "
                                      f"{_first_line(e)}") from None
            raise
    types = {t.code: t.spark_type for t in ordered.tags if t.kind != "rule"}
    frame = spark.createDataFrame([], ", ".join(["one_id bigint"] + [f"`{c}` {ty}" for c, ty in types.items()]))
    levels: dict[str, int] = {}
    for t in ordered.of_kind("rule"):
        levels[t.code] = 1 + max((levels[d] for d in deps[t.code] if d in levels), default=0)
    for lv in sorted(set(levels.values())):
        rules = [t for t in ordered.of_kind("rule") if levels[t.code] == lv]
        try:
            nxt = frame.withColumns({t.code: F.expr(t.definition.expr).cast(t.spark_type) for t in rules})
            nxt.schema
        except Exception:
            for t in rules:
                try:
                    frame.withColumn(t.code, F.expr(t.definition.expr).cast(t.spark_type)).schema
                except Exception as e:
                    raise ConfigError(f"tag '{t.code}': rule does not analyse: {_first_line(e)}") from None
            raise
        frame = nxt
    return ordered


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__


def _analyse_stats(empty, tags: list[Tag], as_of: str) -> None:
    from pyspark.sql import functions as F

    from .plan import defaulted, stat_column, tag_values
    out = tag_values(empty.groupBy("one_id").agg(*[stat_column(t, as_of) for t in tags]), tags, as_of)
    out.select(*[defaulted(t, F.col(t.code)) for t in tags]).schema


def _schema_columns(ddl: str) -> list[str]:
    return [n for n, _ in schema_fields(ddl)]


def schema_fields(ddl: str) -> list[tuple[str, str]]:
    """(name, type) pairs of a DDL string such as ``a string, b decimal(18,2)``."""
    cols = []
    depth, cur = 0, ""
    for ch in ddl:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            cols.append(cur)
            cur = ""
        else:
            cur += ch
    cols.append(cur)
    out = []
    for c in cols:
        if c.strip():
            name, typ = c.strip().split(None, 1)
            out.append((name.strip("`"), typ.strip()))
    return out
