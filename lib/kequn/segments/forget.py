"""Right to erasure: remove one person's records from every table, then VACUUM.

The person is found from one of their records (``source``, ``key``): every
one_id that record ever had (current map and map history) and every record that
carried one of those ids. Then, per table, rows are deleted by what the table
holds: master keys, fact keys (transaction source/source_key, holding
source_key, event user_key, touch target, consent source/source_key), one_id,
(source, source_key) pairs; vault tokens of the person that no remaining record
uses. Staging copies are removed. The log names tables and counts, never keys.
"""
from __future__ import annotations

import logging
import os

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from ..identity import LEGACY_DICTIONARY, drop_legacy_dictionary
from ..landing import MASTER_SOURCES
from ..tables import MODELS, STAGING
from .persons import KEY_COLUMN

log = logging.getLogger(__name__)

TOKEN_COLUMNS = ("name_token", "id_no_token", "mobile_token", "card_no_token")
VAULT = "bronze.pii_vault"


def _lit(v) -> str:
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in(col: str, values) -> str:
    values = sorted({str(v) for v in values if v is not None})
    return f"`{col}` IN ({', '.join(_lit(v) for v in values)})" if values else "false"


def _pairs(scol: str, kcol: str, records) -> str:
    by_source: dict[str, set] = {}
    for s, k in records:
        by_source.setdefault(s, set()).add(k)
    parts = [f"(`{scol}` = {_lit(s)} AND {_in(kcol, ks)})" for s, ks in sorted(by_source.items())]
    return " OR ".join(parts) if parts else "false"


def person_of(wh, source: str, key: str) -> tuple[set[int], set[tuple[str, str]]]:
    """(one_ids, records) of the person owning record (source, key); bounded by one person's records."""
    maps = [wh.read(n) for n in ("gold.one_id_map", "silver.one_id_map_history") if wh.exists(n)]
    ids: set[int] = set()
    records: set[tuple[str, str]] = {(source, key)}
    for m in maps:
        ids |= {r[0] for r in m.where((F.col("source") == source) & (F.col("source_key") == key))
                .select("one_id").distinct().collect()}
    if ids:
        for m in maps:
            records |= {(r[0], r[1]) for r in m.where(F.col("one_id").isin(list(ids)))
                        .select("source", "source_key").distinct().collect()}
    return ids, records


def conditions(wh, table: str, columns: list[str], ids, records) -> str | None:
    """The DELETE condition for ``table``, or None when the table holds nothing about persons."""
    keys = {s: {k for (src, k) in records if src == s} for s in MASTER_SOURCES}
    db, name = table.split(".", 1)
    conds = []
    if db == "bronze" and name in MASTER_SOURCES:
        conds.append(_in(KEY_COLUMN[name], keys[name]))
    elif table == "bronze.transaction":
        conds.append(f"(`source` = 'core' AND {_in('source_key', keys['core_customer'])}) OR "
                     f"(`source` = 'card' AND {_in('source_key', keys['card_account'])})")
    elif table == "bronze.holding":
        conds.append(_in("source_key", keys["core_customer"]))
    elif table == "bronze.event":
        conds.append(f"(`source` IN ('app', 'web') AND {_in('user_key', keys['app_user'])}) OR "
                     f"(`source` IN ('official_account', 'mini_program') AND {_in('user_key', keys['wechat_user'])})")
    else:
        if "one_id" in columns and ids:
            conds.append(_in("one_id", ids))
        if "source" in columns and "source_key" in columns:
            conds.append(_pairs("source", "source_key", records))
    if "target_source" in columns and "target_key" in columns:
        conds.append(_pairs("target_source", "target_key", records))
    conds = [c for c in conds if c != "false"]
    return " OR ".join(f"({c})" for c in conds) if conds else None


def forget(spark, wh, source: str, key: str, retention_hours: int = 168) -> dict[str, int]:
    """Erase the person owning record (``source``, ``key``) everywhere; returns rows deleted per table."""
    if source not in MASTER_SOURCES:
        raise ValueError(f"source must be one of {MASTER_SOURCES}")
    ids, records = person_of(wh, source, key)
    log.info("forget: person found with %d id(s) and %d record(s)", len(ids), len(records))
    # Tokens of the person, read before their master rows go.
    tokens: set[str] = set()
    for s in MASTER_SOURCES:
        t = f"bronze.{s}"
        if wh.exists(t):
            df = wh.read(t)
            cols = [c for c in TOKEN_COLUMNS if c in df.columns]
            ks = [k for (src, k) in records if src == s]
            if cols and ks:
                for r in df.where(F.col(KEY_COLUMN[s]).isin(ks)).select(*cols).collect():
                    tokens |= {v for v in r if v}
    deleted: dict[str, int] = {}
    untouched: list[str] = []
    # Its rows name a person only through keys and tokens it cannot be filtered by: all of it goes.
    dropped = drop_legacy_dictionary(wh)
    if dropped is not None:
        deleted[LEGACY_DICTIONARY] = dropped
    for table in wh.tables():
        if table == VAULT:
            continue
        df = wh.read(table)
        cond = conditions(wh, table, df.columns, ids, records)
        if cond is None:
            untouched.append(table)
            continue
        n = df.where(cond).count()
        if n:
            DeltaTable.forPath(spark, wh.path(table)).delete(cond)
            deleted[table] = n
    if tokens and wh.exists(VAULT):
        still_used: set[str] = set()
        for s in MASTER_SOURCES:
            t = f"bronze.{s}"
            if wh.exists(t):
                df = wh.read(t)
                for c in (c for c in TOKEN_COLUMNS if c in df.columns):
                    still_used |= {r[0] for r in df.where(F.col(c).isin(list(tokens))).select(c).distinct().collect()}
        gone = tokens - still_used
        if still_used:
            log.info("forget: %d token(s) kept in the vault: other persons' records use them", len(still_used))
        cond = _in("token", gone)
        n = wh.read(VAULT).where(cond).count() if gone else 0
        if n:
            DeltaTable.forPath(spark, wh.path(VAULT)).delete(cond)
            deleted[VAULT] = n
    # Scratch, and the fitted need models: the next run retrains them without the person.
    for folder in (STAGING, MODELS):
        wh.remove_path(f"{wh.root}/{folder}")
    _vacuum(spark, wh, [t for t in deleted if wh.exists(t)], retention_hours)   # a dropped table has nothing left
    for t, n in sorted(deleted.items()):
        log.info("forget: %s: %d row(s) deleted", t, n)
    if untouched:
        log.info("forget: tables holding no person keys, left as they are: %s", ", ".join(untouched))
    return deleted


def _vacuum(spark, wh, tables: list[str], retention_hours: int) -> None:
    from ..maintenance import vacuum

    for t in tables:
        # With deletion vectors a DELETE only marks rows: the erased values stay in files the current
        # version still references, which VACUUM keeps. PURGE rewrites those files first.
        spark.sql(f"REORG TABLE delta.`{wh.path(t)}` APPLY (PURGE)")
        vacuum(spark, wh.path(t), retention_hours)
