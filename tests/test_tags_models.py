"""Need-tag models on a tiny planted dataset: trained with metrics, or skipped gracefully."""
import pytest

from kequn.tags import models
from kequn.tags.catalog import catalog_from_dicts, validate
from kequn.tags.plan import computed
from test_tags_helpers import day, write_bronze, write_map

D = "2026-06-30"
T = day(D, -30)
N = 40


def catalog(spark):
    def model(code, **kw):
        m = {"method": "logistic", "label_source": "transaction", "horizon_days": 30, "min_history_days": 0,
             "min_label_days": 5, "min_train_rows": 10, "features": ["searched_90d", "txn_cnt_90d"], **kw}
        return {"code": code, "name_zh": code, "name_en": code, "category": "need", "kind": "model",
                "value_type": "string", "description": "x", "definition": {"model": m}}
    return validate(spark, catalog_from_dicts([
        {"code": "searched_90d", "name_zh": "s", "name_en": "s", "category": "need", "kind": "statistic",
         "value_type": "boolean", "description": "x",
         "definition": {"source": "event", "window_days": 90, "where": "keyword LIKE '%教育金%'",
                        "agg": "count(1)", "value": "value > 0", "default": "false"}},
        {"code": "txn_cnt_90d", "name_zh": "t", "name_en": "t", "category": "behaviour", "kind": "statistic",
         "value_type": "int", "description": "x",
         "definition": {"source": "transaction", "window_days": 90, "agg": "count(1)", "default": "0"}},
        model("need_edu", label_where="category = 'education'"),
        model("need_none", label_where="category = 'no_such_category'"),
        model("need_early", label_where="category = 'education'", min_history_days=60),
    ]))


def build(wh):
    keys = [f"C{i}" for i in range(1, N + 1)]
    write_bronze(wh, "core_customer", {day(D, -300): [{"cust_no": k, "updated_at": f"{day(D, -300)} 00:00:00"}
                                                      for k in keys]})
    write_bronze(wh, "app_user", {day(D, -300): [{"app_user_id": f"A{i}", "updated_at": f"{day(D, -300)} 00:00:00"}
                                                 for i in range(1, N + 1)]})
    events = [{"event_id": f"E{i}", "source": "app", "user_key": f"A{i}", "event_time": f"{day(T, -3)} 10:00:00",
               "event_type": "search", "keyword": "教育金 怎么存"} for i in range(1, 21)]
    # Each fact arrives in the batch of its own day: training as of T sees only batches dated <= T.
    write_bronze(wh, "event", {day(T, -3): events})
    base = [{"txn_id": f"B{i}", "source": "core", "source_key": f"C{i}", "txn_time": f"{day(T, -10)} 10:00:00",
             "amount": "10.00", "direction": "debit", "channel": "app", "category": "other"}
            for i in range(1, N + 1)]
    # planted outcome: most searchers buy education within (T, D], a few others too
    buyers = list(range(1, 17)) + [21, 22, 23]
    outcome = [{"txn_id": f"L{i}", "source": "core", "source_key": f"C{i}", "txn_time": f"{day(T, 10)} 10:00:00",
              "amount": "3000.00", "direction": "debit", "channel": "app", "category": "education"} for i in buyers]
    write_bronze(wh, "transaction", {day(T, -10): base, day(T, 10): outcome})
    write_map(wh, D, [("core_customer", f"C{i}", i) for i in range(1, N + 1)]
              + [("app_user", f"A{i}", i) for i in range(1, N + 1)])


def test_models_train_with_metrics_or_skip_gracefully(spark, warehouse):
    build(warehouse)
    cat = catalog(spark)
    from kequn.tags.plan import id_map_as_of
    id_map = id_map_as_of(warehouse, D)
    wide = computed(warehouse, D, cat, id_map=id_map)
    out = {o.code: o for o in models.propensity(warehouse, D, cat, wide, id_map)}

    edu = out["need_edu"]
    assert edu.status == f"trained as of {T}"
    assert edu.train_rows + edu.test_rows == N and edu.test_rows > 0
    assert edu.auc is not None and 0.5 < edu.auc <= 1.0
    bands = {r["one_id"]: r["need_edu"] for r in edu.scores.collect()}
    assert set(bands.values()) <= {"high", "medium", "low"} and len(bands) == N
    # searchers (still in the 90-day window as of D) score at least as high as non-searchers
    rank = {"low": 0, "medium": 1, "high": 2}
    assert min(rank[bands[i]] for i in range(1, 21)) >= max(rank[bands[i]] for i in range(21, N + 1))

    assert out["need_none"].scores is None and "single class" in out["need_none"].status
    assert out["need_early"].scores is None and "too little history" in out["need_early"].status

    metrics = models.metrics_frame(spark, D, list(out.values()))
    assert metrics.columns == ["as_of", "model", "auc", "train_rows", "test_rows", "status"]
    assert metrics.where("auc IS NOT NULL").count() == 1
