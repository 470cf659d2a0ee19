"""The configuration reference: every key of every `conf/` file, with its type, default and comment.

Written from the same dataclasses the loader parses YAML into, so it cannot drift from the code:

    .venv/bin/python -m kequn.config_reference > docs/configuration.md

(the test suite checks that docs/configuration.md is what this prints).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing

from .config import PipelineConfig
from .journeys.definitions import JourneyFile
from .quality.config import TableSuite
from .segments.definitions import SegmentDef
from .stream.settings import StreamOptions, _SegmentsFile
from .tags.catalog import Tag

# (file pattern, what one file or one list entry is, the list key entries sit under, or None)
FILES = [
    ("conf/pipeline.yaml", PipelineConfig, None),
    ("conf/tags/*.yaml", Tag, "tags"),
    ("conf/segments/*.yaml", SegmentDef, "segments"),
    ("conf/journeys/*.yaml", JourneyFile, None),
    ("conf/quality/*.yaml", TableSuite, "suites"),
    ("conf/stream/options.yaml", StreamOptions, None),
    ("conf/stream/realtime_segments.yaml", _SegmentsFile, None),
]
INTERNAL = {"conf_dir"}  # set by the loader, not by users

# Meanings of keys whose dataclass field carries no comment: by full key path first, then by the
# last part of the path (the same word means the same thing in every file).
MEANINGS = {
    "spark.master": "Spark master for local runs; ignored under spark-submit, where `--master` decides",
    "spark.app_name": "Spark application name",
    "spark.conf": "any Spark setting, e.g. `spark.sql.shuffle.partitions: \"8\"`; `--spark-conf` overrides",
    "pseudonym.key_file": "file holding the HMAC key (absolute, or relative to the project)",
    "identity.degree_limits": "an identifier shared by more records than this is a shared point and links nobody",
    "identity.blocklist": "per identifier type, values or regexes that never link (kiosk phones, default numbers)",
    "stream.trigger_seconds": "micro-batch interval",
    "stream.watermark": "how late an event may arrive and still count in live activity",
    "stream.kafka": "Kafka options (`kafka.bootstrap.servers`, `subscribe`, security settings)",
    "stages": "the order `kequn run` follows",
    "tags[].definition.source": "statistic: the fact source aggregated (transaction, event, holding, touch, …)",
    "tags[].definition.window_days": "statistic: days back from the run's day, inclusive",
    "tags[].definition.time_column": "statistic: the column the window applies to",
    "tags[].definition.where": "statistic: SQL filter on the source rows",
    "tags[].definition.agg": "statistic: one SQL aggregate, e.g. `count(1)`, `sum(amount)`",
    "tags[].definition.value": "statistic: SQL over the aggregate (named `value`) giving the tag's value; a null aggregate stays null",
    "tags[].definition.default": "SQL literal used when a person has no value",
    "tags[].definition.expr": "rule: SQL over other tags' codes giving the value",
    "tags[].definition.model.method": "the model family",
    "tags[].definition.model.min_train_rows": "fewer labelled rows: the model is not trained (tag null)",
    "tags[].definition.model.seed": "seed of the sample's draw by one_id, of GBT, of k-means (reproducible scores)",
    "segments[].rule": "SQL boolean over tag codes",
    "segments[].base": "a segment this one narrows (members must be in it)",
    "segments[].fed_by": "journeys whose exits add members (instead of a rule)",
    "segments[].profile_tags": "tags compared with the population in gold.segment_profile",
    "journeys[].entry_segment": "the segment whose new members enter the journey",
    "journeys[].steps[].step": "step number, from 1",
    "journeys[].steps[].channels": "channels touched at this step (app_push, sms, wechat, …)",
    "journeys[].on_opened.feeds": "channel → segment the person joins when they opened on that channel",
    "journeys[].on_not_opened.feeds": "segments the person joins when nothing was opened",
    "journeys[].control_share": "share of entrants held out as the control group",
    "journeys[].goal.source": "the fact source the goal is measured on",
    "journeys[].goal.where": "SQL filter: a matching fact after entry is a success",
    "frequency_cap.max_steps_per_day": "journey steps per person per day, over all journeys",
    "suites[].table": "the table the suite checks (`db.table`)",
    "suites[].value_sets[].values": "the allowed values",
    "suites[].ranges[].min": "smallest allowed value (none: unbounded)",
    "suites[].ranges[].max": "largest allowed value (none: unbounded)",
    "suites[].foreign_keys[].references": "the referenced table (`db.table`)",
    "suites[].foreign_keys[].ref_columns": "its columns (default: the same names)",
    "suites[].foreign_keys[].max_orphans": "rows allowed without a match",
    "suites[].long_form": "a long form: each key holds one row for every name of the checked rows (key + name unique, each key complete)",
    "suites[].long_form.keys": "the columns of one key (e.g. as_of, one_id)",
    "suites[].long_form.name": "the column naming the row's item (e.g. tag_code)",
    "suites[].row_count.min_ratio": "fewest rows, as a share of the previous version or day",
    "suites[].row_count.max_ratio": "most rows, as a share of the previous version or day",
    "suites[].row_count.min_rows": "absolute floor",
    "suites[].freshness.column": "the column holding the row's day",
    "suites[].pii_scan.enabled": "scan string columns for clear mobile, ID and card numbers",
    "suites[].pii_scan.exclude_columns": "columns not scanned",
    "suites[].freshness.mode": "`max`: the column's maximum is the run's day; `all`: every row is",
    "suites[].identity.max_largest_component": "most records one one_id may hold",
    "suites[].identity.max_blocked_share": "largest share of identifiers kept from linking as shared points",
    "suites[].identity.health_table": "where the blocked share is read",
    "suites[].identity.blocked_share_column": "its column",
    "realtime_segments[].event_types": "any of these event types (empty: any)",
    "realtime_segments[].sources": "any of these sources (empty: any)",
    "realtime_segments[].keyword_contains": "search keyword contains any of these",
    "realtime_segments[].page_contains": "page contains any of these",
    "realtime_segments[].within_minutes": "the event is at most this old; membership lasts this long after it",
    "suites[].expectations[].type": "a GX expectation, snake case",
    "suites[].expectations[].kwargs": "its arguments",
}
BY_LAST_KEY = {
    "code": "unique code, used in SQL and tables",
    "name_zh": "Chinese display name",
    "name_en": "English display name",
    "description": "what it means, for analysts",
    "owner": "team answerable for it",
    "purpose": "`marketing` segments can be exported and fed to journeys; `analysis` ones cannot",
    "category": "tag category (the contract's seven)",
    "kind": "`statistic` (aggregate of one source), `rule` (SQL over tags) or `model`",
    "value_type": "type of the value in gold.tag_values",
    "status": "the journey status the person leaves with",
    "after_days": "days after the last step with no open",
    "severity": "`critical` stops publication; `warning` is recorded only",
    "columns": "column names",
    "column": "column name",
}


def _comments(cls) -> dict[str, str]:
    """Field -> the comment on its line, or the comment lines just above it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found, above = {}, []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        m = re.match(r"^(\w+)\s*:", text)
        if m and not text.startswith(("def ", "class ")):
            inline = text.split("#", 1)[1].strip() if "#" in text else ""
            found[m.group(1)] = " ".join(above + ([inline] if inline else []))
        above = []
    return found


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _type_name(inner[0]) if len(inner) == 1 else " \\| ".join(_type_name(a) for a in inner)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping" if not args else f"mapping {_type_name(args[0])} → {_type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def _default(field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "**required**"
    if value is None:
        return "none"
    if dataclasses.is_dataclass(value):
        return ""
    if isinstance(value, (list, dict)) and not value:
        return "empty"
    return f"`{value}`"


def _dataclass_of(tp):
    """The dataclass a field holds (itself, optional, or as list entries), with the key suffix."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return tp, ""
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _dataclass_of(inner[0])
    if origin in (list, tuple) and args and dataclasses.is_dataclass(args[0]):
        return args[0], "[]"
    return None, ""


def rows(cls, prefix: str = ""):
    """(key path, type, default, comment) for every field of ``cls``, nested sections flattened."""
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in INTERNAL:
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        generic = re.sub(r"^\w+\[\]\.", "", key)
        meaning = comments.get(f.name) or MEANINGS.get(key) or MEANINGS.get(generic) or BY_LAST_KEY.get(f.name, "")
        yield key, _type_name(tp), _default(f), meaning
        inner, suffix = _dataclass_of(tp)
        if inner is not None:
            yield from rows(inner, f"{key}{suffix}.")


def file_rows(cls, list_key):
    """``rows`` of one conf file: keys of list entries are written ``<list_key>[].<key>``."""
    return rows(cls, f"{list_key}[]." if list_key else "")


def markdown() -> str:
    out = ["# Configuration reference", "",
           "Every key kequn reads from `conf/` (or the folder given with `--conf`), with its type and default.",
           "Generated from the loader's dataclasses by `python -m kequn.config_reference`; an unknown key",
           "anywhere stops a run before any Spark job, naming the file and the key path.", ""]
    for pattern, cls, list_key in FILES:
        out += [f"## `{pattern}`", ""]
        doc = inspect.getdoc(cls) or ""
        if doc and not doc.startswith(cls.__name__ + "("):
            out += [doc.splitlines()[0], ""]
        if list_key:
            out += [f"A list under `{list_key}:`; each entry has these keys.", ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key, tp, default, comment in file_rows(cls, list_key):
            out.append(f"| `{key}` | {tp} | {default} | {comment.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
