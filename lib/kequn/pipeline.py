"""Stage order, one session per run, timing and row counts in the log, exit status.

A stage either commits or raises; on the first failure the stages after it do
not run and the exit status is non-zero, with the stage's own error message.
"""
from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import Optional

from .config import PipelineConfig

log = logging.getLogger("kequn.pipeline")

STAGES = ("ingest", "identity", "tags", "quality", "segments", "journeys")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED, EXIT_GATE = 0, 1, 2, 3, 4


@dataclass
class StageResult:
    stage: str
    seconds: float
    counts: dict
    error: Optional[str] = None


def _call(stage: str, spark, wh, landing: Optional[str], as_of: str, config: PipelineConfig,
          later: tuple[str, ...] = ()) -> dict:
    module = importlib.import_module(f"kequn.{stage}")
    if stage == "ingest":
        return module.run(spark, wh, landing, as_of, config) or {}
    if stage == "quality":
        return module.run(spark, wh, as_of, config, written_later=tables_written_by(later)) or {}
    return module.run(spark, wh, as_of, config) or {}


def tables_written_by(stages) -> set[str]:
    """The tables ``stages`` write, as far as their packages declare them (``WRITES``)."""
    return {t for s in stages for t in getattr(importlib.import_module(f"kequn.{s}"), "WRITES", ())}


def exit_code_for(exc: BaseException) -> int:
    from .config import ConfigError
    from .ingest import BatchRejected
    from .quality import QualityGateError

    if isinstance(exc, ConfigError):
        # A stage loads its own declarations (tags, segments, journeys) and refuses them before its first job.
        return EXIT_USAGE
    if isinstance(exc, BatchRejected):
        return EXIT_REJECTED
    if isinstance(exc, QualityGateError):
        return EXIT_GATE
    return EXIT_FAILED


def run_stages(stages: list[str], spark, wh, landing: Optional[str], as_of: str,
               config: PipelineConfig, following: tuple[str, ...] = ()) -> tuple[int, list[StageResult]]:
    """Run ``stages`` in order. ``following``: stages the caller runs next in the same run (a benchmark
    timing one stage at a time), which the quality stage must know as it knows the later ``stages``."""
    try:
        return _run_stages(stages, spark, wh, landing, as_of, config, tuple(following))
    finally:
        # Later jobs of the session (a notebook's, a test's) are not the last stage's.
        for key in ("spark.jobGroup.id", "spark.job.description"):
            spark.sparkContext.setLocalProperty(key, None)


def _run_stages(stages, spark, wh, landing, as_of, config, following=()) -> tuple[int, list[StageResult]]:
    results: list[StageResult] = []
    for i, stage in enumerate(stages):
        log.info("stage %s: start (as_of=%s)", stage, as_of)
        # The Spark UI (and the event log, which bench/pipeline_bench.py reads) names each job's stage.
        spark.sparkContext.setJobGroup(f"kequn:{stage}", f"kequn {stage} as of {as_of}")
        started = time.time()
        try:
            counts = _call(stage, spark, wh, landing, as_of, config, tuple(stages[i + 1:]) + following)
        except Exception as exc:  # the stage's own message is the user's diagnosis
            seconds = time.time() - started
            log.error("stage %s: FAILED after %.1fs: %s", stage, seconds, exc)
            log.debug("stage %s traceback", stage, exc_info=True)
            results.append(StageResult(stage, seconds, {}, f"{type(exc).__name__}: {exc}"))
            return exit_code_for(exc), results
        seconds = time.time() - started
        written = ", ".join(f"{k}={v}" for k, v in counts.items()) or "nothing new"
        log.info("stage %s: done in %.1fs; rows written: %s", stage, seconds, written)
        results.append(StageResult(stage, seconds, counts))
    return EXIT_OK, results


def summary(results: list[StageResult]) -> str:
    lines = [f"{'stage':<10} {'seconds':>8}  result"]
    for r in results:
        lines.append(f"{r.stage:<10} {r.seconds:>8.1f}  {r.error or 'ok'}")
    return "\n".join(lines)
