"""Smart grouping: MLlib k-means over standardised value/behaviour tags; the cluster id is a tag.

Features are log1p(max(x, 0)) when ``log_features`` (money is heavily skewed), then
standardised (mean 0, sd 1). The scaler and the centres are fitted on about ``max_train_rows``
persons drawn by one_id (``kequn.sampling``), laid out in one_id order over ``FIT_PARTITIONS``
partitions: MLlib's k-means|| initialisation samples each partition by row position, so the same seed
gave other centres when a plan left the rows in another order. Every person is then assigned. Cluster
ids are renumbered by ascending centre of the first feature, so that id 0 is always the lowest-value
group whatever k-means' own numbering.
``gold.tag_cluster_profile`` holds per cluster its size, share and mean raw features.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..sampling import fraction_for, person_draw
from .catalog import Tag
from .models import beside, feature_columns, feature_values

log = logging.getLogger(__name__)

# Fixed, not the session's shuffle partitions, so that the fit's input is laid out alike on any cluster.
FIT_PARTITIONS = 4

PROFILE_SCHEMA = ("as_of date, tag_code string, cluster_id int, members bigint, share double, "
                  "feature_means map<string,double>")


def fit_rows(x: DataFrame, fraction: float, seed: int) -> DataFrame:
    """The persons of ``x`` the clusters are fitted on (``fraction`` of them), in the same partitions and order
    in any plan."""
    if fraction < 1:
        x = x.where(person_draw(seed) < F.lit(fraction))
    return x.repartition(FIT_PARTITIONS, "one_id").sortWithinPartitions("one_id")


def kmeans_tag(t: Tag, frame: DataFrame, as_of: str) -> tuple[Optional[DataFrame], Optional[DataFrame], str]:
    """``frame`` (one_id and tags, among them the features) with the cluster tag ``t.code`` beside them
    (``kequn.tags.models.beside``), and the cluster profile; or (None, None, reason) when it cannot run."""
    from pyspark.ml import Pipeline
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    m = t.definition.model
    feats = list(m.features)
    t0 = time.time()
    inputs = [(F.log1p(F.greatest(v, F.lit(0.0))) if m.log_features else v).alias(f)
              for f, v in feature_values(frame, feats).items()]
    x = frame.select("one_id", *inputs)
    n = x.count()
    if n < 2 * m.k:
        why = f"{n} persons, fewer than 2*k = {2 * m.k}"
        log.warning("tags: k-means %s skipped as of %s: %s", t.code, as_of, why)
        return None, None, why
    fraction = fraction_for(n, m.max_train_rows)
    model = Pipeline(stages=[VectorAssembler(inputCols=feats, outputCol="raw"),
                             StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True),
                             KMeans(featuresCol="features", predictionCol="cluster", k=m.k, seed=m.seed)]
                     ).fit(fit_rows(x, fraction, m.seed))
    centers = model.stages[-1].clusterCenters()
    order = sorted(range(len(centers)), key=lambda i: (float(centers[i][0]), i))
    relabel = F.create_map(*[F.lit(v) for i, old in enumerate(order) for v in (old, i)])
    assigned = beside(frame, inputs, model.transform, relabel[F.col("cluster")].cast(t.spark_type).alias(t.code))
    prof = (assigned.select(F.col(t.code).cast("int").alias("cluster_id"), *feature_columns(assigned, feats))
            .groupBy("cluster_id")
            .agg(F.count(F.lit(1)).alias("members"), *[F.avg(f).alias(f) for f in feats])
            .select(F.lit(dt.date.fromisoformat(as_of)).alias("as_of"), F.lit(t.code).alias("tag_code"), "cluster_id",
                    "members", (F.col("members") / F.lit(n)).alias("share"),
                    F.create_map(*[v for f in feats for v in (F.lit(f), F.col(f).cast("double"))]).alias("feature_means")))
    fitted = f", fitted on about {m.max_train_rows}" if fraction < 1 else ""
    log.info("tags: k-means %s as of %s: %d persons%s, k=%d, %.1f s", t.code, as_of, n, fitted, m.k,
             time.time() - t0)
    return assigned, prof, "ok"
