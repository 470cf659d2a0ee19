"""Ingest over a hand-made landing folder with a broken batch, bad rows, re-deliveries and a late batch."""
import csv
import logging
import os

import pytest
from pyspark.sql import functions as F

from kequn import bronze, ingest
from kequn.config import ConfigError, PipelineConfig
from kequn.landing import SOURCES
from kequn.session import concurrently, release

AS_OF = "2026-11-02"
CLEAR = ["张三", "Li, Si", "13800138000", "11010519491231002X", "6222020000000000123", "13900139000"]


def write(landing, source, dt, rows, name="part-0.csv", columns=None, bom=False):
    columns = columns or SOURCES[source].column_names
    d = landing / source / f"dt={dt}"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / name, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in columns])


def core(cust_no, updated_at, **kw):
    row = dict(cust_no=cust_no, name="张三", id_type="ID_CARD", id_no="11010519491231002x",
               mobile="+86 138-0013-8000", gender="M", birth_date="1949-12-31", occupation="教师",
               marital_status="married", annual_income="120000.50", branch_code="B01", open_date="2010-01-01",
               updated_at=updated_at)
    row.update(kw)
    return row


@pytest.fixture()
def landing(tmp_path):
    l = tmp_path / "landing"
    write(l, "core_customer", "2026-11-01", [
        core("C1", "2026-11-01 09:00:00"),
        core("C2", "2026-11-01T10:00:00", name="Li, Si", id_type="PASSPORT", id_no="E1234567", mobile="13900139000"),
        core("C3", "not-a-time", gender="X"),
        core("", "2026-11-01 00:00:00"),
    ], bom=True)
    # Day 2: C1 changes (later updated_at wins), C2 is re-delivered unchanged; columns in another order.
    cols = list(reversed(SOURCES["core_customer"].column_names))
    write(l, "core_customer", "2026-11-02", [core("C1", "2026-11-02 08:00:00", occupation="医生"),
                                             core("C2", "2026-11-01T10:00:00", name="Li, Si", id_type="PASSPORT",
                                                  id_no="E1234567", mobile="13900139000")], columns=cols)
    write(l, "card_account", "2026-11-01", [dict(card_cust_id="K1", name="张 三", id_no="110105491231002",
                                                 mobile="13800138000", card_no="6222 0200 0000 0000 123",
                                                 card_level="gold", credit_limit="50000", open_date="2020-01-01",
                                                 updated_at="2026-11-01 08:00:00")])
    # app_user lacks the device_id column: the batch is rejected, the rest still loads.
    write(l, "app_user", "2026-11-01", [dict(app_user_id="A1", mobile="13800138000", cust_no="C1",
                                             register_time="2026-01-01 00:00:00", updated_at="2026-11-01 00:00:00")],
          columns=["app_user_id", "mobile", "cust_no", "register_time", "updated_at"])
    txn = dict(txn_id="T1", source="core", source_key="C1", txn_time="2026-11-01 12:00:00", amount="100.5",
               direction="debit", channel="app", category="education", product_code="")
    write(l, "transaction", "2026-11-01", [txn, dict(txn, txn_id="T2", amount="abc")])
    write(l, "transaction", "2026-11-02", [txn, dict(txn, txn_id="T3", txn_time="2026-11-02 09:00:00")])
    # A malformed CSV line: too many fields.
    with open(l / "transaction" / "dt=2026-11-02" / "part-0.csv", "a", encoding="utf-8") as fh:
        fh.write("T4,core,C1,2026-11-02 09:00:00,1,debit,app,other,,surplus\n")
    t = dict(touch_id="X1", campaign_id="first_loan", step="1", channel="app_push", target_source="app_user",
             target_key="A1", sent_time="2026-11-01 09:00:00", opened_time="", converted_time="")
    write(l, "touch", "2026-11-01", [t])
    write(l, "touch", "2026-11-02", [dict(t, opened_time="2026-11-02 10:00:00")])
    return l


def _counts(wh):
    return {t: wh.read(t).count() for t in wh.tables()}


def test_broken_batch_quarantine_idempotence_and_no_clear_pii(spark, warehouse, landing, caplog):
    caplog.set_level(logging.INFO)
    cfg = PipelineConfig()
    with pytest.raises(ingest.BatchRejected) as err:
        ingest.run(spark, warehouse, str(landing), AS_OF, cfg)
    assert "app_user" in str(err.value) and "device_id" in str(err.value) and "part-0.csv" in str(err.value)

    wh = warehouse
    q = {(r.source, r.line): r.reason for r in wh.read("bronze.quarantine").collect()}
    assert q[("core_customer", 4)] == "bad_enum:gender; bad_timestamp:updated_at"
    assert q[("core_customer", 5)] == "empty_required:cust_no"
    assert q[("transaction", 3)] == "bad_decimal:amount"
    assert q[("transaction", 4)].startswith("malformed_csv_record")

    # Latest updated_at wins per key, as of each day; the unchanged re-delivery added no version.
    assert wh.read("bronze.core_customer").count() == 3
    cur = {r.cust_no: r.occupation for r in bronze.master_as_of(wh, "core_customer", AS_OF).collect()}
    assert cur["C1"] == "医生" and set(cur) == {"C1", "C2"}
    day1 = {r.cust_no: r.occupation for r in bronze.master_as_of(wh, "core_customer", "2026-11-01").collect()}
    assert day1["C1"] == "教师"
    # Identifiers: the 15-digit card id equals the 18-digit core id once normalised.
    c1 = bronze.master_as_of(wh, "core_customer", AS_OF).where("cust_no = 'C1'").first()
    k1 = wh.read("bronze.card_account").first()
    assert c1.id_no_token == k1.id_no_token and c1.mobile_token == k1.mobile_token and c1.id_no_valid
    c2 = bronze.master_as_of(wh, "core_customer", AS_OF).where("cust_no = 'C2'").first()
    assert not c2.id_no_valid and c2.id_no_invalid_reason == "not_id_card"
    # Facts: the duplicate T1 counts once; T3 is not visible as of day 1.
    assert sorted(r.txn_id for r in wh.read("bronze.transaction").collect()) == ["T1", "T3"]
    assert [r.txn_id for r in bronze.facts_as_of(wh, "transaction", "2026-11-01").collect()] == ["T1"]
    # The touch re-delivered with its open: the latest batch's row wins.
    assert bronze.facts_as_of(wh, "touch", AS_OF).first().opened_time is not None
    assert bronze.facts_as_of(wh, "touch", "2026-11-01").first().opened_time is None

    # No clear personal data anywhere but the vault, nor in the log.
    for t in wh.tables():
        if t == "bronze.pii_vault":
            continue
        df = wh.read(t)
        strings = [c for c, ty in df.dtypes if ty == "string"]
        text = " ".join(str(v) for r in df.select(*strings).collect() for v in r if v is not None)
        for clear in CLEAR:
            assert clear not in text, f"clear value in {t}"
    vault = {r.value for r in wh.read("bronze.pii_vault").collect()}
    assert {"张三", "13800138000", "11010519491231002X"} <= vault
    for clear in CLEAR:
        assert clear not in caplog.text

    # Re-running the same day (the broken batch still broken) changes no table.
    before = _counts(wh)
    versions = {t: wh.version(t) for t in before if t != "bronze.ingest_batches"}
    with pytest.raises(ingest.BatchRejected):
        ingest.run(spark, wh, str(landing), AS_OF, cfg)
    assert _counts(wh) == before
    assert {t: wh.version(t) for t in versions} == versions

    # The fixed app_user batch arrives late; it is picked up, and nothing else moves.
    os.remove(landing / "app_user" / "dt=2026-11-01" / "part-0.csv")
    write(landing, "app_user", "2026-11-01", [dict(app_user_id="A1", mobile="13800138000", device_id=" DEV-1 ",
                                                   cust_no="C1", register_time="2026-01-01 00:00:00",
                                                   updated_at="2026-11-01 00:00:00")])
    counts = ingest.run(spark, wh, str(landing), AS_OF, cfg)
    assert counts == {"bronze.app_user": 1, "bronze.quarantine": 0}
    assert wh.read("bronze.app_user").first().device_id == "dev-1"


def test_landing_files_are_hashed_once_per_size_and_mtime(spark, warehouse, landing):
    import hashlib

    from kequn.ingest.discover import FileDigests, batches

    with pytest.raises(ingest.BatchRejected):
        ingest.run(spark, warehouse, str(landing), AS_OF, PipelineConfig())
    kept = {r.file: r for r in warehouse.read(ingest.DIGESTS).collect()}
    on_disk = {str(p) for p in landing.rglob("*.csv")}
    assert {f.replace("file:", "") for f in kept} == on_disk
    for f, r in kept.items():
        path = f.replace("file:", "")
        assert r.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert r.size == os.path.getsize(path)

    # A known (file, size, mtime) is not read again: a planted digest shows in the fingerprint.
    uri, r = next((f, r) for f, r in kept.items() if "/touch/dt=2026-11-01/" in f)
    fresh = batches(spark, str(landing), "touch", AS_OF)
    planted = FileDigests({(uri, r.size, r.modified): "0" * 64})
    cached = batches(spark, str(landing), "touch", AS_OF, planted)
    assert [b.fingerprint for b in cached][1] == [b.fingerprint for b in fresh][1]
    assert [b.fingerprint for b in cached][0] != [b.fingerprint for b in fresh][0]
    assert {row[0] for row in planted.new} == set(fresh[1].files)   # only the other day's file hashed

    # The same bytes rewritten (new mtime): hashed again, same fingerprint, so still a loaded batch.
    path = uri.replace("file:", "")
    os.utime(path, (r.modified / 1000 + 60, r.modified / 1000 + 60))
    again = FileDigests({(uri, r.size, r.modified): "0" * 64})
    assert batches(spark, str(landing), "touch", AS_OF, again)[0].fingerprint == fresh[0].fingerprint
    assert uri in {row[0] for row in again.new}


def test_work_runs_in_threads_keeping_the_job_group_order_and_first_failure(spark):
    sc = spark.sparkContext
    before = sc.getLocalProperty("spark.jobGroup.id")
    sc.setLocalProperty("spark.jobGroup.id", "kequn:ingest")
    finished = []

    def load(source, pending):
        if source == "bad":
            raise ValueError("bad source")
        # Each load runs Spark work under the caller's job group (the benchmark attributes by it).
        n = spark.range(pending).count()
        finished.append(source)
        return source, n, sc.getLocalProperty("spark.jobGroup.id")

    work = [("a", 3), ("b", 5), ("c", 7)]
    assert concurrently(spark, work, load, 2, "ingest.parallel_sources") == [
        ("a", 3, "kequn:ingest"), ("b", 5, "kequn:ingest"), ("c", 7, "kequn:ingest")]
    finished.clear()
    with pytest.raises(ValueError, match="bad source"):
        concurrently(spark, [("bad", 1), ("a", 2), ("b", 4)], load, 2, "ingest.parallel_sources")
    assert sorted(finished) == ["a", "b"]        # the others still ran to their end
    with pytest.raises(ConfigError, match="ingest.parallel_sources must be at least 1"):
        concurrently(spark, work, load, 0, "ingest.parallel_sources")
    sc.setLocalProperty("spark.jobGroup.id", before)


def test_a_sources_parsed_rows_are_freed_when_its_load_ends(spark, warehouse, landing):
    from kequn.ingest.discover import batches
    from kequn.ingest.pseudonym import load_key

    sc = spark.sparkContext
    before = set(sc._jsc.getPersistentRDDs().keys())
    source = SOURCES["core_customer"]
    out = ingest._Pending()
    key = load_key(PipelineConfig().pseudonym)
    got = ingest.ingest_source(spark, warehouse, source, batches(spark, str(landing), source.name, AS_OF), key,
                               AS_OF, out)
    assert got == {"bronze.core_customer": 4, "bronze.quarantine": 2}
    # Still held: the vault and quarantine rows the end of the run writes, and nothing else of the load
    # (its parsed rows, the per-file counts and the repeated keys are released).
    assert len(out.cached) == 2 and len(out.vault) == 1 and out.vault[0] is out.cached[1]
    held = set(sc._jsc.getPersistentRDDs().keys()) - before
    assert held == {df._jdf.queryExecution().logical().rdd().id() for df in out.cached}
    # They no longer depend on the released rows: reading them recomputes nothing that is gone.
    vault = {(r.pii_type, r.value) for r in out.vault[0].collect()}
    assert {("name", "张三"), ("mobile", "13800138000"), ("id_no", "11010519491231002X")} <= vault
    assert sum(1 for t, _ in vault if t == "raw_record") == 2
    assert sorted(r.line for r in out.quarantine[0].collect()) == [4, 5]
    for df in out.cached:
        release(df)
    # Nothing of the load is held. (Earlier tests' frames may be freed meanwhile by Spark's cleaner.)
    assert set(sc._jsc.getPersistentRDDs().keys()) - before == set()

    # A load with neither personal data nor bad rows holds nothing once it is done, and its empty
    # quarantine frame needs no job.
    touch = SOURCES["touch"]
    out = ingest._Pending()
    got = ingest.ingest_source(spark, warehouse, touch, batches(spark, str(landing), "touch", AS_OF), key, AS_OF, out)
    assert got == {"bronze.touch": 2, "bronze.quarantine": 0}
    assert out.cached == [] and out.vault == [] and out.quarantine[0].count() == 0
    assert set(sc._jsc.getPersistentRDDs().keys()) - before == set()
