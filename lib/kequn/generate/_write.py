"""Landing files: `<out>/<source>/dt=YYYY-MM-DD/part-NNNNN.csv`, with the variations the contract allows."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kequn.landing import SOURCES

from ._util import stream

BOM = b"\xef\xbb\xbf"
BOM_SHARE = 0.15        # files starting with a UTF-8 byte-order mark
REORDER_SHARE = 0.15    # files whose columns come in another order
T_FORMAT_SHARE = 0.10   # files writing timestamps as 2026-11-03T14:05:09


class Writer:
    def __init__(self, out: str, first_day: np.datetime64, days: int, seed: int):
        self.out = out
        self.first_day = first_day
        self.days = days
        self.seed = seed
        self.rows: dict[str, int] = {s: 0 for s in SOURCES}
        self.bytes = 0
        self._written: set[tuple[str, int]] = set()

    def dt(self, d: int) -> str:
        return str(self.first_day + np.timedelta64(int(d), "D"))

    def write(self, source: str, d: int, part: int, table: pa.Table, force: bool = False) -> None:
        """Write one part file of a batch; an empty table only when forced (a batch with no rows)."""
        cols = SOURCES[source].column_names
        if list(table.column_names) != cols:
            raise ValueError(f"{source}: columns {table.column_names} != contract {cols}")
        if table.num_rows == 0 and not force:
            return
        rng = stream(self.seed, "file", source, d, part)
        bom, reorder, tfmt = rng.random(3) < (BOM_SHARE, REORDER_SHARE, T_FORMAT_SHARE)
        if reorder:
            table = table.select([cols[i] for i in rng.permutation(len(cols))])
        if tfmt:
            for i, f in enumerate(table.schema):
                if pa.types.is_timestamp(f.type):
                    table = table.set_column(i, f.name, pc.strftime(table.column(i), format="%Y-%m-%dT%H:%M:%S"))
        folder = os.path.join(self.out, source, f"dt={self.dt(d)}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"part-{part:05d}.csv")
        with pa.OSFile(path, "wb") as f:
            if bom:
                f.write(BOM)
            f.write((",".join(table.column_names) + "\n").encode())
            if table.num_rows:
                pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False))
        self.bytes += os.path.getsize(path)
        self.rows[source] += table.num_rows
        self._written.add((source, d))

    def written(self, source: str, d: int) -> bool:
        return (source, d) in self._written
