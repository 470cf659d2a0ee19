"""What a Delta table's log says about its files, read straight from the JSON commits (no tests here)."""
from __future__ import annotations

import json
from pathlib import Path


def first_commit_stats(table_path) -> list[dict]:
    """The statistics (numRecords, minValues, maxValues, nullCount) of each file the table's first commit added."""
    log = Path(table_path) / "_delta_log" / "00000000000000000000.json"
    return [json.loads(json.loads(line)["add"]["stats"]) for line in log.read_text().splitlines() if '"add"' in line]
