"""Segment definitions (``conf/segments/*.yaml``) and their check against the tag catalog.

Everything here runs on the driver without Spark, so a broken rule is reported
before any job starts. A segment is either rule-based (``rule``, optional
``base``) or fed by journeys (``fed_by``: the journeys stage writes its members).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from ..config import ConfigError, default_conf_dir, dependency_order, load_dir, load_file, parse, read_yaml
from .rules import Rule, RuleError, parse_rule

log = logging.getLogger(__name__)

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Tags profiled for every segment when the catalog has them (beside the rule's own tags).
DEFAULT_PROFILE_TAGS = ("aum_tier", "age_band", "preferred_channel", "is_first_purchase")


@dataclass(frozen=True)
class SegmentDef:
    code: str
    name_zh: str
    name_en: str
    purpose: Literal["marketing", "analysis"]
    owner: str
    rule: Optional[str] = None
    base: Optional[str] = None
    fed_by: list[str] = field(default_factory=list)
    description: str = ""
    profile_tags: list[str] = field(default_factory=list)

    @property
    def journey_fed(self) -> bool:
        return bool(self.fed_by)


@dataclass(frozen=True)
class Checked:
    """The outcome of checking definitions against a catalog."""
    definitions: dict[str, SegmentDef]          # every definition, by code, in dependency order
    rules: dict[str, Rule]                      # rule segments that can be computed
    unavailable: dict[str, str]                 # code -> reason (unknown tag, wrong type, bad base)
    catalog: dict[str, str]                     # tag_code -> value_type used

    @property
    def fed_codes(self) -> list[str]:
        return [c for c, d in self.definitions.items() if d.journey_fed]

    def needed_tags(self, codes=None) -> list[str]:
        codes = self.rules if codes is None else codes
        out: list[str] = []
        for c in codes:
            for t in self.rules[c].tags:
                if t not in out:
                    out.append(t)
        return out


def segments_dir(conf_dir=None) -> Path:
    return Path(conf_dir or default_conf_dir()) / "segments"


def load_definitions(conf_dir=None) -> list[SegmentDef]:
    """Every definition in ``<conf>/segments/*.yaml`` (files of ``segments: [...]``)."""
    d = segments_dir(conf_dir)
    return load_dir(SegmentDef, d, "segments") if d.is_dir() else []


def load_definition_file(path) -> list[SegmentDef]:
    """One file: either ``segments: [...]`` or a single definition mapping."""
    data = read_yaml(Path(path)) or {}
    if isinstance(data, dict) and "segments" in data:
        return load_dir_file(path)
    return [parse(SegmentDef, data, str(path))]


def load_dir_file(path) -> list[SegmentDef]:
    data = read_yaml(Path(path)) or {}
    if set(data) - {"segments"}:
        raise ConfigError(f"{path}: expected a single top-level key 'segments', got {sorted(data)}")
    return [parse(SegmentDef, e, f"{path}: segments[{i}]") for i, e in enumerate(data.get("segments") or [])]


# --------------------------------------------------------------------------- catalog

def catalog_from_yaml(conf_dir=None) -> dict[str, str]:
    """tag_code -> value_type from ``<conf>/tags/*.yaml`` (list ``tags`` with ``code``/``value_type``).

    Tolerant: files or entries of another shape are skipped with a warning.
    """
    out: dict[str, str] = {}
    d = Path(conf_dir or default_conf_dir()) / "tags"
    if not d.is_dir():
        return out
    for path in sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))):
        try:
            data = read_yaml(path) or {}
        except ConfigError as e:
            log.warning("tag catalog file unreadable, skipped: %s", e)
            continue
        entries = data.get("tags") if isinstance(data, dict) else None
        for e in entries or []:
            if isinstance(e, dict) and e.get("code"):
                out[str(e["code"])] = str(e.get("value_type") or "string")
    return out


def catalog_from_table(wh, as_of: str) -> dict[str, str]:
    """tag_code -> value_type from ``gold.tag_catalog`` (rows of the latest as_of <= as_of)."""
    from pyspark.sql import functions as F
    if not wh.exists("gold.tag_catalog"):
        return {}
    df = wh.read("gold.tag_catalog")
    if "as_of" in df.columns:
        df = df.where(F.col("as_of") <= F.lit(as_of).cast("date"))
        latest = df.agg(F.max("as_of")).first()[0]
        if latest is None:
            return {}
        df = df.where(F.col("as_of") == F.lit(latest))
    return {r["tag_code"]: r["value_type"] for r in df.select("tag_code", "value_type").distinct().collect()}


def load_catalog(wh=None, as_of: Optional[str] = None, conf_dir=None) -> dict[str, str]:
    """The table when present (what was computed), otherwise the YAML declarations."""
    if wh is not None and as_of is not None:
        cat = catalog_from_table(wh, as_of)
        if cat:
            return cat
    return catalog_from_yaml(conf_dir)


# --------------------------------------------------------------------------- checks

def check(definitions: list[SegmentDef], catalog: dict[str, str], strict: bool = False) -> Checked:
    """Check definitions; no Spark.

    Structural problems (bad code, duplicate code, rule and fed_by together or
    neither, unknown or cyclic base, rule syntax) always raise :class:`ConfigError`.
    Catalog problems (unknown tag, wrong-type comparison) raise when ``strict``;
    otherwise the segment is listed in ``Checked.unavailable`` with the reason.
    """
    errors: list[str] = []
    by_code: dict[str, SegmentDef] = {}
    for d in definitions:
        if not CODE_RE.match(d.code):
            errors.append(f"segment {d.code!r}: code must match {CODE_RE.pattern}")
        if d.code in by_code:
            errors.append(f"segment {d.code!r}: defined twice")
        by_code[d.code] = d
        if d.rule and d.fed_by:
            errors.append(f"segment {d.code!r}: has both a rule and fed_by; a segment is one or the other")
        if not d.rule and not d.fed_by:
            errors.append(f"segment {d.code!r}: needs a rule (or fed_by for a journey-fed group)")
        if d.base and d.fed_by:
            errors.append(f"segment {d.code!r}: a journey-fed group takes no base")
    for d in definitions:
        if d.base and d.base not in by_code:
            errors.append(f"segment {d.code!r}: base {d.base!r} is not a defined segment")
        elif d.base and by_code[d.base].journey_fed:
            errors.append(f"segment {d.code!r}: base {d.base!r} is journey-fed (written after segments run); "
                          "a base must be a rule segment")
    rules: dict[str, Rule] = {}
    unavailable: dict[str, str] = {}
    for d in definitions:
        if not d.rule:
            continue
        try:
            rule, problems = parse_rule(d.rule, catalog)
        except RuleError as e:
            errors.append(f"segment {d.code!r}: rule {d.rule!r}: {e}")
            continue
        if problems:
            unavailable[d.code] = "; ".join(problems)
        rules[d.code] = rule
    order = _dependency_order(by_code, errors)
    if errors:
        raise ConfigError("segment definitions:\n  " + "\n  ".join(errors))
    # A segment on an unavailable base is unavailable too.
    for code in order:
        base = by_code[code].base
        if base and base in unavailable and code not in unavailable:
            unavailable[code] = f"base segment {base!r} is unavailable"
    if strict and unavailable:
        raise ConfigError("segment rules do not fit the tag catalog:\n  " +
                          "\n  ".join(f"segment {c!r}: {r}" for c, r in unavailable.items()))
    ordered = {c: by_code[c] for c in order}
    return Checked(ordered, {c: rules[c] for c in order if c in rules and c not in unavailable},
                   unavailable, dict(catalog))


def _dependency_order(by_code: dict[str, SegmentDef], errors: list[str]) -> list[str]:
    deps = {c: (d.base,) for c, d in by_code.items() if d.base in by_code}
    order, cycles = dependency_order(list(by_code), deps)
    errors += [f"segment {cyc[0]!r}: base cycle {' -> '.join(cyc)}" for cyc in cycles]
    return order


def with_definition(definitions: list[SegmentDef], new: SegmentDef) -> list[SegmentDef]:
    """``definitions`` with ``new`` replacing the one of the same code (or added)."""
    return [d for d in definitions if d.code != new.code] + [new]


def replace(d: SegmentDef, **kw) -> SegmentDef:
    return dataclasses.replace(d, **kw)
