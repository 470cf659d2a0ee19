"""Quality gates: Great Expectations suites declared in ``conf/quality/*.yaml``.

Public API
----------
``gate(wh, as_of, tables, scopes=None)``
    Called by a stage before it publishes: validates each staged DataFrame whose table has a
    suite, records every expectation in ``quality.validation_results`` and raises
    :class:`QualityGateError` when a ``critical`` expectation failed (the stage then writes
    nothing). ``warning`` failures are recorded and logged. Tables without a suite pass through.
    ``scopes`` names, per table, the SQL predicate of the rows a stage writes when it replaces
    only part of a day (segment_members: the segments stage and the journeys stage each write
    their own segments); the row-count baseline counts the previous day within it.
``run(spark, wh, as_of, config, written_later=())``
    The ``quality`` stage: validates every published table that has a suite (the run's day only
    for tables with a ``partition_column``; such a table that a later stage of the same ``kequn run``
    writes, ``written_later``, is left to that stage's gate),
    records the results, raises on critical failures.
    Within one ``kequn run``, a table that a gate of the same run validated and that was then
    published exactly as validated (the whole table, or the run's day) is not read again: its
    results are the gate's rows (``Warehouse.gate_checked``).
``load_suites(directory)`` / ``suites_for(conf_dir)``
    The suites as frozen dataclasses (:mod:`kequn.quality.config`).

Results are idempotent per (as_of, phase, table): a new call for the same day and table
replaces the rows of the previous call of the same phase (``gate`` or ``stage``); every call
gets a new ``run_id``. See docs/quality.md.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import Collection, Optional

from .config import TableSuite, load_suites, quality_conf_dir

log = logging.getLogger(__name__)

RESULTS_TABLE = "quality.validation_results"
# Contract columns first; ours after them.
RESULTS_SCHEMA = ("run_id string, as_of date, table_name string, expectation string, success boolean, "
                  "observed_value string, severity string, phase string, batch string, validated_at timestamp")

__all__ = ["QualityGateError", "gate", "run", "load_suites", "suites_for", "RESULTS_TABLE"]


class QualityGateError(RuntimeError):
    """A critical expectation failed; the stage publishes nothing."""


def suites_for(conf_dir: Optional[str | Path] = None) -> dict[str, TableSuite]:
    """Suites of ``<conf_dir>/quality`` (default: the project's conf/); none when the folder is absent."""
    directory = quality_conf_dir(conf_dir)
    return load_suites(directory) if directory.is_dir() else {}


def _day(as_of) -> str:
    return as_of.isoformat() if isinstance(as_of, dt.date) else str(as_of)[:10]


def gate(wh, as_of, tables: dict, scopes: Optional[dict[str, str]] = None) -> None:
    """Validate staged tables before publication; raise QualityGateError on a critical failure."""
    as_of = _day(as_of)

    def lookup(name: str):
        if name in tables:
            return tables[name]
        return wh.read(name) if wh.exists(name) else None

    suites = suites_for()
    _, run_id = _check(wh, as_of, dict(tables), suites, "gate", lookup, scopes=scopes or {})
    if run_id is not None:
        wh.passed_gate({n: df for n, df in tables.items() if n in suites}, run_id)


def run(spark, wh, as_of: str, config, written_later: Collection[str] = ()) -> dict[str, int]:
    """The quality stage: validate every published table that has a suite, unless this run's gate
    validated it as it stands. ``written_later``: tables a later stage of the same run writes (the
    pipeline names them); their day is checked by that stage's gate."""
    from pyspark.sql import functions as F

    as_of = _day(as_of)
    suites = suites_for(getattr(config, "conf_dir", None) or None)
    frames, gated = {}, []
    for name, suite in suites.items():
        if not wh.exists(name):
            log.info("quality: %s not published yet; skipped", name)
            continue
        if _gated_as_published(wh, suite, as_of):
            gated.append(name)
            continue
        df = wh.read(name)
        if suite.partition_column:
            if name in written_later:
                # In `kequn run` the quality stage comes before segments and journeys. Their tables hold no
                # row of the day yet (checking an empty slice only reported a false row-count drop), or, on
                # a re-run, rows that the later stage replaces and its gate checks before it publishes: a
                # check now would validate rows about to go. Run on its own or last, every day is checked.
                log.info("quality: %s: the day %s is written later in this run and checked by that stage's gate",
                         name, as_of)
                continue
            df = df.where(F.col(suite.partition_column) == F.lit(as_of).cast("date"))
        elif suite.freshness and wh.holds_day_after(name, as_of, suite.freshness.column):
            # A latest-day table (customer_profile, tag_catalog) already holds a later day: re-running
            # an older day (a backfill) kept it as it was, and there is nothing of this day to check.
            log.info("quality: %s holds a day after %s; not re-checked for the older day", name, as_of)
            continue
        frames[name] = df

    def lookup(name: str):
        return wh.read(name) if wh.exists(name) else None

    outcomes, _ = _check(wh, as_of, frames, suites, "stage", lookup, also_clear=gated)
    return {RESULTS_TABLE: len(outcomes)}


def _gated_as_published(wh, suite: TableSuite, as_of: str) -> bool:
    """Whether a gate of this run validated exactly what the stage would check: a frame published as it
    is, as the whole table or (partitioned tables) as the run's day. Checking it again would read the
    same rows for the same answers: at 100,000 persons, gold.tag_values alone took 19 s a run."""
    from ..tables import day_predicate

    seen = wh.gate_checked(suite.table)
    if seen is None:
        return False
    run_id, replaced = seen
    if replaced is not None and not (suite.partition_column and replaced == day_predicate(as_of, suite.partition_column)):
        return False
    log.info("quality: %s validated by this run's gate (run_id %s) and published as validated; not read again",
             suite.table, run_id)
    return True


# --------------------------------------------------------------------------- internals

def baseline_rows(wh, suite: TableSuite, as_of: str, phase: str, scope: Optional[str] = None) -> Optional[int]:
    """Rows of the previous published version: the previous day's slice for partitioned tables;
    otherwise the published table (gate: it is the previous version) or its version before last
    (stage: the table read is the one just published). ``scope`` (SQL) keeps only the rows the
    checked frame stands for."""
    from pyspark.sql import functions as F

    name = suite.table
    if not wh.exists(name):
        return None
    published = wh.read(name)
    if scope:
        published = published.where(scope)
    if suite.partition_column:
        col = F.col(suite.partition_column)
        day = F.lit(as_of).cast("date")
        prev = published.where(col < day).agg(F.max(col)).first()[0]
        return None if prev is None else published.where(col == F.lit(prev)).count()
    if phase == "gate":
        return published.count()
    version = wh.version(name)
    if not version:
        return None
    return wh.read(name, version=version - 1).count()


def _docs_dir(wh) -> Optional[str]:
    if "://" in wh.root:
        log.info("quality: Data Docs are written for local warehouses only (%s)", wh.root)
        return None
    return f"{wh.root}/quality/data_docs"


def _check(wh, as_of: str, frames: dict, suites: dict[str, TableSuite], phase: str, lookup,
           also_clear: tuple = (), scopes: Optional[dict[str, str]] = None) -> tuple[list, Optional[str]]:
    """Validate ``frames``; returns the outcomes and the run id they were recorded under.

    ``also_clear``: tables whose earlier rows for this (as_of, phase) are removed although not checked.
    ``scopes``: see ``gate``.
    """
    from .engine import build_docs, new_context, validate
    from .expectations import derived_expectations, main_expectations

    started = time.monotonic()
    checked = {n: df for n, df in frames.items() if n in suites}
    for name in frames:
        if name not in suites:
            log.info("quality: %s has no suite; passed through unchecked", name)
    if not checked:
        return [], (record(wh, as_of, phase, list(also_clear), []) if also_clear else None)
    docs_dir = _docs_dir(wh)
    context = new_context(docs_dir)
    outcomes = []
    for name, df in checked.items():
        suite = suites[name]
        baseline = baseline_rows(wh, suite, as_of, phase, (scopes or {}).get(name)) if suite.row_count else None
        exps = main_expectations(suite, df.schema, as_of, baseline)
        if exps:
            outcomes += validate(context, name, "main", df, exps)
        derived = derived_expectations(suite, df, as_of, lookup, log)
        if derived is not None:
            outcomes += validate(context, name, "derived", derived.frame, derived.expectations)
    if docs_dir and phase == "stage":
        # Only the quality stage renders Data Docs: rendering costs seconds, and every gate's
        # results are rows of quality.validation_results anyway.
        build_docs(context)
    run_id = record(wh, as_of, phase, list(checked) + list(also_clear), outcomes)
    for o in outcomes:
        if not o.success and o.severity != "critical":
            log.warning("quality: %s: %s failed (%s): observed %s", o.table_name, o.expectation, o.severity,
                        o.observed_value)
    log.info("quality: %s %s: %d tables, %d expectations, %d failed, run_id %s, %.1f s", phase, as_of,
             len(checked), len(outcomes), sum(not o.success for o in outcomes), run_id, time.monotonic() - started)
    critical = [o for o in outcomes if not o.success and o.severity == "critical"]
    if critical:
        lines = [f"{o.table_name}: {o.expectation} -> observed {o.observed_value}" for o in critical]
        raise QualityGateError(f"quality {phase} for {as_of} failed {len(critical)} critical expectation(s):\n  "
                               + "\n  ".join(lines))
    return outcomes, run_id


def record(wh, as_of: str, phase: str, tables: list[str], outcomes: list) -> str:
    """Write the outcomes; replaces this (as_of, phase, table)'s rows of any earlier call."""
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    now = dt.datetime.now()
    day = dt.date.fromisoformat(as_of)
    rows = [(run_id, day, o.table_name, o.expectation, o.success, o.observed_value, o.severity, phase, o.batch, now)
            for o in outcomes]
    df = wh.spark.createDataFrame(rows, RESULTS_SCHEMA)
    names = ", ".join("'" + t.replace("'", "''") + "'" for t in tables)
    if not wh.exists(RESULTS_TABLE):
        # Warehouse.overwrite's first write of a partitioned table sets overwriteSchema, which Delta
        # refuses under the session's dynamic partition overwrite mode (reported); append creates it.
        wh.append(df, RESULTS_TABLE, partition_by=("as_of",))
    else:
        wh.overwrite(df, RESULTS_TABLE, partition_by=("as_of",),
                     replace_where=f"as_of = DATE'{as_of}' AND phase = '{phase}' AND table_name IN ({names})")
    return run_id
