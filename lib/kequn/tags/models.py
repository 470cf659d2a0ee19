"""Need tags from MLlib propensity models.

For a model tag with horizon H, features are the catalog's tags computed as of
``T = D - H`` (moved later to ``first fact + min_history_days`` when history is short), the
label is whether the person had a fact matching ``label_where`` in ``(T, D]``, the pipeline
(VectorAssembler -> StandardScaler -> LogisticRegression or GBTClassifier) is fit on a 70%
split and its AUC measured on the other 30%, then the person's features as of D are scored
and the probability put into a band (high / medium / low). Too little history, too few rows
or a single class skip training with a logged reason: the tag stays null, the stage goes on.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import bronze
from .catalog import Catalog, Tag
from .plan import computed, source_view

log = logging.getLogger(__name__)

METRICS_SCHEMA = "as_of date, model string, auc double, train_rows bigint, test_rows bigint, status string"


@dataclasses.dataclass
class ModelOutcome:
    code: str
    auc: Optional[float]
    train_rows: int
    test_rows: int
    status: str            # trained | skipped: <reason>
    scores: Optional[DataFrame] = None   # one_id, <code>


def feature_frame(df: DataFrame, features: list[str]) -> DataFrame:
    """one_id + the features as doubles, nulls as 0 (booleans 1/0)."""
    return df.select("one_id", *[F.coalesce(F.col(f).cast("int").cast("double") if dict(df.dtypes)[f] == "boolean"
                                            else F.col(f).cast("double"), F.lit(0.0)).alias(f) for f in features])


def first_fact_date(wh, source: str, as_of: str) -> Optional[dt.date]:
    if not wh.exists(bronze.table_name(source)):
        return None
    spec_time = bronze.SOURCES[source].time_column
    return bronze.facts_as_of(wh, source, as_of).agg(F.min(F.to_date(spec_time))).first()[0]


def training_day(t: Tag, wh, as_of: str) -> tuple[Optional[str], str]:
    """T, or None with the reason training is not feasible."""
    m = t.definition.model
    d = dt.date.fromisoformat(as_of)
    first = first_fact_date(wh, m.label_source, as_of)
    if first is None:
        return None, f"no {m.label_source} facts on or before {as_of}"
    day = max(d - dt.timedelta(days=m.horizon_days), first + dt.timedelta(days=m.min_history_days))
    if (d - day).days < m.min_label_days:
        return None, (f"too little history: first {m.label_source} fact {first}, needs {m.min_history_days} days "
                      f"of features and {m.min_label_days} days of outcome before {as_of}")
    return day.isoformat(), ""


def labels(wh, t: Tag, train_day: str, as_of: str, id_map: DataFrame) -> DataFrame:
    """one_id of persons with a matching fact in (T, D]."""
    m = t.definition.model
    view = source_view(wh, m.label_source, as_of, id_map)
    return (view.where(F.expr(m.label_where) & (F.col("event_date") > F.lit(train_day).cast("date"))
                       & (F.col("event_date") <= F.lit(as_of).cast("date")))
            .select("one_id").distinct().withColumn("label", F.lit(1.0)))


def _pipeline(t: Tag):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier, LogisticRegression
    from pyspark.ml.feature import StandardScaler, VectorAssembler
    m = t.definition.model
    clf = (LogisticRegression(featuresCol="features", labelCol="label", maxIter=50, regParam=0.01)
           if m.method == "logistic" else
           GBTClassifier(featuresCol="features", labelCol="label", maxIter=20, maxDepth=4, seed=m.seed))
    return Pipeline(stages=[VectorAssembler(inputCols=list(m.features), outputCol="raw", handleInvalid="keep"),
                            StandardScaler(inputCol="raw", outputCol="features", withMean=True, withStd=True), clf])


def band(score, m) -> "F.Column":
    return (F.when(score.isNull(), F.lit(None).cast("string"))
            .when(score >= m.high, "high").when(score >= m.medium, "medium").otherwise("low"))


def propensity(wh, as_of: str, catalog: Catalog, wide: DataFrame, id_map: DataFrame,
               train_cache: Optional[dict] = None) -> list[ModelOutcome]:
    """Train and score every logistic/gbt model tag; never raises for data reasons."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array

    outcomes = []
    train_cache = {} if train_cache is None else train_cache
    for t in catalog.of_kind("model"):
        m = t.definition.model
        if m.method == "kmeans":
            continue
        t0 = time.time()
        try:
            day, why = training_day(t, wh, as_of)
            if day is None:
                log.warning("tags: model %s skipped as of %s: %s", t.code, as_of, why)
                outcomes.append(ModelOutcome(t.code, None, 0, 0, f"skipped: {why}"))
                continue
            if day not in train_cache:
                feats = sorted({f for x in catalog.of_kind("model") for f in x.definition.model.features})
                train_cache[day] = computed(wh, day, catalog.subset(feats), id_map=id_map, label="tags_train")
            data = (feature_frame(train_cache[day], list(m.features))
                    .join(labels(wh, t, day, as_of, id_map), "one_id", "left")
                    .withColumn("label", F.coalesce("label", F.lit(0.0))))
            data = wh.stage(data, f"silver.tags_train_{t.code}")
            n, pos = data.agg(F.count(F.lit(1)), F.coalesce(F.sum("label"), F.lit(0.0))).first()
            pos = int(pos)
            why = ""
            if n < m.min_train_rows:
                why = f"{n} training rows (< min_train_rows {m.min_train_rows})"
            elif pos == 0 or pos == n:
                why = f"a single class in the outcome ({pos} positives of {n}) for features as of {day}"
            if why:
                log.warning("tags: model %s skipped as of %s: %s", t.code, as_of, why)
                outcomes.append(ModelOutcome(t.code, None, n, 0, f"skipped: {why}"))
                continue
            train, test = data.randomSplit([0.7, 0.3], seed=m.seed)
            model = _pipeline(t).fit(train)
            pred = model.transform(test)
            test_rows, test_pos = pred.agg(F.count(F.lit(1)), F.coalesce(F.sum("label"), F.lit(0.0))).first()
            auc = None
            if 0 < test_pos < test_rows:
                auc = float(BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction",
                                                          metricName="areaUnderROC").evaluate(pred))
            train_rows = n - test_rows
            scored = model.transform(feature_frame(wide, list(m.features)))
            score = vector_to_array(F.col("probability"))[1]
            scores = scored.select("one_id", band(score, m).alias(t.code))
            log.info("tags: model %s trained on features as of %s: %d train / %d test rows, %d positives, "
                     "AUC %s, %.1f s", t.code, day, train_rows, test_rows, pos,
                     "n/a" if auc is None else f"{auc:.3f}", time.time() - t0)
            outcomes.append(ModelOutcome(t.code, auc, train_rows, int(test_rows), f"trained as of {day}", scores))
        except Exception as e:  # a model must never crash the stage
            log.exception("tags: model %s failed as of %s; tag left null", t.code, as_of)
            outcomes.append(ModelOutcome(t.code, None, 0, 0, f"skipped: error {type(e).__name__}: {str(e)[:200]}"))
    return outcomes


def metrics_frame(spark, as_of: str, outcomes: list[ModelOutcome]) -> DataFrame:
    day = dt.date.fromisoformat(as_of)
    return spark.createDataFrame([(day, o.code, o.auc, o.train_rows, o.test_rows, o.status) for o in outcomes],
                                 METRICS_SCHEMA)
