"""YAML configuration turned into frozen, typed dataclasses.

One loader serves every file under ``conf/``: :func:`parse` walks a dataclass's
fields, converts nested dataclasses, lists and dicts, and rejects unknown or
missing keys with a message naming the file and the key path, before any Spark
job starts. Domain modules (tags, segments, journeys, quality) declare their
own dataclasses and call :func:`parse` / :func:`load_file`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration file breaks its schema; the message names file and key."""


def default_conf_dir() -> Path:
    return Path(os.environ.get("KEQUN_CONF", PROJECT_ROOT / "conf"))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def parse(cls: Any, data: Any, where: str) -> Any:
    """Convert plain YAML data into ``cls``; ``where`` names the file and key path."""
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if cls is Any:
        return data
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return parse(a, data, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: value {data!r} fits none of {[_type_name(a) for a in inner]}")
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        # YAML keys may use dashes; fields use underscores.
        norm = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(norm) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
        kwargs = {}
        for name, f in fields.items():
            if name in norm:
                kwargs[name] = parse(hints[name], norm[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required key '{name}'")
        return cls(**kwargs)
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise ConfigError(f"{where}: expected a list, got {type(data).__name__}")
        items = [parse(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        kt, vt = args if args else (Any, Any)
        return {parse(kt, k, where): parse(vt, v, f"{where}.{k}") for k, v in data.items()}
    if origin is typing.Literal:
        if data not in args:
            raise ConfigError(f"{where}: {data!r} is not one of {list(args)}")
        return data
    if cls is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if cls is str and isinstance(data, (int, float)) and not isinstance(data, bool):
        return str(data)
    if isinstance(cls, type) and not isinstance(data, cls):
        raise ConfigError(f"{where}: expected {cls.__name__}, got {data!r}")
    if cls is int and isinstance(data, bool):
        raise ConfigError(f"{where}: expected int, got {data!r}")
    return data


def read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def load_file(cls: Any, path: Path) -> Any:
    data = read_yaml(path)
    return parse(cls, data if data is not None else {}, str(path))


def load_dir(cls: Any, directory: Path, list_key: str) -> list:
    """Load every ``*.yaml`` in ``directory``; each file holds ``{list_key: [cls, ...]}``."""
    items: list = []
    for path in sorted(Path(directory).glob("*.yaml")):
        data = read_yaml(path) or {}
        if not isinstance(data, dict) or set(data) - {list_key}:
            raise ConfigError(f"{path}: expected a single top-level key '{list_key}', got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
        for i, entry in enumerate(data.get(list_key) or []):
            items.append(parse(cls, entry, f"{path}: {list_key}[{i}]"))
    return items


# --------------------------------------------------------------------------- pipeline.yaml

@dataclasses.dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "kequn"
    conf: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PseudonymConfig:
    # Environment variable holding the HMAC key, and/or a file holding it.
    key_env: str = "KEQUN_PSEUDONYM_KEY"
    key_file: Optional[str] = None
    # Demo mode creates a random key file (git-ignored) when no key is given.
    create_demo_key: bool = False


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    # sources loaded at once: one source's planning and Delta commits overlap another's tasks
    parallel_sources: int = 2


@dataclasses.dataclass(frozen=True)
class TagsConfig:
    # source passes computed at once: one pass's planning, staging and count overlap another's tasks
    parallel_passes: int = 3


@dataclasses.dataclass(frozen=True)
class IdentityConfig:
    engine: str = "auto"  # auto | scipy | graphx | graphframes | dataframe
    # auto uses the driver-side scipy engine below this many edges.
    local_max_edges: int = 50_000_000
    degree_limits: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"mobile": 10, "device_id": 10, "id_no": 5, "cust_no": 10, "unionid": 10})
    blocklist: dict[str, list[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    format: str = "csv"  # csv | json | kafka
    trigger_seconds: int = 5
    watermark: str = "1 day"
    kafka: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MaintenanceConfig:
    """`kequn maintain` (kequn.maintenance)."""
    recent_days: int = 8               # day-partitioned tables are compacted in this many days up to the run's
    vacuum_retention_hours: int = 168  # VACUUM keeps the files of versions this recent (time travel reaches as far)
    zorder: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # table -> columns to Z-ORDER it by


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    spark: SparkConfig = dataclasses.field(default_factory=SparkConfig)
    pseudonym: PseudonymConfig = dataclasses.field(default_factory=PseudonymConfig)
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    identity: IdentityConfig = dataclasses.field(default_factory=IdentityConfig)
    tags: TagsConfig = dataclasses.field(default_factory=TagsConfig)
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)
    maintenance: MaintenanceConfig = dataclasses.field(default_factory=MaintenanceConfig)
    stages: list[str] = dataclasses.field(
        default_factory=lambda: ["ingest", "identity", "tags", "quality", "segments", "journeys"])
    conf_dir: str = ""


def load_pipeline(conf_dir: Optional[Path] = None) -> PipelineConfig:
    conf_dir = Path(conf_dir) if conf_dir else default_conf_dir()
    if not conf_dir.is_dir():
        # Every stage reads its declarations here (tags, quality suites, segments, journeys). Without the
        # folder each would find none and publish empty outputs over the day's tables, with a success.
        raise ConfigError(f"configuration folder {conf_dir} does not exist (from --conf, KEQUN_CONF or the "
                          f"project's conf/)")
    path = conf_dir / "pipeline.yaml"
    cfg = load_file(PipelineConfig, path) if path.exists() else PipelineConfig()
    for folder, stage, consequence in _OPTIONAL_FOLDERS:
        if (stage is None or stage in cfg.stages) and not (conf_dir / folder).is_dir():
            log.warning("configuration: %s has no %s/ folder: %s", conf_dir, folder, consequence)
    return dataclasses.replace(cfg, conf_dir=str(conf_dir))


# Folders a conf may leave out (a bank may gate elsewhere, or run no campaign), but whose absence changes what
# a run publishes without failing it: said once, where the configuration loads. (folder, stage that reads it
# or None for every stage, what follows.)
_OPTIONAL_FOLDERS = (
    ("quality", None, "no suite is declared, so no stage's quality gate checks what it publishes"),
    ("segments", "segments", "the segments stage declares no segment and publishes the day with no member"),
    ("journeys", "journeys", "the journeys stage declares no journey and sends nothing"),
)


def dependency_order(codes, deps) -> tuple[list[str], list[list[str]]]:
    """``codes`` ordered so that each follows what it depends on (``deps``: code -> codes), and the
    cycles met, each as ``[a, b, …, a]``. Catalogs (tags, segments) report cycles their own way."""
    order: list[str] = []
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(code: str, path: list[str]) -> None:
        if state.get(code) == 2:
            return
        if state.get(code) == 1:
            cycles.append(path[path.index(code):] + [code])
            return
        state[code] = 1
        for dep in deps.get(code, ()):
            visit(dep, path + [code])
        state[code] = 2
        order.append(code)

    for code in codes:
        visit(code, [])
    return order, cycles

