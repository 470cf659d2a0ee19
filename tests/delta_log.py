"""What a Delta table's log says about its files, read straight from the JSON commits (no tests here)."""
from __future__ import annotations

import json
from pathlib import Path


def first_commit_stats(table_path) -> list[dict]:
    """The statistics (numRecords, minValues, maxValues, nullCount) of each file the table's first commit added."""
    log = Path(table_path) / "_delta_log" / "00000000000000000000.json"
    return [json.loads(json.loads(line)["add"]["stats"]) for line in log.read_text().splitlines() if '"add"' in line]


def live_files(table_path) -> dict[str, tuple[dict, str | None]]:
    """path -> (partition values, statistics) of the files the table's commits leave live, replayed in order."""
    live = {}
    for commit in sorted((Path(table_path) / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = (action["add"]["partitionValues"], action["add"].get("stats"))
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return live
