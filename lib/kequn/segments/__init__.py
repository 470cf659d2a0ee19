"""Segments: rule-defined customer groups over the day's tags, with consent, stats and movement.

Public API::

    run(spark, wh, as_of, config) -> dict[str, int]        # the pipeline stage
    plan(spark, wh, as_of, definition, config=None) -> dict # what a segment would be; writes nothing
    export(spark, wh, as_of, segment_code, channel, out_path, config=None) -> int
    forget(spark, wh, source, key, retention_hours=168) -> dict[str, int]
    load_definitions(conf_dir=None), check(definitions, catalog, strict=False)
"""
from .definitions import Checked, SegmentDef, check, load_catalog, load_definitions
from .export import export
from .forget import forget
from .rules import RuleError, parse_rule
from .stage import MEMBERS, OVERLAP, PROFILE, STATS, plan, run

WRITES = (MEMBERS, STATS, OVERLAP, PROFILE)   # the stage's tables (kequn.pipeline.tables_written_by)

__all__ = ["WRITES", "run", "plan", "export", "forget", "check", "load_definitions", "load_catalog", "parse_rule",
           "SegmentDef", "Checked", "RuleError"]
