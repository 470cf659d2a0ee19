"""The schema of ``conf/quality/*.yaml``: one suite per table, as frozen dataclasses.

Every file holds ``{suites: [TableSuite, ...]}`` and is loaded with
:func:`kequn.config.load_dir`, so an unknown key is rejected with the file and
the key path before any Spark job starts. A suite declares *what* must hold;
:mod:`kequn.quality.expectations` turns it into Great Expectations objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..config import ConfigError, default_conf_dir, load_dir

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class ColumnsCheck:
    """A set of columns: for ``keys`` and ``unique``, one compound key; for ``not_null``, each column."""
    columns: list[str]
    severity: Severity = "critical"


@dataclass(frozen=True)
class ValueSetCheck:
    column: str
    values: list[Any]
    severity: Severity = "critical"


@dataclass(frozen=True)
class RangeCheck:
    column: str
    min: Optional[float] = None
    max: Optional[float] = None
    severity: Severity = "critical"


@dataclass(frozen=True)
class ForeignKeyCheck:
    """Every non-null ``columns`` tuple of the table is found in ``references`` (``ref_columns``)."""
    columns: list[str]
    references: str
    ref_columns: Optional[list[str]] = None
    max_orphans: int = 0
    severity: Severity = "critical"


@dataclass(frozen=True)
class RowCountCheck:
    """Rows within [min_ratio, max_ratio] x the previous published version (or previous day)."""
    min_ratio: float = 0.5
    max_ratio: float = 1.5
    min_rows: int = 0
    severity: Severity = "warning"


@dataclass(frozen=True)
class FreshnessCheck:
    """``max``: the column's maximum is the run's day; ``all``: every row is of the run's day."""
    column: str = "as_of"
    mode: Literal["max", "all"] = "max"
    severity: Severity = "critical"


@dataclass(frozen=True)
class LongFormCheck:
    """A long form: each ``keys`` tuple holds exactly one row for every ``name`` of the checked rows, none
    twice and none missing. ``keys`` + ``name`` are then unique, and each key is complete.

    Checked by one aggregation per key (a row count and one bit per name), which Spark reduces before it
    shuffles: a long form's rows of one key sit together. ``keys: {columns: [<keys>, <name>]}`` checks the
    uniqueness alone with a window over every row (89M rows of gold.tag_values at 1,000,000 persons: 54 s
    against 18 s).
    """
    keys: list[str]
    name: str
    severity: Severity = "critical"


@dataclass(frozen=True)
class IdentityCheck:
    """Bounds on the identity graph, checked beside gold.one_id_map.

    ``max_largest_component``: records sharing the most common one_id (computed from the map).
    ``max_blocked_share``: read from ``health_table`` (column ``blocked_share_column``; the run's
    row when it has an ``as_of`` column); skipped with a log line while that table does not exist.
    """
    max_largest_component: Optional[int] = None
    max_blocked_share: Optional[float] = None
    health_table: str = "gold.identity_health"
    blocked_share_column: str = "blocked_share"
    severity: Severity = "warning"


@dataclass(frozen=True)
class PiiScan:
    """No string column value looks like a mobile, ID or card number (see ``PII_PATTERNS``)."""
    enabled: bool = True
    exclude_columns: list[str] = field(default_factory=list)
    severity: Severity = "critical"


@dataclass(frozen=True)
class RawExpectation:
    """Any GX expectation by its snake-case type, e.g. ``expect_column_values_to_match_regex``."""
    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: Severity = "critical"


@dataclass(frozen=True)
class TableSuite:
    table: str
    description: str = ""
    # The column that holds the day a row belongs to, when the table keeps one slice per day.
    # `run` validates only the run's slice and the row-count baseline is the previous day's slice.
    partition_column: Optional[str] = None
    keys: Optional[ColumnsCheck] = None          # unique together and each not null
    unique: list[ColumnsCheck] = field(default_factory=list)
    not_null: list[ColumnsCheck] = field(default_factory=list)
    value_sets: list[ValueSetCheck] = field(default_factory=list)
    ranges: list[RangeCheck] = field(default_factory=list)
    foreign_keys: list[ForeignKeyCheck] = field(default_factory=list)
    long_form: Optional[LongFormCheck] = None
    row_count: Optional[RowCountCheck] = None
    freshness: Optional[FreshnessCheck] = None
    identity: Optional[IdentityCheck] = None
    pii_scan: PiiScan = field(default_factory=PiiScan)
    expectations: list[RawExpectation] = field(default_factory=list)


def quality_conf_dir(conf_dir: Optional[str | Path] = None) -> Path:
    return Path(conf_dir) / "quality" if conf_dir else default_conf_dir() / "quality"


def load_suites(directory: Path) -> dict[str, TableSuite]:
    """Every suite under ``directory`` keyed by table name; a table declared twice is an error."""
    suites: dict[str, TableSuite] = {}
    for suite in load_dir(TableSuite, directory, "suites"):
        if "." not in suite.table:
            raise ConfigError(f"{directory}: suite table '{suite.table}' is not 'db.table'")
        if suite.table in suites:
            raise ConfigError(f"{directory}: table '{suite.table}' has more than one suite")
        suites[suite.table] = suite
    return suites

