"""Great Expectations machinery: one ephemeral context per gate/run call.

Per table and batch: a dataframe asset on one Spark data source, a whole-dataframe batch
definition, an ExpectationSuite, a ValidationDefinition and a Checkpoint; the checkpoint
runs with ``batch_parameters={"dataframe": df}``, on a cached DataFrame unless it only reads
stored rows (``reads_stored_rows``). Result format is BASIC with ``partial_unexpected_count = 0``:
GX then computes counts only (one aggregate pass for all column-map expectations of a batch)
and never collects sample values, so no personal data reaches results, logs or Data Docs.
Data Docs (HTML) are built once per call into ``<warehouse>/quality/data_docs/`` (a filesystem
site; local warehouses only).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
DATA_DOCS_SITE = "kequn"


@dataclass(frozen=True)
class Outcome:
    """One expectation of one run: a row of quality.validation_results."""
    table_name: str
    expectation: str
    success: bool
    observed_value: str
    severity: str
    batch: str


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "great_expectations.core", "posthog"):
        logging.getLogger(name).setLevel(logging.WARNING)


def new_context(docs_dir: Optional[str]):
    """An ephemeral (in-memory) context; progress bars and analytics off; a filesystem docs site."""
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    sites = {}
    if docs_dir:
        sites[DATA_DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    cfg = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), data_docs_sites=sites,
                            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                            analytics_enabled=False)
    context = gx.get_context(project_config=cfg, mode="ephemeral")
    # We cache (and uncache) the DataFrames ourselves; GX's own persist() would never be released.
    context.data_sources.add_spark("kequn", persist=False)
    return context


def _observed(result) -> str:
    r = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"error: {str(result.exception_info.get('exception_message'))[:300]}"
    if "observed_value" in r:
        v = r["observed_value"]
        return v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else str(v)
    if "unexpected_count" in r:
        n, total = r.get("unexpected_count"), r.get("element_count")
        pct = r.get("unexpected_percent")
        return f"unexpected {n} of {total}" + (f" ({pct:.4g}%)" if pct is not None else "")
    return ""


def _own_job_ids(sc) -> list[int]:
    """Ids of the jobs the tracker still holds for this thread's job group (or for no group)."""
    tracker = sc.statusTracker()
    group = sc.getLocalProperty("spark.jobGroup.id")
    return list(tracker.getJobIdsForGroup(None)) + (list(tracker.getJobIdsForGroup(group)) if group else [])


def _latest_job(sc) -> int:
    """The newest Spark job id of this thread's job group (or of no group)."""
    return max(_own_job_ids(sc), default=-1)


def _jobs_since(sc, latest: int) -> int:
    """The jobs of this thread's group (or of no group) newer than ``latest`` (a :func:`_latest_job`).

    Counted, not subtracted: ids are global, and jobs of other groups took ids in between.
    ``kequn.pipeline.run_stages`` runs each stage in a job group of its own, so the quality stage's
    first validation subtracted from the last job of no group, before the earlier stages: the 1M
    benchmark logged "737 Spark jobs" for 7. The tracker keeps the latest 1,000 jobs, far more than
    one validation runs.
    """
    return sum(1 for i in _own_job_ids(sc) if i > latest)


# Plan nodes that only read rows already stored: files (Parquet, Delta), checkpoints, literals; and
# the projections and filters over them.
STORED = {"LogicalRelation", "LogicalRDD", "LocalRelation"}
OVER_STORED = {"Project", "Filter"}


def reads_stored_rows(df) -> bool:
    """Whether ``df`` computes nothing but a projection or filter of rows already stored.

    GX runs one Spark job per group of metrics over the frame. Over files each job reads only its columns;
    a cache would first copy every column of every row into memory. At 1,000,000 persons the 89M rows of
    a staged ``gold.tag_values`` day took 71.6 s to validate cached and 49.4 s read from Parquet.
    """
    def only_stored(plan) -> bool:
        name = plan.nodeName()
        children = plan.children()
        if name in STORED:
            return True
        return (name in OVER_STORED and children.size() > 0
                and all(only_stored(children.apply(i)) for i in range(children.size())))

    return only_stored(df._jdf.queryExecution().optimizedPlan())


def validate(context, table: str, batch: str, df, expectations: list) -> list[Outcome]:
    """Run one table's expectations over ``df`` through a Checkpoint; one Outcome per expectation."""
    import great_expectations as gx

    name = table if batch == "main" else f"{table}#{batch}"
    source = context.data_sources.get("kequn")
    bd = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd],
                                                       result_format=RESULT_FORMAT))
    sc = df.sparkSession.sparkContext
    jobs_before = _latest_job(sc)
    started = time.monotonic()
    sc.setJobDescription(f"quality {name}")
    # A frame computed from others (a join, an aggregate) is cached so that GX's jobs compute it once.
    ours = not df.is_cached and not reads_stored_rows(df)
    if ours:
        df = df.cache()
    try:
        result = checkpoint.run(batch_parameters={"dataframe": df})
    finally:
        if ours:
            df.unpersist()
        sc.setJobDescription(None)
    outcomes = []
    for vr in result.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            label = (cfg.meta or {}).get("kequn_label") or cfg.type
            outcomes.append(Outcome(table, f"{cfg.type}: {label}", bool(r.success), _observed(r),
                                    str(getattr(cfg.severity, "value", cfg.severity)), batch))
    failed = [o for o in outcomes if not o.success]
    log.info("quality: %s: %d expectations, %d failed, %.1f s, %d Spark jobs", name, len(outcomes), len(failed),
             time.monotonic() - started, _jobs_since(sc, jobs_before))
    return outcomes


def build_docs(context) -> None:
    started = time.monotonic()
    try:
        context.build_data_docs(site_names=[DATA_DOCS_SITE])
    except Exception as e:  # documentation must never decide whether data is published
        log.warning("quality: Data Docs not written: %s", e)
        return
    log.info("quality: Data Docs written in %.1f s", time.monotonic() - started)
