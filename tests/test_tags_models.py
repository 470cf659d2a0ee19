"""Need-tag models on a tiny planted dataset: trained with metrics, or skipped gracefully."""
import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from kequn.tags import models
from kequn.tags.catalog import catalog_from_dicts, validate
from kequn.tags.plan import computed
from test_tags_helpers import day, write_bronze, write_map

D = "2026-06-30"
T = day(D, -30)
N = 40


def catalog(spark, *codes, txn_window=90):
    def model(code, **kw):
        m = {"method": "logistic", "label_source": "transaction", "horizon_days": 30, "min_history_days": 0,
             "min_label_days": 5, "min_train_rows": 10, "features": ["searched_90d", "txn_cnt_90d"], **kw}
        return {"code": code, "name_zh": code, "name_en": code, "category": "need", "kind": "model",
                "value_type": "string", "description": "x", "definition": {"model": m}}
    tags = [
        {"code": "searched_90d", "name_zh": "s", "name_en": "s", "category": "need", "kind": "statistic",
         "value_type": "boolean", "description": "x",
         "definition": {"source": "event", "window_days": 90, "where": "keyword LIKE '%教育金%'",
                        "agg": "count(1)", "value": "value > 0", "default": "false"}},
        {"code": "txn_cnt_90d", "name_zh": "t", "name_en": "t", "category": "behaviour", "kind": "statistic",
         "value_type": "int", "description": "x",
         "definition": {"source": "transaction", "window_days": txn_window, "agg": "count(1)", "default": "0"}},
        model("need_edu", label_where="category = 'education'"),
        model("need_none", label_where="category = 'no_such_category'"),
        model("need_early", label_where="category = 'education'", min_history_days=60),
        model("need_edu_strict", label_where="category = 'education'", feature_cutoff="delivery"),
        model("need_edu_sampled", label_where="category = 'education'", max_train_rows=20),
    ]
    return validate(spark, catalog_from_dicts([t for t in tags if t["kind"] != "model" or t["code"] in codes]))


def build(wh, backfill=False):
    """backfill: every batch is dated D, as when a warehouse is loaded with its history in one go."""
    def batch(d):
        return D if backfill else d
    keys = [f"C{i}" for i in range(1, N + 1)]
    write_bronze(wh, "core_customer", {batch(day(D, -300)): [{"cust_no": k, "updated_at": f"{day(D, -300)} 00:00:00"}
                                                             for k in keys]})
    write_bronze(wh, "app_user", {batch(day(D, -300)): [{"app_user_id": f"A{i}",
                                                         "updated_at": f"{day(D, -300)} 00:00:00"}
                                                        for i in range(1, N + 1)]})
    events = [{"event_id": f"E{i}", "source": "app", "user_key": f"A{i}", "event_time": f"{day(T, -3)} 10:00:00",
               "event_type": "search", "keyword": "教育金 怎么存"} for i in range(1, 21)]
    # Each fact arrives in the batch of its own day: training as of T sees only batches dated <= T.
    write_bronze(wh, "event", {batch(day(T, -3)): events})
    base = [{"txn_id": f"B{i}", "source": "core", "source_key": f"C{i}", "txn_time": f"{day(T, -10)} 10:00:00",
             "amount": "10.00", "direction": "debit", "channel": "app", "category": "other"}
            for i in range(1, N + 1)]
    # planted outcome: most searchers buy education within (T, D], a few others too
    buyers = list(range(1, 17)) + [21, 22, 23]
    outcome = [{"txn_id": f"L{i}", "source": "core", "source_key": f"C{i}", "txn_time": f"{day(T, 10)} 10:00:00",
              "amount": "3000.00", "direction": "debit", "channel": "app", "category": "education"} for i in buyers]
    write_bronze(wh, "transaction", {day(T, -10): base, day(T, 10): outcome} if not backfill
                 else {D: base + outcome})
    write_map(wh, D, [("core_customer", f"C{i}", i) for i in range(1, N + 1)]
              + [("app_user", f"A{i}", i) for i in range(1, N + 1)])


def test_models_train_with_metrics_or_skip_gracefully(spark, warehouse):
    build(warehouse)
    cat = catalog(spark, "need_edu", "need_none", "need_early")
    from kequn.tags.plan import id_map_as_of
    id_map = id_map_as_of(warehouse, D)
    wide = computed(warehouse, D, cat, id_map=id_map)
    out = {o.code: o for o in models.propensity(warehouse, D, cat, wide, id_map)}

    edu = out["need_edu"]
    assert edu.status == f"trained as of {T}"
    assert edu.train_rows + edu.test_rows == N and edu.test_rows > 0
    assert edu.auc is not None and 0.5 < edu.auc <= 1.0
    bands = {r["one_id"]: r["need_edu"] for r in edu.score(wide).collect()}
    assert set(bands.values()) <= {"high", "medium", "low"} and len(bands) == N
    # searchers (still in the 90-day window as of D) score at least as high as non-searchers
    rank = {"low": 0, "medium": 1, "high": 2}
    assert min(rank[bands[i]] for i in range(1, 21)) >= max(rank[bands[i]] for i in range(21, N + 1))

    assert out["need_none"].score is None and "single class" in out["need_none"].status
    assert out["need_early"].score is None and "too little history" in out["need_early"].status

    metrics = models.metrics_frame(spark, D, list(out.values()))
    assert metrics.columns == ["as_of", "model", "auc", "train_rows", "test_rows", "status"]
    assert metrics.where("auc IS NOT NULL").count() == 1

    # Published, the fit is reused for retrain_days (7): by a re-run of D and by the days after it.
    warehouse.overwrite(metrics, "gold.tag_model_metrics")
    edu_only = catalog(spark, "need_edu")

    def need_edu(as_of, cat=edu_only):
        o = models.propensity(warehouse, as_of, cat, wide, id_map)[0]
        return o, {r["one_id"]: r["need_edu"] for r in o.score(wide).collect()}

    again, again_bands = need_edu(D)
    assert (again.status, again.auc, again.train_rows, again_bands) == (edu.status, edu.auc, edu.train_rows, bands)
    later, later_bands = need_edu(day(D, 6))
    assert later.status == f"reused the fit of {D}: trained as of {T}" and later_bands == bands
    assert need_edu(day(D, 7))[0].status == f"trained as of {day(T, 7)}"     # the window has passed
    # A feature's definition changed: the stored fit no longer applies.
    assert need_edu(day(D, 1), catalog(spark, "need_edu", txn_window=60))[0].status == f"trained as of {day(T, 1)}"


def test_a_fit_uses_a_sample_when_there_are_more_labelled_rows_than_max_train_rows(spark, warehouse):
    from kequn.config import ConfigError
    from kequn.tags.plan import id_map_as_of
    build(warehouse)
    cat = catalog(spark, "need_edu_sampled")
    id_map = id_map_as_of(warehouse, D)
    wide = computed(warehouse, D, cat, id_map=id_map)
    out = models.propensity(warehouse, D, cat, wide, id_map)[0]
    assert out.status == f"trained as of {T}"
    # About 20 of the 40 labelled rows, split 70/30; every person is still scored.
    assert 0 < out.test_rows < out.train_rows and out.train_rows + out.test_rows < N
    assert out.score(wide).count() == N
    with pytest.raises(ConfigError, match=r"max_train_rows \(5\) is below min_train_rows \(10\)"):
        validate(spark, catalog_from_dicts([{"code": "need_x", "name_zh": "m", "name_en": "m", "category": "need",
                                             "kind": "model", "value_type": "string", "description": "x",
                                             "definition": {"model": {
                                                 "method": "logistic", "label_source": "transaction",
                                                 "label_where": "true", "features": ["need_x"], "min_train_rows": 10,
                                                 "max_train_rows": 5}}}]))


def test_the_training_split_takes_the_same_persons_whatever_order_or_company_they_come_in(spark):
    people = spark.createDataFrame([(f"P{i:05d}", float(i % 7), float(i % 2)) for i in range(2000)],
                                   "one_id string, f double, label double")
    train, test = models.training_split(people, 0.5, seed=42)
    # About half of the persons, 70 / 30, no one in both.
    assert 600 < train.count() < 800 and 200 < test.count() < 400
    assert train.join(test, "one_id").count() == 0
    # The same rows in another order and other partitions: the same persons (a seeded sample would differ).
    train2, test2 = models.training_split(people.orderBy(F.desc("one_id")).repartition(3), 0.5, seed=42)
    assert_df_equality(train2, train, ignore_row_order=True)
    assert_df_equality(test2, test, ignore_row_order=True)
    # A person's place does not depend on who else is there.
    some = F.col("f") < 3
    train3, test3 = models.training_split(people.where(some), 0.5, seed=42)
    assert_df_equality(train3, train.where(some), ignore_row_order=True)
    assert_df_equality(test3, test.where(some), ignore_row_order=True)
    # Another seed, other persons; no sampling splits everyone.
    assert {r.one_id for r in models.training_split(people, 0.5, seed=7)[0].collect()} != \
        {r.one_id for r in train.collect()}
    everyone = [x.count() for x in models.training_split(people, 1.0, seed=42)]
    assert sum(everyone) == 2000 and 500 < everyone[1] < 700


def test_k_means_fits_the_same_clusters_whatever_order_the_persons_come_in(spark):
    from kequn.tags import clusters

    def stat(code):
        return {"code": code, "name_zh": code, "name_en": code, "category": "behaviour", "kind": "statistic",
                "value_type": "int", "description": "x",
                "definition": {"source": "transaction", "window_days": 90, "agg": "count(1)", "default": "0"}}
    cat = validate(spark, catalog_from_dicts([
        stat("f1"), stat("f2"),
        {"code": "grp", "name_zh": "g", "name_en": "g", "category": "value", "kind": "model", "value_type": "int",
         "description": "x", "definition": {"model": {"method": "kmeans", "k": 4, "features": ["f1", "f2"],
                                                      "log_features": False, "max_train_rows": 300}}}]))
    # No clusters to find: where k-means|| starts decides where it ends.
    wide = spark.createDataFrame([(f"P{i:04d}", i * 7919 % 1000, i * 104729 % 997) for i in range(1000)],
                                 "one_id string, f1 int, f2 int")
    grp = cat.get("grp")
    assigned, profile, why = clusters.kmeans_tag(grp, wide, D)
    again, profile_again, _ = clusters.kmeans_tag(grp, wide.orderBy(F.desc("one_id")).repartition(3), D)
    assert why == "ok" and assigned.count() == 1000      # fitted on about 300, every person assigned
    assert_df_equality(again, assigned, ignore_row_order=True)
    sizes = ["cluster_id", "members", F.col("feature_means")["f1"].alias("f1")]
    assert_df_equality(profile_again.select(*sizes), profile.select(*sizes), ignore_row_order=True)


def test_backfilled_history_trains_as_known_on_the_run_day(spark, warehouse):
    # Nothing was delivered by T: read strictly, the training population would be empty.
    build(warehouse, backfill=True)
    cat = catalog(spark, "need_edu", "need_edu_strict")
    from kequn.tags.plan import id_map_as_of
    id_map = id_map_as_of(warehouse, D)
    wide = computed(warehouse, D, cat, id_map=id_map)
    out = {o.code: o for o in models.propensity(warehouse, D, cat, wide, id_map)}

    edu = out["need_edu"]
    assert edu.status == f"trained as of {T} (as known on {D})"
    assert edu.train_rows + edu.test_rows == N and edu.auc is not None and edu.auc > 0.5
    strict = out["need_edu_strict"]
    assert strict.score is None and f"nothing was delivered by {T}" in strict.status


def test_a_past_day_as_known_later(spark, warehouse):
    from kequn import bronze
    from kequn.tags.plan import person_records
    ts = lambda d: f"{d} 09:00:00"   # noqa: E731
    write_bronze(warehouse, "core_customer", {D: [
        # X changed after T: the version in effect at T is the earlier one
        {"cust_no": "X", "annual_income": "100.00", "open_date": day(T, -50), "updated_at": ts(day(T, -5))},
        {"cust_no": "X", "annual_income": "900.00", "open_date": day(T, -50), "updated_at": ts(day(T, 5))},
        # Y's only version is dated after T (the backfill's first): it stands for T too
        {"cust_no": "Y", "annual_income": "200.00", "open_date": day(T, -50), "updated_at": ts(day(T, 5))},
        # Z opened after T: not yet a customer at T
        {"cust_no": "Z", "annual_income": "300.00", "open_date": day(T, 3), "updated_at": ts(day(T, 3))},
    ]})
    write_map(warehouse, D, [("core_customer", k, i) for i, k in enumerate("XYZ", 1)])
    master = {r["cust_no"]: str(r["annual_income"])
              for r in bronze.master_as_of(warehouse, "core_customer", T, known_by=D).collect()}
    assert master == {"X": "100.00", "Y": "200.00", "Z": "300.00"}
    assert not bronze.master_as_of(warehouse, "core_customer", T).count()   # strictly: nothing delivered by T
    from kequn.tags.plan import id_map_as_of
    recs = person_records(warehouse, T, id_map_as_of(warehouse, D), known_by=D)
    assert sorted(r["source_key"] for r in recs.collect()) == ["X", "Y"]

    write_bronze(warehouse, "touch", {D: [
        {"touch_id": "t1", "campaign_id": "c", "step": 1, "channel": "app", "target_source": "core_customer",
         "target_key": "X", "sent_time": ts(day(T, -1)), "opened_time": ts(day(T, 2))},
        {"touch_id": "t2", "campaign_id": "c", "step": 1, "channel": "app", "target_source": "core_customer",
         "target_key": "Y", "sent_time": ts(day(T, -1)), "opened_time": ts(T)},
        {"touch_id": "t3", "campaign_id": "c", "step": 1, "channel": "app", "target_source": "core_customer",
         "target_key": "Y", "sent_time": ts(day(T, 1))},
    ]})
    touches = {r["touch_id"]: r["opened_time"] for r in bronze.facts_as_of(warehouse, "touch", T, known_by=D).collect()}
    assert set(touches) == {"t1", "t2"}            # t3 was sent after T
    assert touches["t1"] is None and touches["t2"] is not None   # t1's open came after T


@pytest.mark.parametrize("cutoff, first_batch, expected", [
    ("auto", day(T, -10), models.Training(T)),                        # delivered by T: read strictly
    ("auto", D, models.Training(T, known_by=D)),                      # backfilled on D: as known on D
    ("event", day(T, -10), models.Training(T, known_by=D)),
    ("delivery", D, None),
])
def test_training_day_and_how_it_is_read(cutoff, first_batch, expected):
    t = catalog_from_dicts([
        {"code": "need_x", "name_zh": "x", "name_en": "x", "category": "need", "kind": "model", "value_type": "string",
         "description": "x", "definition": {"model": {
             "method": "logistic", "label_source": "transaction", "label_where": "true", "horizon_days": 30,
             "min_history_days": 0, "min_label_days": 5, "features": ["f"], "feature_cutoff": cutoff}}},
    ]).get("need_x")
    first = dt.date.fromisoformat(day(T, -10))
    tr = models.training_day(t, D, first, dt.date.fromisoformat(first_batch))
    if expected is None:
        assert tr.day is None and f"nothing was delivered by {T}" in tr.why
    else:
        assert tr == expected
    # history too short for min_label_days, whatever the cutoff
    late = dt.date.fromisoformat(day(D, -3))
    assert "too little history" in models.training_day(t, D, late, late).why


def test_a_model_scores_beside_the_other_tags_without_a_join(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array

    edu = catalog(spark, "need_edu").get("need_edu")
    rows = [(i, i % 2 == 0, i % 7, f"other {i}", float(i)) for i in range(1, 41)]
    # Tag codes may be any name MLlib also writes (probability, prediction): the frame's columns must stay.
    frame = spark.createDataFrame(rows, "one_id bigint, searched_90d boolean, txn_cnt_90d int, prediction string, "
                                        "probability double")
    features = models.feature_frame(frame, ["searched_90d", "txn_cnt_90d"])
    fitted = Pipeline(stages=[VectorAssembler(inputCols=["searched_90d", "txn_cnt_90d"], outputCol="features"),
                              LogisticRegression(maxIter=5)]).fit(
        features.withColumn("label", (F.col("one_id") % 2 == 0).cast("double")))
    out = models.scored(fitted, edu, frame)

    assert out.columns == frame.columns + ["need_edu"]
    assert_df_equality(out.drop("need_edu"), frame, ignore_row_order=True)
    # The same bands as scoring the features alone and joining them back by one_id.
    alone = fitted.transform(features)
    joined = frame.join(alone.select("one_id", models.band(vector_to_array("probability")[1], edu.definition.model)
                                     .alias("need_edu")), "one_id")
    assert_df_equality(out, joined.select(*out.columns), ignore_row_order=True)
    assert out.select("need_edu").distinct().count() > 1
    # Row by row: the plan moves no row between partitions.
    assert "Exchange" not in out._jdf.queryExecution().executedPlan().toString()
