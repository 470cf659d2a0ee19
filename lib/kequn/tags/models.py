"""Need tags from MLlib propensity models.

For a model tag with horizon H, features are the catalog's tags computed as of
``T = D - H`` (moved later to ``first fact + min_history_days`` when history is short), the
label is whether the person had a fact matching ``label_where`` in ``(T, D]``, the pipeline
(VectorAssembler -> StandardScaler -> LogisticRegression or GBTClassifier) is fit on a 70%
split and its AUC measured on the other 30% (of about ``max_train_rows`` persons, drawn by a hash of
one_id and the seed, when there are more), then the person's features as of D are scored
and the probability put into a band (high / medium / low). Too little history, too few rows
or a single class skip training with a logged reason: the tag stays null, the stage goes on.

The features as of T are what the warehouse knew at T (batches dated on or before T) when its
batches reach back that far. A warehouse whose history came in one backfill knew nothing at T;
there (``feature_cutoff: auto`` or ``event``) T is read as known on D: facts by event time, master
data in the version in effect at T, records opened after T left out (``kequn.bronze``). A
correction delivered after T can then leak into the features, which the status names.

Fitting needs the features as of T, a second tag computation, so a fitted model is kept
(``Warehouse.model_path``) and reused for ``retrain_days``: a run on D looks for a fit published
in ``gold.tag_model_metrics`` on a day in ``(D - retrain_days, D]`` under the same definition key
(the model and its features' definitions) and scores with it. A re-run of D finds D's own fit,
so it reproduces D's scores and metrics row.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import time
from typing import Callable, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .. import bronze
from ..sampling import fraction_for, person_draw
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
    score: Optional[Callable[[DataFrame], DataFrame]] = None   # a frame of the tags -> the same and <code>


def training_split(data: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(train, test): about ``fraction`` of the persons, 70 / 30, by a draw from one_id and the seed.

    The draw, not Spark's seeded sample, so that a model trains on the same persons whatever order a plan
    left the staged rows in (a join strategy changed a model's sample once: BENCHMARKS.md, "A join of two
    shuffled sides by a hash table"), and so that at a given fraction a person is in or out whoever else is.
    """
    draw = person_draw(seed)
    cut = F.lit(0.3 * fraction)
    return data.where((draw >= cut) & (draw < F.lit(fraction))), data.where(draw < cut)


def feature_values(df: DataFrame, features: list[str]) -> dict:
    """Feature -> its value in ``df`` as a double, null as 0 (booleans 1/0)."""
    types = dict(df.dtypes)
    return {f: F.coalesce(F.col(f).cast("int").cast("double") if types[f] == "boolean" else F.col(f).cast("double"),
                          F.lit(0.0)) for f in features}


def feature_columns(df: DataFrame, features: list[str]) -> list:
    """The features of ``df`` as doubles under their own names (:func:`feature_values`)."""
    return [v.alias(f) for f, v in feature_values(df, features).items()]


def feature_frame(df: DataFrame, features: list[str]) -> DataFrame:
    """one_id + the features as doubles, nulls as 0 (booleans 1/0)."""
    return df.select("one_id", *feature_columns(df, features))


def beside(frame: DataFrame, inputs: list, transform: Callable[[DataFrame], DataFrame], result) -> DataFrame:
    """``frame`` and one more column, ``result``, read from a fitted MLlib ``transform`` of ``inputs`` (columns
    computed from the frame's row).

    MLlib scores row by row, so the frame's rows ride through it in a struct: no join brings the score back,
    and no column MLlib adds (raw, features, probability, prediction) meets one of the frame's. Joined back
    by one_id, each model tag shuffled the 70-odd columns of the profile once (BENCHMARKS.md, "Scores beside
    the profile"). Tag codes start with a letter, so none is ``_row``.
    """
    row = F.struct(*[F.col(f"`{c}`") for c in frame.columns]).alias("_row")
    return transform(frame.select(row, *inputs)).select("_row.*", result)


def first_dates(wh, source: str, as_of: str) -> tuple[Optional[dt.date], Optional[dt.date]]:
    """The source's first fact date and first batch date, as of the day."""
    if not wh.exists(bronze.table_name(source)):
        return None, None
    spec_time = bronze.SOURCES[source].time_column
    row = bronze.facts_as_of(wh, source, as_of).agg(F.min(F.to_date(spec_time)), F.min("_batch_dt")).first()
    return row[0], row[1]


@dataclasses.dataclass(frozen=True)
class Training:
    day: Optional[str]              # T; None when training is not feasible
    known_by: Optional[str] = None  # read T as known on this later day (backfilled history)
    why: str = ""                   # why not feasible

    @property
    def status(self) -> str:
        return f"trained as of {self.day}" + (f" (as known on {self.known_by})" if self.known_by else "")


def training_day(t: Tag, as_of: str, first: Optional[dt.date], first_batch: Optional[dt.date]) -> Training:
    """T and how it is read, or the reason training is not feasible, from the label source's first
    fact and first batch (:func:`first_dates`)."""
    m = t.definition.model
    d = dt.date.fromisoformat(as_of)
    if first is None:
        return Training(None, why=f"no {m.label_source} facts on or before {as_of}")
    day = max(d - dt.timedelta(days=m.horizon_days), first + dt.timedelta(days=m.min_history_days))
    if (d - day).days < m.min_label_days:
        return Training(None, why=(f"too little history: first {m.label_source} fact {first}, needs "
                                   f"{m.min_history_days} days of features and {m.min_label_days} days of "
                                   f"outcome before {as_of}"))
    delivered = first_batch <= day
    if m.feature_cutoff == "delivery" and not delivered:
        return Training(None, why=(f"feature_cutoff delivery: nothing was delivered by {day} (first "
                                   f"{m.label_source} batch {first_batch}); feature_cutoff auto or event reads "
                                   f"the backfilled history"))
    if m.feature_cutoff == "event" or not delivered:
        return Training(day.isoformat(), known_by=as_of)
    return Training(day.isoformat())


def labels(wh, t: Tag, train_day: str, as_of: str, id_map: DataFrame) -> DataFrame:
    """one_id of persons with a matching fact in (T, D]."""
    m = t.definition.model
    view = source_view(wh, m.label_source, as_of, id_map)
    return (view.where(F.expr(m.label_where) & (F.col("event_date") > F.lit(train_day).cast("date"))
                       & (F.col("event_date") <= F.lit(as_of).cast("date")))
            .select("one_id").distinct().withColumn("label", F.lit(1.0)))


def definition_key(t: Tag, catalog: Catalog) -> str:
    """Changes whenever the model's definition or one of its features' definitions does."""
    feats = [catalog.get(f) for f in t.definition.model.features]
    text = repr((t.definition.model, [(f.code, f.value_type, f.definition) for f in feats]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_fit(wh, t: Tag, key: str, as_of: str, published: list) -> Optional[tuple]:
    """(PipelineModel, its metrics row) of the latest fit kept for reuse on ``as_of``, or None."""
    from pyspark.ml import PipelineModel
    d = dt.date.fromisoformat(as_of)
    lo = d - dt.timedelta(days=t.definition.model.retrain_days)
    for row in published:   # newest first
        if row["model"] != t.code or not (lo < row["as_of"] <= d) or not row["status"].startswith("trained"):
            continue
        path = wh.model_path(t.code, key, row["as_of"].isoformat())
        if wh.path_exists(f"{path}/metadata"):   # else fitted under another definition, or erased by forget
            return PipelineModel.load(path), row
        log.info("tags: model %s: the fit of %s is not kept under this definition", t.code, row["as_of"])
    return None


def scored(model, t: Tag, frame: DataFrame) -> DataFrame:
    """``frame`` (one_id and tags, among them the model's features) and the model tag's band, ``t.code``."""
    from pyspark.ml.functions import vector_to_array
    m = t.definition.model
    return beside(frame, feature_columns(frame, list(m.features)), model.transform,
                  band(vector_to_array(F.col("probability"))[1], m).alias(t.code))


def scoring(model, t: Tag, wide: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """:func:`scored` with the fit and the tag bound, its plan analysed on ``wide`` (no Spark job) so that a fit
    that cannot score the day's tags fails here, inside the model's guard, not later in the stage."""
    score = functools.partial(scored, model, t)
    score(wide).schema
    return score


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
               train_cache: Optional[dict] = None, workers: int = 1) -> list[ModelOutcome]:
    """Train (or reuse a recent fit of) every logistic/gbt model tag, each outcome with its scoring (``score``,
    checked against ``wide``, the day's tags); never raises for data reasons. ``workers``: the training day's
    source passes computed at once (``kequn.tags.plan.computed``)."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    outcomes = []
    train_cache = {} if train_cache is None else train_cache
    firsts: dict[str, tuple] = {}   # label source -> first_dates, one query per source
    propensity_tags = [t for t in catalog.of_kind("model") if t.definition.model.method != "kmeans"]
    published = []
    if propensity_tags:   # one row per model and day of the longest reuse window
        window = max(t.definition.model.retrain_days for t in propensity_tags)
        published = (wh.read_or_empty("gold.tag_model_metrics", METRICS_SCHEMA)
                     .where(F.col("as_of").between(F.date_sub(F.lit(as_of).cast("date"), window - 1),
                                                   F.lit(as_of).cast("date")))
                     .orderBy(F.col("as_of").desc()).collect())
    for t in propensity_tags:
        m = t.definition.model
        t0 = time.time()
        try:
            key = definition_key(t, catalog)
            fit = stored_fit(wh, t, key, as_of, published)
            if fit is not None:
                model, row = fit
                day = row["as_of"].isoformat()
                status = row["status"] if day == as_of else f"reused the fit of {day}: {row['status']}"
                log.info("tags: model %s %s, %.1f s", t.code, status, time.time() - t0)
                outcomes.append(ModelOutcome(t.code, row["auc"], row["train_rows"], row["test_rows"], status,
                                             scoring(model, t, wide)))
                continue
            if m.label_source not in firsts:
                firsts[m.label_source] = first_dates(wh, m.label_source, as_of)
            tr = training_day(t, as_of, *firsts[m.label_source])
            if tr.day is None:
                log.warning("tags: model %s skipped as of %s: %s", t.code, as_of, tr.why)
                outcomes.append(ModelOutcome(t.code, None, 0, 0, f"skipped: {tr.why}"))
                continue
            day = tr.day
            if (day, tr.known_by) not in train_cache:
                feats = sorted({f for x in catalog.of_kind("model") for f in x.definition.model.features})
                train_cache[day, tr.known_by] = computed(wh, day, catalog.subset(feats), id_map=id_map,
                                                         label="tags_train", known_by=tr.known_by,
                                                         workers=workers)
            data = (feature_frame(train_cache[day, tr.known_by], list(m.features))
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
            t_data = time.time() - t0
            fraction = fraction_for(n, m.max_train_rows)
            train, test = training_split(data, fraction, m.seed)
            model = _pipeline(t).fit(train)
            t_fit = time.time() - t0
            pred = model.transform(test)
            test_rows, test_pos = pred.agg(F.count(F.lit(1)), F.coalesce(F.sum("label"), F.lit(0.0))).first()
            auc = None
            if 0 < test_pos < test_rows:
                auc = float(BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction",
                                                          metricName="areaUnderROC").evaluate(pred))
            train_rows = train.count()
            try:
                model.write().overwrite().save(wh.model_path(t.code, key, as_of))
            except Exception as e:  # the scores stand; the next run fits again
                log.warning("tags: model %s: fit not kept for reuse (%s: %s)", t.code, type(e).__name__,
                            str(e)[:200])
            log.info("tags: model %s %s: %d train / %d test rows%s, %d positives, AUC %s, %.1f s (labelled "
                     "rows staged at %.1f s, fitted at %.1f s)", t.code, tr.status, train_rows, test_rows,
                     f" (sampled from {n})" if fraction < 1 else "", pos, "n/a" if auc is None else f"{auc:.3f}",
                     time.time() - t0, t_data, t_fit)
            outcomes.append(ModelOutcome(t.code, auc, train_rows, int(test_rows), tr.status,
                                         scoring(model, t, wide)))
        except Exception as e:  # a model must never crash the stage
            log.exception("tags: model %s failed as of %s; tag left null", t.code, as_of)
            outcomes.append(ModelOutcome(t.code, None, 0, 0, f"skipped: error {type(e).__name__}: {str(e)[:200]}"))
    return outcomes


def metrics_frame(spark, as_of: str, outcomes: list[ModelOutcome]) -> DataFrame:
    day = dt.date.fromisoformat(as_of)
    return spark.createDataFrame([(day, o.code, o.auc, o.train_rows, o.test_rows, o.status) for o in outcomes],
                                 METRICS_SCHEMA)
