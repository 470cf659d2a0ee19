"""The tag warehouse stage: catalog (conf/tags/*.yaml) -> per-person tag values as of a day.

``run`` loads and validates the catalog (before any Spark job), computes statistic tags in
one aggregation pass per source and rule tags over the wide row, scores the MLlib need
models and the k-means cluster tag, gates every tag (coverage, PSI against the previous
day), passes the staged outputs through ``kequn.quality.gate`` and then publishes:

- gold.tag_values(as_of, one_id, tag_code, tag_value)       day partition replaced
- gold.customer_profile(one_id, as_of, <one column per tag>) latest day (overwrite)
- gold.tag_catalog(tag_code, name_zh, name_en, category, kind, value_type, description,
  coverage, as_of, definition, value_distribution, gate_status, gate_reason)  latest day
- gold.tag_model_metrics(as_of, model, auc, train_rows, test_rows, status) day partition
- gold.tag_cluster_profile(as_of, tag_code, cluster_id, members, share, feature_means)
- quality.tag_gate_results(as_of, tag_code, coverage, prev_as_of, prev_coverage, psi, status, reason)
- quality.tag_distributions(as_of, tag_code, edges, counts)  the published tags' bins, for the next
  day's gates (internal)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from pyspark.sql import DataFrame

from .catalog import Catalog, load_catalog, validate
from .plan import computed, id_map_as_of, wide_frame

log = logging.getLogger(__name__)

# The stage's tables (kequn.pipeline.tables_written_by); quality.tag_distributions is gates.DISTRIBUTIONS_TABLE.
WRITES = ("gold.tag_values", "gold.customer_profile", "gold.tag_catalog", "gold.tag_model_metrics",
          "gold.tag_cluster_profile", "quality.tag_gate_results", "quality.tag_distributions")

__all__ = ["WRITES", "run", "load_catalog", "validate", "compute_profile", "wide_frame", "Catalog"]


def catalog_for(config) -> tuple[Catalog, list[str]]:
    """The catalog under the pipeline's conf dir and its display order (file order)."""
    conf_dir = Path(config.conf_dir) if getattr(config, "conf_dir", "") else None
    loaded = load_catalog(conf_dir / "tags" if conf_dir else None)
    return loaded, loaded.codes


def compute_profile(wh, as_of: str, catalog: Catalog, codes: list[str], id_map: Optional[DataFrame] = None,
                    workers: int = 1):
    """Staged profile (one_id, as_of, every tag), model outcomes and cluster profiles, before gating.
    ``workers``: source passes computed at once (``tags.parallel_passes``)."""
    from . import clusters, models, values

    id_map = id_map if id_map is not None else id_map_as_of(wh, as_of)
    wide = wh.stage(computed(wh, as_of, catalog, id_map=id_map, workers=workers), "silver.tags_wide")
    outcomes = models.propensity(wh, as_of, catalog, wide, id_map, workers=workers)
    # Each model tag a column beside the others, scored row by row: no join, no shuffle.
    full = wide
    for o in outcomes:
        if o.score is not None:
            full = o.score(full)
    cluster_profiles = []
    for t in catalog.of_kind("model"):
        if t.definition.model.method == "kmeans":
            assigned, prof, why = clusters.kmeans_tag(t, full, as_of)
            if assigned is not None:
                full = assigned
                cluster_profiles.append(prof)
    prof_df = wh.stage(values.profile(full, codes, catalog, as_of), "silver.tags_profile_raw")
    return prof_df, outcomes, cluster_profiles


def run(spark, wh, as_of: str, config) -> dict[str, int]:
    from .. import quality
    from . import clusters, gates, models, values

    t0 = time.time()
    loaded, codes = catalog_for(config)
    catalog = validate(spark, loaded)          # SQL checked, dependency order; no Spark job
    log.info("tags: catalog of %d tags (%d statistic, %d rule, %d model) over sources %s",
             len(catalog), len(catalog.of_kind("statistic")), len(catalog.of_kind("rule")),
             len(catalog.of_kind("model")), catalog.sources())

    prof_raw, outcomes, cluster_profiles = compute_profile(wh, as_of, catalog, codes,
                                                             workers=config.tags.parallel_passes)
    log.info("tags: profile of %d persons computed and staged at %.1f s", prof_raw.count(), time.time() - t0)

    # ---- tag-level gates against the previous day
    prev_day = gates.previous_day(wh, as_of)
    counts, quant, today_dist = gates.distributions(prof_raw, catalog, codes,
                                                    gates.previous_distribution(wh, prev_day, catalog))
    results = gates.evaluate(catalog, codes, counts, prev_day is not None)
    withheld = [c for c in codes if results[c].status == "withheld"]
    published = [c for c in codes if c not in withheld]
    if withheld:
        log.warning("tags: %d tag(s) withheld as of %s: %s", len(withheld), as_of, ", ".join(withheld))
    dist = {c: gates.value_distribution(catalog, c, counts, quant) for c in codes}
    log.info("tags: gates against %s evaluated at %.1f s", prev_day or "no earlier day", time.time() - t0)

    # ---- stage, quality gate, publish
    # The raw profile is staged already; copying it unchanged cost 19 s at 1,000,000 persons (74 columns).
    profile = wh.stage(values.withheld_nulled(prof_raw, withheld), "gold.customer_profile") if withheld else prof_raw
    tag_values = wh.stage(values.long_form(profile, published), "gold.tag_values")
    tag_catalog = wh.stage(values.catalog_frame(spark, values.catalog_rows(catalog, codes, as_of, results, dist)),
                           "gold.tag_catalog")
    gate_df = wh.stage(gates.results_frame(spark, as_of, prev_day, results), "quality.tag_gate_results")
    metrics = wh.stage(models.metrics_frame(spark, as_of, outcomes), "gold.tag_model_metrics")
    cprof = cluster_profiles[0] if cluster_profiles else spark.createDataFrame([], clusters.PROFILE_SCHEMA)
    for p in cluster_profiles[1:]:
        cprof = cprof.unionByName(p)
    cprof = wh.stage(cprof, "gold.tag_cluster_profile")
    log.info("tags: outputs staged at %.1f s", time.time() - t0)

    quality.gate(wh, as_of, {"gold.tag_values": tag_values, "gold.customer_profile": profile,
                             "gold.tag_catalog": tag_catalog, "gold.tag_model_metrics": metrics,
                             "gold.tag_cluster_profile": cprof})

    log.info("tags: quality gate passed at %.1f s", time.time() - t0)
    counts_out: dict[str, int] = {}
    wh.replace_day(tag_values, "gold.tag_values", as_of, stats_columns=values.TAG_VALUES_STATS)
    counts_out["gold.tag_values"] = tag_values.count()
    if not wh.holds_day_after("gold.customer_profile", as_of):
        wh.overwrite(profile, "gold.customer_profile")
        wh.overwrite(tag_catalog, "gold.tag_catalog")
        counts_out["gold.customer_profile"] = profile.count()
        counts_out["gold.tag_catalog"] = len(codes)
    else:
        log.info("tags: %s is older than the published profile; customer_profile and tag_catalog kept", as_of)
    wh.replace_day(gate_df, "quality.tag_gate_results", as_of)
    wh.replace_day(gates.distribution_frame(spark, as_of, today_dist, published), gates.DISTRIBUTIONS_TABLE, as_of)
    wh.replace_day(metrics, "gold.tag_model_metrics", as_of)
    wh.replace_day(cprof, "gold.tag_cluster_profile", as_of)
    counts_out["quality.tag_gate_results"] = len(results)
    counts_out["gold.tag_model_metrics"] = len(outcomes)
    counts_out["gold.tag_cluster_profile"] = cprof.count()
    log.info("tags: as of %s published %d tags, withheld %d, in %.1f s", as_of, len(published), len(withheld),
             time.time() - t0)
    return counts_out
