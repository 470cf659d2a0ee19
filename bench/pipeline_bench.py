"""End-to-end benchmark: every stage of `kequn run`, a full first run and (optionally) one incremental day.

    .venv/bin/python bench/pipeline_bench.py --persons 100000 --days 90 [--out /tmp/kequn_bench] [--reuse]
                                             [--incremental] [--write BENCHMARKS.md]

1. Landing data from kequn's generator into ``<out>/landing`` (``--reuse`` keeps a landing folder this
   script generated before with the same persons/days/seed/end). Batches end on ``--end``.
2. One SparkSession (``kequn.session.build_session``, the production defaults, JVM paid once) runs every
   stage of ``conf/pipeline.yaml``'s ``stages`` through ``kequn.pipeline.run_stages``, one stage per call:
   the *full* run at as-of = the second-to-last day (every batch up to then is loaded into an empty
   warehouse ``<out>/wh``), then with ``--incremental`` the *incremental* run at as-of = the last day (one
   day of new facts, plus the master re-deliveries the generator puts in its last daily batch; their
   share of the master records is computed from the landing files and printed). Before it, the full
   run's journey sends are delivered into the landing zone (``kequn.journeys.simulate``; not with
   ``--no-delivery``), so that the daily run's ingest loads them and its journeys meet their opens.
3. Spark's event log (``<out>/eventlog``, plain JSON lines: no compression, no rolling) is parsed after
   the session stops. ``run_stages`` puts each stage's jobs in job group ``kequn:<stage>``; this script
   adds the local property ``kequn.bench.run`` (full / incremental), so every Spark stage and task is
   attributed to one (run, stage) without relying on timing.

Columns of the table:

* **input rows**: ingest: the landing rows of the batches the run loads (data lines of the CSV files).
  Later stages: the rows, at the stage's start, of every warehouse table its queries scanned (found in
  the event log's SQL plans: Delta scans whose location is a table of the warehouse; staging tables
  excluded), counted from the Delta log's per-file ``numRecords`` statistics (minus deletion vectors):
  no data is scanned. A scan with an equality partition filter (``as_of = <day>``) counts that partition
  only; any other filter counts the whole table, so this is an upper bound of the rows the stage needed.
  Each table counts once per stage, however often it is read.
* **output rows**: the sum of the stage's returned counts (rows written per table; keys that are not
  table names, e.g. ``segments_unavailable``, are left out).
* **seconds**: wall time of the stage (``StageResult.seconds``); **rows/s** = input rows / seconds.
* **shuffle read / write**: the sum over the stage's tasks (every attempt) of ``Local + Remote Bytes Read``
  and ``Shuffle Bytes Written``.
* **peak memory**: the peak JVM heap in use (``JVMHeapMemory``, live objects and not yet collected
  garbage) of the driver/executors while the stage's Spark tasks ran: the maximum of the tasks'
  ``Task Executor Metrics`` and the per-stage ``SparkListenerStageExecutorMetrics`` (polled every
  second). It is what to compare with ``spark.driver.memory`` (locally half the machine's memory, 2 to
  32 GB). Memory of the Python driver (scipy components in identity, Great Expectations) and time
  outside Spark tasks are not in it.

The total line sums rows, seconds and bytes over the stages (a table read by several stages counts once
per stage) and takes the maximum of peak memory. ``--write FILE`` replaces or inserts this size's table in
the section "## End to end (`bench/pipeline_bench.py`)" of FILE (one table per persons x days, newer
replacing older); nothing else in FILE changes. ``<out>/pipeline_bench.json`` keeps every figure, with the
tables counted per stage and the rows Spark actually scanned (input metrics, Delta log reads included).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

RUN_PROPERTY = "kequn.bench.run"       # local property set by this script: which run a job belongs to
GROUP_PROPERTY = "spark.jobGroup.id"   # set by kequn.pipeline.run_stages: which stage
GROUP_PREFIX = "kequn:"
SECTION = "## End to end (`bench/pipeline_bench.py`)"
MARKER = "_bench_landing.json"         # what this script generated into <out>/landing, for --reuse
DATABASES = ("bronze", "silver", "gold", "quality")
# Open rates per channel of the journey sends delivered between the two runs (``deliver_journey_sends``).
DELIVERY_OPEN_RATES = {"app_push": 0.2, "sms": 0.1, "wechat": 0.3}
DELIVERY_RUN = "delivery"             # RUN_PROPERTY of the delivery's Spark jobs: outside every stage

log = logging.getLogger("pipeline_bench")


# ====================================================================== event log (pure functions)

@dataclass
class SparkWork:
    """What the event log says about the Spark jobs of one (run, job group)."""
    jobs: int = 0
    stages: int = 0
    tasks: int = 0
    shuffle_read: int = 0       # bytes, local + remote
    shuffle_write: int = 0      # bytes
    records_read: int = 0       # input metrics: rows read by scans (Delta log files included)
    peak_heap: int = 0          # bytes, JVMHeapMemory
    peak_unified: int = 0       # bytes, OnHeapUnifiedMemory: Spark's execution + storage memory in use
    scans: list = field(default_factory=list)  # (location path, partition filters text) of SQL plan scans


def _props(event: dict) -> dict:
    return event.get("Properties") or {}


def _key(props: dict) -> tuple[Optional[str], Optional[str]]:
    return props.get(RUN_PROPERTY), props.get(GROUP_PROPERTY)


_PATH = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?/[^\s,\]\[()]+", re.I)


def plan_scans(plan: Optional[dict]) -> list[tuple[str, str]]:
    """(path, partition filters) of every file scan in a SQL ``sparkPlanInfo`` tree."""
    out, todo = [], [plan] if plan else []
    while todo:
        node = todo.pop()
        todo.extend(node.get("children") or [])
        meta = node.get("metadata") or {}
        location = meta.get("Location")
        if not location:
            continue
        # e.g. "PreparedDeltaFileIndex(1 paths)[file:/tmp/x/wh/bronze/transaction]"
        inside = location[location.find("["):] if "[" in location else location
        for p in _PATH.findall(inside):
            out.append((p, meta.get("PartitionFilters", "")))
    return out


def parse_events(lines: Iterable[str]) -> dict[tuple[Optional[str], Optional[str]], SparkWork]:
    """Spark work per (``kequn.bench.run``, job group) from event-log JSON lines.

    Spark stages are attributed by the properties of their ``SparkListenerStageSubmitted`` (falling back to
    the first job listing them), tasks and executor-metric peaks by their stage, SQL plans by the jobs of
    their execution. Work with neither property lands under ``(None, None)``.
    """
    work: dict = {}
    stage_key: dict[int, tuple] = {}
    exec_key: dict[str, tuple] = {}
    exec_scans: dict[str, list] = {}
    pending_heap: list[tuple[int, int, int]] = []  # (stage, heap, unified), resolved once all stages are known

    def w(key) -> SparkWork:
        return work.setdefault(key, SparkWork())

    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a torn last line of a log still being written
        kind = e.get("Event", "")
        if kind == "SparkListenerJobStart":
            key = _key(_props(e))
            w(key).jobs += 1
            for sid in e.get("Stage IDs") or [s["Stage ID"] for s in e.get("Stage Infos", [])]:
                stage_key.setdefault(sid, key)
            eid = _props(e).get("spark.sql.execution.id")
            if eid is not None:
                exec_key.setdefault(str(eid), key)
        elif kind == "SparkListenerStageSubmitted":
            sid = e["Stage Info"]["Stage ID"]
            props = _props(e)
            if GROUP_PROPERTY in props or RUN_PROPERTY in props:
                stage_key[sid] = _key(props)
            w(stage_key.get(sid, (None, None))).stages += 1
        elif kind == "SparkListenerTaskEnd":
            s = w(stage_key.get(e.get("Stage ID"), (None, None)))
            s.tasks += 1
            m = e.get("Task Metrics") or {}
            r = m.get("Shuffle Read Metrics") or {}
            s.shuffle_read += int(r.get("Remote Bytes Read", 0)) + int(r.get("Local Bytes Read", 0))
            s.shuffle_write += int((m.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0))
            s.records_read += int((m.get("Input Metrics") or {}).get("Records Read", 0))
            em = e.get("Task Executor Metrics") or {}
            s.peak_heap = max(s.peak_heap, int(em.get("JVMHeapMemory", 0)))
            s.peak_unified = max(s.peak_unified, int(em.get("OnHeapUnifiedMemory", 0)))
        elif kind == "SparkListenerStageExecutorMetrics":
            em = e.get("Executor Metrics") or {}
            pending_heap.append((e.get("Stage ID"), int(em.get("JVMHeapMemory", 0)),
                                 int(em.get("OnHeapUnifiedMemory", 0))))
        elif kind.endswith("SparkListenerSQLExecutionStart") or kind.endswith("SparkListenerSQLAdaptiveExecutionUpdate"):
            exec_scans.setdefault(str(e.get("executionId")), []).extend(plan_scans(e.get("sparkPlanInfo")))
    for sid, heap, unified in pending_heap:
        s = w(stage_key.get(sid, (None, None)))
        s.peak_heap = max(s.peak_heap, heap)
        s.peak_unified = max(s.peak_unified, unified)
    for eid, scans in exec_scans.items():
        if scans and eid in exec_key:  # an execution that ran no job read nothing
            w(exec_key[eid]).scans.extend(scans)
    return work


def read_event_log(folder: Path) -> dict:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if len(files) != 1:
        raise RuntimeError(f"expected one event log in {folder}, found {[p.name for p in files]}")
    with open(files[0], encoding="utf-8") as fh:
        return parse_events(fh)


# ====================================================================== Delta log row counts (no Spark)

@dataclass
class TableRows:
    rows: int
    partition_columns: tuple
    by_partition: dict          # partition values (tuple) -> rows
    files_without_stats: int = 0


_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?(?:\.[0-9a-f-]{36})?\.(parquet|json)$")


def _actions_of_checkpoint(log_dir: Path, files: list[Path]) -> Iterable[dict]:
    import pyarrow.parquet as pq

    for f in files:
        if f.suffix == ".json":
            with open(f, encoding="utf-8") as fh:
                rows = [json.loads(x) for x in fh if x.strip()]
        else:
            t = pq.read_table(f)
            cols = [c for c in ("add", "metaData", "sidecar") if c in t.column_names]
            rows = t.select(cols).to_pylist()
        for r in rows:
            side = r.get("sidecar")
            if side:
                yield from _actions_of_checkpoint(log_dir, [log_dir / "_sidecars" / side["path"]])
            elif r.get("add"):
                yield {"add": r["add"]}
            elif r.get("metaData"):
                yield {"metaData": r["metaData"]}


def delta_table_rows(path: Path) -> TableRows:
    """Rows of a Delta table's current version from its log: per-file ``numRecords`` statistics."""
    log_dir = Path(path) / "_delta_log"
    names = [p.name for p in log_dir.iterdir()]
    commits = sorted(int(n[:20]) for n in names if re.fullmatch(r"\d{20}\.json", n))
    checkpoints: dict[int, list] = {}
    for n in names:
        m = _CHECKPOINT.match(n)
        if m:
            checkpoints.setdefault(int(m.group(1)), []).append((m, log_dir / n))
    cp_version, cp_files = -1, []
    for v in sorted(checkpoints, reverse=True):
        parts = checkpoints[v]
        if parts[0][0].group(2) is None:                          # classic single file, or v2 (uuid)
            cp_version, cp_files = v, [parts[0][1]]
            break
        if len(parts) == int(parts[0][0].group(3)):               # a complete multi-part checkpoint
            cp_version, cp_files = v, [p for _, p in sorted(parts, key=lambda x: x[1].name)]
            break
    active: dict[str, dict] = {}
    metadata_partitions: tuple = ()
    for a in _actions_of_checkpoint(log_dir, cp_files):
        if "add" in a:
            active[a["add"]["path"]] = a["add"]
        else:
            metadata_partitions = tuple(a["metaData"].get("partitionColumns") or ())
    for v in commits:
        if v <= cp_version:
            continue
        with open(log_dir / f"{v:020d}.json", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                a = json.loads(line)
                if "add" in a:
                    active[a["add"]["path"]] = a["add"]
                elif "remove" in a:
                    active.pop(a["remove"]["path"], None)
                elif "metaData" in a:
                    metadata_partitions = tuple(a["metaData"].get("partitionColumns") or ())
    rows, no_stats, by_part = 0, 0, {}
    for add in active.values():
        stats = add.get("stats")
        n = json.loads(stats).get("numRecords") if stats else None
        if n is None:
            no_stats += 1
            continue
        dv = add.get("deletionVector") or {}
        n -= int(dv.get("cardinality") or 0)
        rows += n
        pv = add.get("partitionValues") or {}
        if isinstance(pv, list):  # a map read from a Parquet checkpoint: [(key, value), ...]
            pv = dict(pv)
        if pv:
            metadata_partitions = metadata_partitions or tuple(sorted(pv))
            k = tuple(pv.get(c) for c in metadata_partitions)
            by_part[k] = by_part.get(k, 0) + n
    return TableRows(rows, metadata_partitions, by_part, no_stats)


def warehouse_rows(root: Path) -> dict[str, TableRows]:
    out = {}
    for db in DATABASES:
        d = Path(root) / db
        if d.is_dir():
            for t in sorted(d.iterdir()):
                if (t / "_delta_log").is_dir():
                    out[f"{db}.{t.name}"] = delta_table_rows(t)
    return out


def rewind_warehouse(root: Path, until_ms: int) -> dict[str, int]:
    """Put every Delta table under ``root`` back to its last commit made before ``until_ms`` (epoch ms).

    Later commits' log entries (json, crc, checkpoints) are deleted; their data files stay behind,
    unreferenced, as a VACUUM would find them. A table whose first commit is later is deleted whole.
    Returns the version each table was rewound to (-1: deleted). For ``--incremental-only``: the
    daily run is measured again on the warehouse exactly as the full run left it, without the full run.
    """
    kept: dict[str, int] = {}
    for log_dir in sorted(Path(root).glob("**/_delta_log")):
        versions = {}
        for f in log_dir.glob("*.json"):
            for line in f.read_text().splitlines():
                info = json.loads(line).get("commitInfo")
                if info is not None:
                    versions[int(f.name.split(".")[0])] = info["timestamp"]
        last = max((v for v, ts in versions.items() if ts < until_ms), default=-1)
        table = log_dir.parent
        kept[str(table.relative_to(root))] = last
        if last < 0:
            shutil.rmtree(table)
            continue
        for f in log_dir.iterdir():
            name = f.name.lstrip(".")   # Hadoop's local file system keeps a hidden .<file>.crc beside each
            head = name.split(".")[0]
            if name.startswith("_last_checkpoint") or (head.isdigit() and int(head) > last):
                f.unlink()   # Delta lists the log when _last_checkpoint is missing
    return kept


_EQ_FILTER = re.compile(r"\(?\s*(\w+)#\d+\s*=\s*(\d{4}-\d{2}-\d{2})\s*\)?")


def input_rows(scans: list[tuple[str, str]], root: Path, tables: dict[str, TableRows]) -> tuple[int, dict]:
    """Rows of the warehouse tables scanned (each once), from the row counts taken at the stage's start."""
    root_s = str(Path(root).absolute()).rstrip("/") + "/"
    wanted: dict[str, Optional[set]] = {}    # table -> partition values read, None = whole table
    for path, filters in scans:
        p = re.sub(r"^[a-z][a-z0-9+.-]*:", "", path)
        p = "/" + p.lstrip("/")
        if not p.startswith(root_s):
            continue
        parts = p[len(root_s):].split("/")
        if len(parts) < 2 or parts[0] not in DATABASES or "_delta_log" in parts:
            continue
        name = f"{parts[0]}.{parts[1]}"
        t = tables.get(name)
        eq = dict(_EQ_FILTER.findall(filters or ""))
        if t is not None and len(t.partition_columns) == 1 and t.partition_columns[0] in eq:
            if name not in wanted or wanted[name] is not None:
                wanted.setdefault(name, set()).add(eq[t.partition_columns[0]])
        else:
            wanted[name] = None
    counted = {}
    for name, parts in sorted(wanted.items()):
        t = tables.get(name)
        if t is None:
            counted[name] = 0   # created by the stage itself
        elif parts is None:
            counted[name] = t.rows
        else:
            counted[name] = sum(t.by_partition.get((v,), 0) for v in parts)
    return sum(counted.values()), counted


# ====================================================================== landing files

def _data_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            n += chunk.count(b"\n")
    return max(n - 1, 0)   # the header line


def landing_batches(landing: Path) -> dict:
    """{source: {dt: [rows, bytes]}} of the landing CSV files (rows = lines after the header)."""
    from kequn.landing import SOURCES

    out = {}
    for s in SOURCES:
        for d in sorted((landing / s).glob("dt=*")):
            rows = size = 0
            for f in d.glob("*.csv"):
                rows += _data_lines(f)
                size += f.stat().st_size
            out.setdefault(s, {})[d.name[3:]] = [rows, size]
    return out


def _read_strings(path: Path, columns: list[str]):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    t = pacsv.read_csv(pa.py_buffer(data), convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns}, strings_can_be_null=False))
    return t.select(columns)


def master_change(landing: Path, day: str) -> dict:
    """What the master-data batches of ``day`` carry, relative to the master records delivered before it.

    A key of the day's batch is *new* (never delivered before), a *re-delivery* of an existing record,
    and a re-delivery is *changed* when a column other than ``updated_at`` differs from the latest earlier
    version (timestamps compared with 'T' and ' ' alike).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from kequn.landing import MASTER, SOURCES

    per_source = {}
    for name, src in SOURCES.items():
        if src.kind != MASTER:
            continue
        cols, key = src.column_names, src.key[0]
        ts_cols = [c.name for c in src.columns if c.type == "timestamp"]
        folder = landing / name

        def norm(t):
            for c in ts_cols:
                t = t.set_column(t.column_names.index(c), c, pc.replace_substring(t[c], "T", " "))
            return t

        today = [_read_strings(f, cols) for f in sorted((folder / f"dt={day}").glob("*.csv"))]
        today = norm(pa.concat_tables(today)) if today else None
        today_keys = today[key] if today is not None else pa.array([], pa.string())
        earlier_keys, earlier = [], []
        for d in sorted(folder.glob("dt=*")):
            if d.name[3:] >= day:
                continue
            for f in sorted(d.glob("*.csv")):
                t = _read_strings(f, cols)
                earlier_keys.append(t[key])
                hit = t.filter(pc.is_in(t[key], value_set=today_keys.combine_chunks()
                                        if isinstance(today_keys, pa.ChunkedArray) else today_keys))
                if hit.num_rows:
                    earlier.append(norm(hit).append_column("_dt", pa.array([d.name[3:]] * hit.num_rows)))
        existing = pc.count_distinct(pa.chunked_array(earlier_keys, pa.string())).as_py() if earlier_keys else 0
        latest = {}
        if earlier:
            # latest earlier version of each key: by batch day, then updated_at
            for r in sorted(pa.concat_tables(earlier).to_pylist(), key=lambda r: (r["_dt"], r["updated_at"])):
                latest[r[key]] = r
        new = redelivered = changed = 0
        for r in (today.to_pylist() if today is not None else []):
            before = latest.get(r[key])
            if before is None:
                new += 1
                continue
            redelivered += 1
            if any(r[c] != before[c] for c in cols if c != "updated_at"):
                changed += 1
        per_source[name] = {"existing": existing, "new": new, "redelivered": redelivered, "changed": changed}
    tot = {k: sum(v[k] for v in per_source.values()) for k in ("existing", "new", "redelivered", "changed")}
    ex = tot["existing"] or 1
    tot["touched_share"] = (tot["new"] + tot["redelivered"]) / ex
    tot["changed_share"] = tot["changed"] / ex
    tot["per_source"] = per_source
    return tot


def change_note(mc: dict) -> str:
    s = (f"last day's master batches: {mc['new'] + mc['redelivered']:,} rows for {mc['existing']:,} existing master "
         f"records = {mc['touched_share']:.2%} ({mc['new']:,} new records, {mc['redelivered']:,} re-deliveries of "
         f"which {mc['changed']:,} changed = {mc['changed_share']:.2%} of the records)")
    if not 0.005 <= mc["touched_share"] <= 0.02:
        s += "; NOTE: not ~1% of the master records"
    return s


# ====================================================================== machine, formatting, BENCHMARKS.md

def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(next(x for x in fh if x.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "ram_bytes": mem}


def human_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


HEADER = ("| run | stage | input rows | output rows | seconds | rows/s | shuffle read | shuffle write | peak memory |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|")


def table_lines(rows: list[dict]) -> list[str]:
    out = [HEADER]
    for r in rows:
        rate = f"{r['input_rows'] / r['seconds']:,.0f}" if r["seconds"] else "-"
        stage = f"**{r['stage']}**" if r["stage"] == "total" else r["stage"]
        if r.get("error"):
            stage += " (FAILED)"
        out.append(f"| {r['run']} | {stage} | {r['input_rows']:,} | {r['output_rows']:,} | {r['seconds']:.1f} | {rate} | "
                   f"{human_bytes(r['shuffle_read'])} | {human_bytes(r['shuffle_write'])} | {human_bytes(r['peak_heap'] or None)} |")
    return out


DENSITY_DEFAULTS = {"holding_every": 1, "activity": 1.0}


def density(holding_every: int = 1, activity: float = 1.0) -> dict[str, str]:
    """The generator's settings that differ from its defaults: ``name=value`` (for the block's marker) -> words
    (for its title). Empty at the defaults, so the tables written before these settings keep their place."""
    words = {}
    if holding_every != DENSITY_DEFAULTS["holding_every"]:
        words[f"holding_every={holding_every}"] = f"holdings every {holding_every} days"
    if activity != DENSITY_DEFAULTS["activity"]:
        words[f"activity={activity:g}"] = f"everyday activity x{activity:g}"
    return words


def block_marker(persons: int, days: int, dens: str = "") -> str:
    return f"<!-- pipeline_bench persons={persons} days={days}{' ' + dens if dens else ''} -->"


_BLOCK = re.compile(r"<!-- pipeline_bench persons=(\d+) days=(\d+)((?: \w+=[\d.]+)*) -->\n.*?"
                    r"<!-- /pipeline_bench -->\n", re.S)

SECTION_INTRO = """Every stage of `kequn run` in one SparkSession (JVM started once): a *full* run into an empty warehouse
at as-of = the second-to-last generated day, then an *incremental* run for the last day, after the full
run's journey sends are delivered into the landing zone (`kequn.journeys.simulate`; not with
`--no-delivery`, nor in the tables measured before 2026-12-05 12:00 UTC). Input rows:
ingest, the landing rows it loads; later stages, the rows (Delta log statistics, at the stage's start) of
the warehouse tables their queries scanned. Shuffle bytes and peak JVM heap come from Spark's event log,
attributed by job group `kequn:<stage>`. Definitions in the script's docstring.
"""


def write_section(path: Path, persons: int, days: int, block: str, dens: str = "") -> None:
    """Replace the block of this size and density in the end-to-end section of ``path`` where it stands, or add
    it among the blocks in order of size; the prose between blocks stays where it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = block.rstrip("\n") + "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == SECTION), None)
    if start is None:
        before = text + ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "")
        path.write_text(before + SECTION + "\n\n" + SECTION_INTRO.strip("\n") + "\n\n" + block, encoding="utf-8")
        return
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    before, body, after = "".join(lines[:start + 1]), "".join(lines[start + 1:end]), "".join(lines[end:])
    key = (persons, days, dens)
    found = [((int(m.group(1)), int(m.group(2)), m.group(3).strip()), m) for m in _BLOCK.finditer(body)]
    same = [m for k, m in found if k == key]
    later = [m for k, m in found if k > key]
    if same:
        body = body[:same[0].start()] + block + body[same[0].end():]
    elif later:
        body = body[:later[0].start()] + block + "\n" + body[later[0].start():]
    elif found:
        body = body[:found[-1][1].end()] + "\n" + block + body[found[-1][1].end():]
    else:
        body = "\n" + (body.strip("\n") or SECTION_INTRO.strip("\n")) + "\n\n" + block + ("\n" if after else "")
    path.write_text(before + body + after, encoding="utf-8")


# ====================================================================== the run

def _sum_table_counts(counts: dict) -> int:
    return sum(int(v) for k, v in counts.items() if "." in str(k) and isinstance(v, (int, float)))


def remove_deliveries(landing: Path) -> None:
    """Remove the touch files an earlier delivery wrote (``journey-*.csv``): a reused landing then holds
    the generator's files only, and the next delivery's."""
    for stale in (landing / "touch").glob("dt=*/journey-*.csv"):
        stale.unlink()


def deliver_journey_sends(spark, wh, landing: Path, day: str, seed: int) -> dict:
    """The journey actions of ``day`` delivered into the landing zone (``kequn.journeys.simulate``), as
    the delivery system would before the next day's run: sends as touch rows in ``touch/dt=<day+1>``,
    some opened the same day, later opens in the days after (beyond the benchmark's last day).

    The generator's own touches carry its campaign ids, none a journey's code: without this the daily
    run's journeys never meet an open of theirs.
    """
    from kequn.journeys import simulate_delivery

    spark.sparkContext.setLocalProperty(RUN_PROPERTY, DELIVERY_RUN)
    t0 = time.time()
    counts = simulate_delivery(spark, wh, day, str(landing), DELIVERY_OPEN_RATES, seed=seed)
    spark.sparkContext.setLocalProperty(RUN_PROPERTY, None)
    sent_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    landed = landing / "touch" / f"dt={sent_day}" / f"journey-{day}.csv"
    out = dict(counts, day=day, rows_landed=_data_lines(landed) if landed.exists() else 0,
               seconds=round(time.time() - t0, 1))
    log.info("bench: journey sends of %s delivered: %s", day, out)
    return out


def delivery_note(d: dict) -> str:
    rates = ", ".join(f"{k} {v:.0%}" for k, v in sorted(DELIVERY_OPEN_RATES.items()))
    return (f"journey sends of {d['day']} delivered before the incremental run (`kequn.journeys.simulate`, open "
            f"rates {rates}): {d['rows_landed']:,} touch rows, {d['opened_same_day']:,} opened the same day, "
            f"{d['opened_later']:,} later (after the last day, not read); {d['seconds']:.1f} s, not in the table")


def run_once(label: str, spark, wh, wh_root: Path, landing: Path, as_of: str, config, stages: list[str]) -> list[dict]:
    from kequn import pipeline

    spark.sparkContext.setLocalProperty(RUN_PROPERTY, label)
    out = []
    for i, stage in enumerate(stages):
        before = warehouse_rows(wh_root)   # Delta logs only; no Spark job
        code, results = pipeline.run_stages([stage], spark, wh, str(landing), as_of, config,
                                            following=tuple(stages[i + 1:]))
        r = results[0]
        out.append({"run": label, "stage": stage, "as_of": as_of, "seconds": r.seconds, "counts": r.counts,
                    "output_rows": _sum_table_counts(r.counts), "error": r.error, "exit_code": code,
                    "tables_before": {k: v.rows for k, v in before.items()}, "_before": before})
        log.info("bench %s %s: %.1f s, %s", label, stage, r.seconds, r.error or r.counts)
        if code != 0:
            break
    spark.sparkContext.setLocalProperty(RUN_PROPERTY, None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Column definitions: see the module docstring.")
    ap.add_argument("--persons", type=int, required=True)
    ap.add_argument("--days", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--end", default="2026-11-25", help="date of the last landing batch")
    ap.add_argument("--holding-every", type=int, default=1, metavar="DAYS",
                    help="the generator's holding snapshot every DAYS days (default 1: daily, 60%% of the rows)")
    ap.add_argument("--activity", type=float, default=1.0,
                    help="the generator's scale of everyday transactions and events (default 1.0)")
    ap.add_argument("--out", default="/tmp/kequn_bench", help="scratch folder: landing/, wh/, eventlog/")
    ap.add_argument("--reuse", action="store_true", help="keep <out>/landing if it was generated with the same size")
    ap.add_argument("--incremental", action="store_true", help="then run every stage again for the last day")
    ap.add_argument("--incremental-only", action="store_true",
                    help="run the incremental day only: rewind <out>/wh to the end of the full run recorded in "
                         "<out>/pipeline_bench.json by an earlier run of this size, and reuse that run's full figures")
    ap.add_argument("--no-delivery", action="store_true",
                    help="do not deliver the full run's journey sends into the landing zone before the incremental "
                         "run (as before 2026-12-05: the daily run's journeys then see no open of theirs)")
    ap.add_argument("--conf", default=None, help="configuration folder (default: the project's conf/)")
    ap.add_argument("--write", metavar="FILE", help="replace/insert this size's table in FILE (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if args.incremental_only:
        args.incremental = args.reuse = True
    if args.persons < 1 or args.days < 2:
        ap.error("--persons must be >= 1 and --days >= 2 (the full run stops one day before the last)")
    if args.holding_every < 1 or not args.activity > 0:
        ap.error("--holding-every must be >= 1 and --activity > 0")
    thinned = density(args.holding_every, args.activity)
    dens = " ".join(thinned)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    for noisy in ("py4j", "great_expectations", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if os.environ.pop("KEQUN_TEST", None):
        log.warning("KEQUN_TEST was set; unset for the benchmark (production session settings)")
    os.environ.setdefault("KEQUN_PSEUDONYM_KEY", "bench-key-not-secret")
    if args.conf:
        os.environ["KEQUN_CONF"] = str(Path(args.conf).absolute())

    project = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(project / "lib"))
    py = os.path.relpath(sys.executable, os.getcwd()) if sys.executable.startswith(str(project)) else sys.executable
    command = shlex.join([py, os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd()),
                          *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out).absolute()
    landing, wh_root, events = out / "landing", out / "wh", out / "eventlog"
    end = dt.date.fromisoformat(args.end)
    full_day, last_day = (end - dt.timedelta(days=1)).isoformat(), end.isoformat()
    started_at = dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    mach = machine()
    t_bench = time.time()

    # ---------------------------------------------------------------- landing
    wanted = {"persons": args.persons, "days": args.days, "seed": args.seed, "end": args.end,
              "holding_every": args.holding_every, "activity": args.activity}
    marker = landing / MARKER
    info = json.loads(marker.read_text()) if marker.exists() else None
    if args.reuse and info and {k: info.get(k, DENSITY_DEFAULTS.get(k)) for k in wanted} == wanted:
        log.info("bench: reusing %s (%s)", landing, wanted)
        gen_seconds = None
    else:
        if args.reuse:
            log.info("bench: no landing folder of this size in %s; generating", landing)
        from kequn.generate import generate
        if marker.exists():
            marker.unlink()
        t0 = time.time()
        summary = generate(str(landing), persons=args.persons, days=args.days, seed=args.seed, end=args.end,
                           holding_every=args.holding_every, activity=args.activity)
        gen_seconds = time.time() - t0
        info = dict(wanted, summary=summary, generate_seconds=round(gen_seconds, 1))
        info["batches"] = landing_batches(landing)
        for s, per_dt in info["batches"].items():
            counted = sum(r for r, _ in per_dt.values())
            if counted != summary.get(s, counted):
                log.warning("bench: %s: %d data lines in the files, the generator reported %d rows", s, counted,
                            summary[s])
        info["master_change"] = master_change(landing, last_day)
        marker.write_text(json.dumps(info, indent=1))
    batches = info["batches"]
    landing_rows = sum(r for per in batches.values() for r, _ in per.values())
    landing_bytes = sum(b for per in batches.values() for _, b in per.values())
    from kequn.landing import MASTER_SOURCES
    fact_rows = sum(r for s, per in batches.items() if s not in MASTER_SOURCES for r, _ in per.values())
    rows_upto = lambda lo, hi: sum(r for per in batches.values() for d, (r, _) in per.items() if lo < d <= hi)  # noqa
    mc = info["master_change"]
    log.info("bench: landing %s rows, %s; %s", f"{landing_rows:,}", human_bytes(landing_bytes), change_note(mc))

    # ---------------------------------------------------------------- one session, both runs
    earlier_full: list[dict] = []
    full_ended_ms, earlier_started = None, None
    if args.incremental_only:
        prev_path = out / "pipeline_bench.json"
        prev = json.loads(prev_path.read_text()) if prev_path.exists() else {}
        earlier_full = [r for r in prev.get("results", []) if r["run"] == "full"]
        earlier_started = prev.get("started_at")
        full_ended_ms = prev.get("full_ended_ms")
        if (prev.get("persons"), prev.get("days"), prev.get("seed"), prev.get("density", "")) \
                != (args.persons, args.days, args.seed, dens) \
                or not full_ended_ms or not earlier_full or any(r["exit_code"] for r in earlier_full):
            ap.error(f"--incremental-only needs {prev_path} from a successful full run of this size, seed and "
                     "density (recorded by this script since it writes full_ended_ms)")
        rewound = rewind_warehouse(wh_root, full_ended_ms)
        log.info("bench: warehouse rewound to the full run's end (%d tables, %d deleted)", len(rewound),
                 sum(v < 0 for v in rewound.values()))
        shutil.rmtree(events, ignore_errors=True)
    else:
        for d in (wh_root, events):
            shutil.rmtree(d, ignore_errors=True)
    events.mkdir(parents=True)
    from kequn.config import load_pipeline
    from kequn.session import build_session
    from kequn.tables import Warehouse

    config = load_pipeline(Path(args.conf) if args.conf else None)
    overrides = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.logStageExecutorMetrics": "true",
        "spark.executor.metrics.pollingInterval": "1s",
    }
    t0 = time.time()
    spark = build_session(str(wh_root), config, overrides=overrides)
    session_seconds = time.time() - t0
    wh = Warehouse(spark, str(wh_root))
    stages = list(config.stages)
    if args.incremental_only:
        results, ok = [], True
    else:
        results = run_once("full", spark, wh, wh_root, landing, full_day, config, stages)
        ok = all(r["exit_code"] == 0 for r in results) and len(results) == len(stages)
        full_ended_ms = int(time.time() * 1000)
    delivery = None
    if args.incremental and ok:
        remove_deliveries(landing)
        # Sends exist only where the journeys ran (a --conf may run fewer stages, e.g. ingest alone).
        if not args.no_delivery and "journeys" in stages:
            delivery = deliver_journey_sends(spark, wh, landing, full_day, args.seed)
        results += run_once("incremental", spark, wh, wh_root, landing, last_day, config, stages)
        ok = all(r["exit_code"] == 0 for r in results)
    spark.stop()
    load_end = os.getloadavg()

    # ---------------------------------------------------------------- event log -> per stage
    work = read_event_log(events)
    first_day = min(d for per in batches.values() for d in per)
    ingest_rows = {"full": rows_upto("0000", full_day),
                   "incremental": rows_upto(full_day, last_day) + (delivery["rows_landed"] if delivery else 0)}
    for r in results:
        w = work.get((r["run"], GROUP_PREFIX + r["stage"]), SparkWork())
        if r["stage"] == "ingest":
            r["input_rows"], r["input_tables"] = ingest_rows[r["run"]], {"landing": ingest_rows[r["run"]]}
        else:
            r["input_rows"], r["input_tables"] = input_rows(w.scans, wh_root, r["_before"])
        r.update(shuffle_read=w.shuffle_read, shuffle_write=w.shuffle_write, peak_heap=w.peak_heap,
                 peak_spark_memory=w.peak_unified, jobs=w.jobs,
                 spark_stages=w.stages, tasks=w.tasks, records_scanned=w.records_read)
        del r["_before"]
    results = earlier_full + results
    rows = []
    for run in ("full", "incremental"):
        rr = [r for r in results if r["run"] == run]
        if not rr:
            continue
        rows += rr
        rows.append({"run": run, "stage": "total", "input_rows": sum(r["input_rows"] for r in rr),
                     "output_rows": sum(r["output_rows"] for r in rr), "seconds": sum(r["seconds"] for r in rr),
                     "shuffle_read": sum(r["shuffle_read"] for r in rr),
                     "shuffle_write": sum(r["shuffle_write"] for r in rr),
                     "peak_heap": max(r["peak_heap"] for r in rr)})
    other = {f"{k[0]}/{k[1]}": {"jobs": v.jobs, "tasks": v.tasks} for k, v in work.items()
             if not (k[0] in ("full", "incremental") and (k[1] or "").startswith(GROUP_PREFIX))}
    totals = {r["run"]: r["seconds"] for r in rows if r["stage"] == "total"}
    ratio = totals["incremental"] / totals["full"] if len(totals) == 2 and totals["full"] else None

    # ---------------------------------------------------------------- report
    ended_at = dt.datetime.now().astimezone()
    wall = time.time() - t_bench
    full_rows = ingest_rows["full"]
    lines = [
        block_marker(args.persons, args.days, dens),
        f"### {args.persons:,} persons, {args.days} days" + "".join(f", {w}" for w in thinned.values()),
        "",
        f"`{command}`",
        "",
        f"- machine: {mach['cores']} cores, {human_bytes(mach['ram_bytes'])} RAM; load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end; {started_at:%Y-%m-%d %H:%M %Z}, "
        f"{wall / 60:.1f} min in all (session start {session_seconds:.0f} s"
        + (f", generation {gen_seconds:.0f} s)" if gen_seconds is not None else ", landing reused)"),
        f"- landing: {args.persons:,} persons, {args.days} days ({first_day} .. {last_day}, seed {args.seed}), "
        f"{landing_rows:,} rows ({fact_rows / args.persons:.0f} fact rows a person), {human_bytes(landing_bytes)}; "
        f"full run as of {full_day} ({full_rows:,} rows), "
        + (f"incremental as of {last_day} ({ingest_rows['incremental']:,} rows)" if args.incremental
           else "no incremental run"),
        f"- {change_note(mc)}",
        *([f"- {delivery_note(delivery)}"] if delivery else []),
        *([f"- full run: the figures of the run started {earlier_started} (same landing, same code unless "
           "said); this run rewound the warehouse to that run's end and ran the incremental day only"]
          if args.incremental_only else []),
        "",
        *table_lines(rows),
        "",
    ]
    if ratio is not None:
        lines.append(f"Incremental / full, total seconds: **{ratio:.2f}** "
                     f"({totals['incremental']:.1f} s / {totals['full']:.1f} s).")
        lines.append("")
    if not ok:
        failed = next(r for r in results if r["exit_code"] != 0)
        lines.append(f"**Stage {failed['stage']} of the {failed['run']} run FAILED** (exit {failed['exit_code']}): "
                     f"{failed['error']}")
        lines.append("")
    lines.append("<!-- /pipeline_bench -->")
    block = "\n".join(lines) + "\n"
    print("\n" + block)
    for r in results:
        print(f"  {r['run']:<11} {r['stage']:<9} jobs {r['jobs']:>4}  tasks {r['tasks']:>5}  peak Spark execution+storage "
              f"memory {human_bytes(r['peak_spark_memory']):>9}  rows scanned by Spark {r['records_scanned']:>11,}  "
              f"tables counted: "
              + (", ".join(f"{k}={v:,}" for k, v in r["input_tables"].items()) or "-"))
    if any(v["jobs"] for v in other.values()):
        print("  Spark work outside the stages (not in the table): "
              + ", ".join(f"{k}: {v['jobs']} jobs, {v['tasks']} tasks" for k, v in other.items()))
    (out / "pipeline_bench.json").write_text(json.dumps({
        "command": command, "machine": mach, "load_start": load_start, "load_end": load_end,
        "started_at": started_at.isoformat(), "ended_at": ended_at.isoformat(), "persons": args.persons,
        "days": args.days, "seed": args.seed, "density": dens, "landing_rows": landing_rows,
        "landing_bytes": landing_bytes,
        "master_change": mc, "delivery": delivery, "full_ended_ms": full_ended_ms, "results": results, "totals": rows,
        "ratio_incremental_full": ratio,
        "outside_stages": other}, indent=1, default=str))
    if args.write:
        if not ok:
            log.error("bench: a stage failed; %s not written", args.write)
        else:
            write_section(Path(args.write), args.persons, args.days, block, dens)
            print(f"wrote the {args.persons:,} x {args.days} table into {args.write}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
