"""Reading kequn's tables without Spark: DuckDB and delta-rs, by path.

    from kequn.readers import duckdb_connection
    con = duckdb_connection("demo/warehouse")
    con.sql("SELECT count(*) FROM gold.one_id_map").show()

DuckDB would download its delta extension at run time; the pinned
``duckdb-extension-delta`` package ships it, so this works offline.
"""
from __future__ import annotations

import os
from pathlib import Path

DATABASES = ("bronze", "silver", "gold", "quality")


def _tables(warehouse: str):
    for db in DATABASES:
        d = Path(warehouse) / db
        if d.is_dir():
            for t in sorted(os.listdir(d)):
                if (d / t / "_delta_log").is_dir() and not (db == "bronze" and t == "pii_vault"):
                    yield db, t, str((d / t).absolute())


def duckdb_connection(warehouse: str):
    """A DuckDB connection with a view ``<db>.<table>`` over every Delta table (the vault excepted)."""
    import duckdb
    import duckdb_extension_delta

    ext = next(Path(duckdb_extension_delta.__file__).parent.rglob("delta.duckdb_extension"))
    con = duckdb.connect()
    con.execute(f"INSTALL '{ext}'; LOAD delta;")
    for db, table, path in _tables(warehouse):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {db}")
        con.execute(f"CREATE OR REPLACE VIEW {db}.{table} AS SELECT * FROM delta_scan('{path}')")
    return con


def delta_rs_table(warehouse: str, name: str):
    """A delta-rs ``DeltaTable`` for ``db.table``: ``.to_pyarrow_table()``, ``.to_pandas()``, ``.history()``."""
    from deltalake import DeltaTable

    db, table = name.split(".", 1)
    return DeltaTable(str(Path(warehouse, db, table).absolute()))
