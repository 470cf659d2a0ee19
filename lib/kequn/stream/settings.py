"""Settings of the real-time stage: ``conf/pipeline.yaml`` ``stream:`` plus ``conf/stream/*.yaml``.

``conf/stream/options.yaml`` (optional) tunes the file source; ``conf/stream/realtime_segments.yaml``
declares the real-time segment rules. Both are checked before any Spark job starts: unknown keys,
unknown event types or sources, and a bad ``stream.format`` are configuration errors naming the file.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Optional

from ..config import ConfigError, PipelineConfig, default_conf_dir, load_file
from ..landing import SOURCES

FORMATS = ("csv", "json", "kafka")
EVENT_TYPES = SOURCES["event"].column("event_type").enum
EVENT_SOURCES = SOURCES["event"].column("source").enum
_INTERVAL = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclasses.dataclass(frozen=True)
class RealtimeSegment:
    """A person enters ``code`` when one of their events matches every condition given.

    Lists are alternatives (any of); an empty list means no condition. The event must be at
    most ``within_minutes`` old when processed; membership lasts ``within_minutes`` after
    the latest matching event.
    """
    code: str
    description: str = ""
    name_zh: str = ""
    event_types: list[str] = dataclasses.field(default_factory=list)
    sources: list[str] = dataclasses.field(default_factory=list)
    keyword_contains: list[str] = dataclasses.field(default_factory=list)
    page_contains: list[str] = dataclasses.field(default_factory=list)
    within_minutes: int = 60


@dataclasses.dataclass(frozen=True)
class _SegmentsFile:
    realtime_segments: list[RealtimeSegment] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    # File source: files per micro-batch (bounds a batch's size and the driver's file list).
    max_files_per_trigger: int = 200
    # Kafka source: offsets per micro-batch (unset: everything available).
    max_offsets_per_trigger: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class StreamSettings:
    format: str
    trigger_seconds: int
    # Events of unknown users wait this long (event time) for identity to catch up.
    unresolved_retention_seconds: int
    kafka: dict[str, str]
    options: StreamOptions
    segments: tuple[RealtimeSegment, ...]


def interval_seconds(text: str, where: str) -> int:
    m = _INTERVAL.match(str(text))
    if not m:
        raise ConfigError(f"{where}: '{text}' is not an interval like '30 minutes', '2 hours', '1 day'")
    return int(m.group(1)) * _SECONDS[m.group(2).lower()]


def _check_segments(segments: list[RealtimeSegment], where: str) -> None:
    seen = set()
    for s in segments:
        if not re.match(r"^[a-z][a-z0-9_]*$", s.code):
            raise ConfigError(f"{where}: segment code '{s.code}' must be lower_snake_case")
        if s.code in seen:
            raise ConfigError(f"{where}: segment code '{s.code}' declared twice")
        seen.add(s.code)
        bad = [t for t in s.event_types if t not in EVENT_TYPES]
        if bad:
            raise ConfigError(f"{where}: segment '{s.code}': unknown event_types {bad}; allowed {list(EVENT_TYPES)}")
        bad = [t for t in s.sources if t not in EVENT_SOURCES]
        if bad:
            raise ConfigError(f"{where}: segment '{s.code}': unknown sources {bad}; allowed {list(EVENT_SOURCES)}")
        if s.within_minutes <= 0:
            raise ConfigError(f"{where}: segment '{s.code}': within_minutes must be positive")
        if not (s.event_types or s.sources or s.keyword_contains or s.page_contains):
            raise ConfigError(f"{where}: segment '{s.code}' has no condition: it would take everyone")


def _expand_env(value: str) -> str:
    """``${NAME}`` in a Kafka option is read from the environment (secrets stay out of conf)."""
    def sub(m):
        if m.group(1) not in os.environ:
            raise ConfigError(f"pipeline.yaml: stream.kafka refers to ${{{m.group(1)}}}, which is not set")
        return os.environ[m.group(1)]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, str(value))


def load_settings(config: PipelineConfig, trigger_seconds: Optional[int] = None) -> StreamSettings:
    conf_dir = Path(config.conf_dir) if config.conf_dir else default_conf_dir()
    s = config.stream
    if s.format not in FORMATS:
        raise ConfigError(f"pipeline.yaml: stream.format '{s.format}' is not one of {list(FORMATS)}")
    if s.format == "kafka":
        if not s.kafka.get("bootstrap.servers") and not s.kafka.get("kafka.bootstrap.servers"):
            raise ConfigError("pipeline.yaml: stream.format is kafka but stream.kafka has no 'bootstrap.servers'")
        if not any(k in s.kafka for k in ("topic", "subscribe", "subscribePattern", "assign")):
            raise ConfigError("pipeline.yaml: stream.kafka needs 'topic' (or subscribe/subscribePattern/assign)")
    seconds = trigger_seconds if trigger_seconds is not None else s.trigger_seconds
    if seconds <= 0:
        raise ConfigError(f"stream trigger interval must be positive, got {seconds}")
    opts_path = conf_dir / "stream" / "options.yaml"
    options = load_file(StreamOptions, opts_path) if opts_path.exists() else StreamOptions()
    seg_path = conf_dir / "stream" / "realtime_segments.yaml"
    segments = load_file(_SegmentsFile, seg_path).realtime_segments if seg_path.exists() else []
    _check_segments(segments, str(seg_path))
    return StreamSettings(
        format=s.format, trigger_seconds=seconds,
        unresolved_retention_seconds=interval_seconds(s.watermark, "pipeline.yaml: stream.watermark"),
        kafka={k: _expand_env(v) for k, v in s.kafka.items()} if s.format == "kafka" else dict(s.kafka),
        options=options, segments=tuple(segments))
