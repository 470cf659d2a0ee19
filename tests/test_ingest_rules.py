"""Unit tests of the landing contract's cleaning rules, one rule at a time."""
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from kequn.ingest import identifiers as ids
from kequn.ingest.parse import validated_rows
from kequn.ingest.pseudonym import python_token, token
from kequn.landing import SOURCES


def _clean(spark, values, normal, reason):
    df = spark.createDataFrame([(v,) for v in values], "raw string")
    n = normal(F.col("raw"))
    return df.select("raw", n.alias("normal")).select("raw", "normal", reason(F.col("raw"), F.col("normal")).alias("reason"))


def test_mobile_normal_form_and_reasons(spark):
    got = _clean(spark, ["+86 138-0013-8000", "008613800138000", "8613900139000", "13700137000", "12345",
                         "12800138000", "", None], ids.mobile_normal, ids.mobile_reason)
    expected = spark.createDataFrame([
        ("+86 138-0013-8000", "13800138000", None), ("008613800138000", "13800138000", None),
        ("8613900139000", "13900139000", None), ("13700137000", "13700137000", None),
        ("12345", "12345", "bad_format"), ("12800138000", "12800138000", "bad_format"),
        ("", "", "empty"), (None, None, "empty")], "raw string, normal string, reason string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_id_no_check_digit_case_and_15_digit_conversion(spark):
    got = _clean(spark, ["11010519491231002x", "11010519491231002X", "110105491231002", "110105194912310021",
                         "1101051949123100", "PASSPORT1"], ids.id_no_normal, ids.id_no_reason)
    expected = spark.createDataFrame([
        ("11010519491231002x", "11010519491231002X", None), ("11010519491231002X", "11010519491231002X", None),
        ("110105491231002", "11010519491231002X", None),
        ("110105194912310021", "110105194912310021", "bad_check_digit"),
        ("1101051949123100", "1101051949123100", "bad_format"), ("PASSPORT1", "PASSPORT1", "bad_format")],
        "raw string, normal string, reason string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_device_id_placeholders_are_invalid(spark):
    got = _clean(spark, [" AbC-123 ", "0000000000", "unknown", "NULL", "", "00-00"],
                 ids.device_id_normal, ids.device_id_reason)
    expected = spark.createDataFrame([
        (" AbC-123 ", "abc-123", None), ("0000000000", "0000000000", "placeholder"), ("unknown", "unknown", "placeholder"),
        ("NULL", "null", "placeholder"), ("", "", "empty"), ("00-00", "00-00", "placeholder")],
        "raw string, normal string, reason string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_hmac_token_in_spark_equals_python_hmac(spark):
    key = b"k" * 80  # longer than a block: hashed first, as HMAC requires
    df = spark.createDataFrame([("13800138000",)], "v string")
    got = df.select(token(key, "mobile", F.col("v")).alias("t")).first()["t"]
    assert got == python_token(key, "mobile", "13800138000")
    assert got != python_token(b"other key", "mobile", "13800138000")
    assert not any(ch.isdigit() for ch in got)


def test_row_rules_name_every_broken_rule(spark):
    src = SOURCES["transaction"]
    cols = src.column_names
    rows = [
        dict(txn_id="T1", source="core", source_key="C1", txn_time="2026-11-03T14:05:09", amount="10.5",
             direction="debit", channel="app", category="education", product_code=None),
        dict(txn_id="", source="core", source_key="C1", txn_time="2026-11-03 14:05:09", amount="10",
             direction="debit", channel="app", category=None, product_code=None),
        dict(txn_id="T3", source="bank", source_key="C1", txn_time="yesterday", amount="ten",
             direction="debit", channel="app", category=None, product_code=None),
    ]
    df = spark.createDataFrame([tuple(r[c] for c in cols) for r in rows], ", ".join(f"{c} string" for c in cols))
    df = df.withColumn("_corrupt", F.lit(None).cast("string"))
    got = {r.txn_id: r._reason for r in validated_rows(df, src).collect()}
    assert got["T1"] is None
    assert got[""] == "empty_required:txn_id"
    assert got["T3"] == "bad_enum:source; bad_timestamp:txn_time; bad_decimal:amount"


def test_line_numbers_count_embedded_line_breaks_per_file(spark, tmp_path):
    from kequn.ingest.parse import raw_rows, with_line_numbers

    cols = SOURCES["transaction"].column_names
    row = "T{n},core,C1,2026-11-01 12:00:00,1,debit,app,{cat},"
    a = tmp_path / "dt=2026-11-01" / "a.csv"
    b = tmp_path / "dt=2026-11-01" / "b.csv"
    a.parent.mkdir()
    # a.csv: T2's category holds two line breaks, so T3 starts on line 6 (header, T1, T2 over 3 lines);
    # T6's holds one more, so T7 starts on line 9.
    a.write_text(",".join(cols) + "\n" + row.format(n=1, cat="x") + "\n" + row.format(n=2, cat='"x\ny\nz"') + "\n"
                 + row.format(n=3, cat="x") + "\n" + row.format(n=6, cat='"p\nq"') + "\n" + row.format(n=7, cat="x")
                 + "\n", encoding="utf-8")
    b.write_text(",".join(cols) + "\n" + row.format(n=4, cat="x") + "\n" + row.format(n=5, cat="x") + "\n",
                 encoding="utf-8")
    raw = raw_rows(spark, SOURCES["transaction"], {tuple(cols): [str(a), str(b)]})
    got = with_line_numbers(raw).select(F.regexp_extract("_file", r"(\w)\.csv$", 1).alias("file"), "txn_id", "_line")
    expected = spark.createDataFrame([("a", "T1", 2), ("a", "T2", 3), ("a", "T3", 6), ("a", "T6", 7), ("a", "T7", 9),
                                      ("b", "T4", 2), ("b", "T5", 3)],
                                     "file string, txn_id string, _line long")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_quarantined_raw_text_keeps_each_files_column_order_and_extra_columns(spark, tmp_path):
    """The raw text is built for bad rows only, after the header groups are unioned: each file's own
    column order and extra columns must survive that, and personal data must not. The rows go through
    the form ingest holds them in: raw text for bad rows, bronze values for all."""
    from kequn.ingest.parse import (bronze_rows, checked_rows, quarantine_rows, raw_of_bad_rows, raw_rows,
                                    with_line_numbers, with_raw_fields)

    source = SOURCES["card_account"]
    cols = source.column_names
    a = tmp_path / "dt=2026-11-01" / "a.csv"
    b = tmp_path / "dt=2026-11-02" / "b.csv"
    for f in (a, b):
        f.parent.mkdir()
    a.write_text(",".join(cols) + "\n"
                 + "K1,Li Lei,110101199003078515,13800001111,6222000011112222,gold,1000,2026-01-01,2026-11-01 09:00:00\n"
                 + "K2,Han Mei,,,,silver,1000,2026-01-01,2026-11-01 09:00:00\n", encoding="utf-8")
    reordered = list(reversed(cols)) + ["note"]
    b.write_text(",".join(reordered) + "\n"
                 + "2026-11-02 09:00:00,2026-01-01,5,gold,,,,Wang,K3,hello\n"
                 + "not-a-time,2026-01-01,5,gold,,13900002222,,Zhao,K4,\"a,b\"\n", encoding="utf-8")
    files = {tuple(cols): [str(a)], tuple(reordered): [str(b)]}
    headers = list(files)
    parsed = checked_rows(raw_rows(spark, source, files), source, b"k")
    checked = with_line_numbers(raw_of_bad_rows(parsed, source))
    # Good rows keep no raw text (held rows take less memory); their bronze rows hold the typed values.
    good = checked.where("_reason IS NULL")
    assert [[r[c] for c in cols] for r in good.collect()] == [[None] * len(cols)] * 2
    got = {r.card_cust_id: (r.card_level, r.credit_limit, r.open_date.isoformat(), r.mobile_token is None)
           for r in bronze_rows(good, source).collect()}
    assert got == {"K1": ("gold", 1000, "2026-01-01", False), "K3": ("gold", 5, "2026-01-01", True)}
    q = quarantine_rows(with_raw_fields(checked.where("_reason IS NOT NULL"), source, headers), source, "2026-11-02")
    assert sorted((r.file.rsplit("/", 1)[-1], r.line) for r in q.collect()) == [("a.csv", 3), ("b.csv", 3)]
    by_file = {r.file.rsplit("/", 1)[-1]: r for r in q.collect()}
    assert by_file["a.csv"].reason == "bad_enum:card_level"
    assert by_file["a.csv"]._verbatim == "K2,Han Mei,,,,silver,1000,2026-01-01,2026-11-01 09:00:00"
    assert by_file["b.csv"].reason == "bad_timestamp:updated_at"
    assert by_file["b.csv"]._verbatim == 'not-a-time,2026-01-01,5,gold,,13900002222,,Zhao,K4,"a,b"'
    # The quarantine's own text: the file's order and extra column, the mobile and the name tokenised.
    raw_b = by_file["b.csv"].raw
    assert raw_b.startswith("not-a-time,2026-01-01,5,gold,,") and raw_b.endswith(',K4,"a,b"')
    assert "13900002222" not in raw_b and "Zhao" not in raw_b and "Han Mei" not in by_file["a.csv"].raw


def test_batch_date_and_line_breaks_read_cheaply_what_they_say(spark):
    from kequn.ingest.parse import CORRUPT, batch_date, line_breaks

    df = spark.createDataFrame([("file:/l/dt=x/holding/dt=2026-11-03/p.csv", "a", "b", None),
                                ("s3a://bank/landing/event/dt=2025-01-31/part-0.csv", "a\nb", "c\n\nd", None),
                                ("file:/l/event/dt=2026-11-03/q.csv", None, None, "x\"\ny")],
                               f"f string, c1 string, c2 string, {CORRUPT} string")
    got = [(r.d, r.n) for r in df.select(batch_date(F.col("f")).alias("d"),
                                          line_breaks(["c1", "c2"]).alias("n")).collect()]
    assert [(str(d), n) for d, n in got] == [("2026-11-03", 0), ("2025-01-31", 3), ("2026-11-03", 1)]


def test_unloaded_rows_keeps_new_keys_and_earlier_deliveries_only(spark):
    from kequn.ingest import unloaded_rows

    bronze = spark.createDataFrame([("T1", "2026-11-02", 1), ("T2", "2026-11-02", 2), ("T3", "2026-11-02", 3),
                                    (None, "2026-11-01", 4)], "txn_id string, _batch_dt string, amount int")
    bronze = bronze.withColumn("_batch_dt", F.to_date("_batch_dt"))
    rows = spark.createDataFrame([("T1", "2026-11-02", 10),   # same delivery again: a no-op, dropped
                                  ("T2", "2026-11-03", 20),   # later re-delivery: earlier one wins, dropped
                                  ("T3", "2026-11-01", 30),   # earlier delivery: replaces bronze's, kept
                                  ("T4", "2026-11-03", 40),   # new key, kept
                                  (None, "2026-11-03", 50)],  # a null key matches bronze's null key, dropped
                                 "txn_id string, _batch_dt string, amount int")
    rows = rows.withColumn("_batch_dt", F.to_date("_batch_dt"))
    expected = spark.createDataFrame([("T3", "2026-11-01", 30), ("T4", "2026-11-03", 40)],
                                     "txn_id string, _batch_dt string, amount int")
    expected = expected.withColumn("_batch_dt", F.to_date("_batch_dt"))
    got = unloaded_rows(rows, bronze, ["txn_id"])
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert got.schema == rows.schema


def test_bronze_merge_searches_the_key_range_and_keeps_the_earliest_delivery(spark, warehouse):
    from kequn.ingest import key_bounds, within_bounds

    ddl = "source_key string, snapshot_date string, product_type string, balance int, _batch_dt string"

    def rows(data):
        df = spark.createDataFrame(data, ddl)
        return df.withColumn("snapshot_date", F.to_date("snapshot_date")).withColumn("_batch_dt", F.to_date("_batch_dt"))

    keys = ["source_key", "snapshot_date", "product_type"]
    name = "bronze.holding"
    warehouse.merge(rows([("C1", "2026-11-01", "fund", 1, "2026-11-01"), ("C1", "2026-11-02", "fund", 2, "2026-11-02"),
                          (None, "2026-11-02", "fund", 3, "2026-11-02")]), name, keys)
    day3 = rows([("C1", "2026-11-02", "fund", 20, "2026-11-03"),   # re-delivered later: the earlier row stays
                 ("C1", "2026-11-03", "fund", 30, "2026-11-03"),   # new
                 (None, "2026-11-02", "fund", 40, "2026-11-03")])  # null key: matches bronze's null key
    bounds = key_bounds(day3, keys)
    assert bounds == {"snapshot_date": ("DATE", "2026-11-02", "2026-11-03")}
    within = within_bounds(bounds, "t")
    assert within == ("(t.`snapshot_date` BETWEEN DATE'2026-11-02' AND DATE'2026-11-03' "
                      "OR t.`snapshot_date` IS NULL)")
    for _ in range(2):   # twice: the same delivery again changes nothing
        warehouse.merge(day3, name, keys, update_when="s._batch_dt < t._batch_dt", target_filter=within)
        got = sorted((r.snapshot_date.day, r.balance) for r in warehouse.read(name).collect())
        assert got == [(1, 1), (2, 2), (2, 3), (3, 30)]
    # Timestamps are widened by a day, so a literal read in another zone cannot cut off a boundary row.
    ts = spark.createDataFrame([("2026-11-02 10:00:00",)], "t string").select(F.to_timestamp("t").alias("event_time"))
    assert key_bounds(ts, ["event_time"]) == {
        "event_time": ("TIMESTAMP", "2026-11-01 10:00:00.000000", "2026-11-03 10:00:00.000000")}


def _good_rows(spark, tmp_path, source, batches, held=None):
    """Validated, pseudonymised, line-numbered good rows of one CSV file per day: {day: [row values]}.

    With ``held`` (a list), the parsed rows are held with their key hash, as ingest holds them, and
    appended to it: that cuts the plan, which for a master source's every expression is heavy to plan.
    """
    from kequn.ingest import with_key_hash
    from kequn.ingest.parse import checked_rows, raw_of_bad_rows, raw_rows, with_line_numbers
    from kequn.session import held as hold

    cols = source.column_names
    files = []
    for day, rows in batches.items():
        f = tmp_path / source.name / f"dt=2026-11-0{day}" / "part.csv"
        f.parent.mkdir(parents=True)
        f.write_text(",".join(cols) + "\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
        files.append(str(f))
    parsed = checked_rows(raw_rows(spark, source, {tuple(cols): files}), source, b"k")
    if held is not None:
        parsed = hold(with_key_hash(raw_of_bad_rows(parsed, source), source))
        held.append(parsed)
    return with_line_numbers(parsed).where("_reason IS NULL")


def test_unique_bronze_rows_sorts_only_repeated_keys_and_equals_the_full_sort(spark, tmp_path):
    from kequn.ingest import deduplicated, split_by_repeated_hashes, unique_bronze_rows, with_key_hash
    from kequn.ingest.parse import bronze_rows

    source = SOURCES["transaction"]
    row = "{t},core,C1,2026-11-0{d} 12:00:00,{amt},debit,app,food,"
    good = _good_rows(spark, tmp_path, source, {
        d: [row.format(t=t, d=d, amt=a).split(",") for t, a in txns]
        for d, txns in ((1, [("T1", 1), ("T2", 2), ("T2", 3)]), (2, [("T1", 9), ("T3", 4)]))})
    held = []
    got = unique_bronze_rows(good, source, held).drop("_ingested_at", "_extra")  # chispa cannot sort maps
    assert held[0].count() == 2                                                 # key hashes seen twice
    once, again = split_by_repeated_hashes(with_key_hash(good, source), held[0])
    assert sorted(r.txn_id for r in again.collect()) == ["T1", "T1", "T2", "T2"]  # only these are sorted
    assert [r.txn_id for r in once.collect()] == ["T3"]
    expected = deduplicated(bronze_rows(good, source), source).drop("_ingested_at", "_extra")
    assert_df_equality(got, expected, ignore_row_order=True)
    # The earliest delivery wins; within a batch, the row hash decides.
    assert {r.txn_id: r._batch_dt.day for r in got.collect()} == {"T1": 1, "T2": 1, "T3": 2}
    _release(held)


def test_unique_bronze_rows_of_master_versions_and_touches_keep_one_row_per_merge_key(spark, tmp_path):
    # Bronze merges these on their content (_row_hash): a version delivered again is the same row, a
    # changed one is a new row, and a touch keeps one row per batch that delivered it.
    from kequn.ingest import deduplicated, unique_bronze_rows
    from kequn.ingest.parse import bronze_rows

    def c(no, income, updated):
        return [no, "张三", "ID_CARD", "11010519491231002X", "13800138000", "M", "1949-12-31", "teacher",
                "married", income, "B01", "2001-02-03", updated]

    v1, v2 = c("C1", "100.00", "2026-11-01 08:00:00"), c("C1", "200.00", "2026-11-02 08:00:00")
    # Trimmed to the same typed content as v1: the same version, written differently.
    v1_spaced = [f" {x} " if i == 9 else x for i, x in enumerate(v1)]
    masters = {1: [v1, c("C2", "5.00", "2026-11-01 09:00:00"), v1_spaced],
               2: [v1, v2, c("C3", "7.00", "2026-11-02 09:00:00")]}
    sent, opened = (["TC1", "CAMP1", "1", "sms", "app_user", "U1", "2026-11-01 09:00:00", o, ""]
                    for o in ("", "2026-11-02 10:00:00"))
    touches = {1: [sent, sent, ["TC2", *sent[1:]]], 2: [sent, opened, opened]}
    cases = (("core_customer", masters, 1, 4), ("touch", touches, 2, 4),
             ("core_customer", {2: masters[2]}, 0, 3), ("touch", {1: [sent, ["TC2", *sent[1:]]], 2: [sent]}, 0, 3))
    for i, (name, batches, repeated, n) in enumerate(cases):
        source = SOURCES[name]
        held = []
        good = _good_rows(spark, tmp_path / str(i), source, batches, held)
        got = unique_bronze_rows(good, source, held).drop("_ingested_at", "_extra")
        assert held[1].count() == repeated, name                     # key hashes seen more than once
        expected = deduplicated(bronze_rows(good, source), source).drop("_ingested_at", "_extra")
        assert_df_equality(got, expected, ignore_row_order=True)
        rows = got.collect()
        assert len(rows) == n, name
        if name == "core_customer" and repeated:
            # The version delivered three times is kept once, from its first delivery: day 1, line 2.
            assert [(r._batch_dt.day, r._line) for r in rows if r.annual_income == 100] == [(1, 2)]
        elif repeated:
            assert sorted((r.touch_id, r._batch_dt.day, r.opened_time is not None) for r in rows) == [
                ("TC1", 1, False), ("TC1", 2, False), ("TC1", 2, True), ("TC2", 1, False)]
        _release(held)


def test_latest_version_and_touch_resolution_pick_one_row_per_key_by_their_rules(spark):
    # The windows group by the key (a null part included) and sort by a hash of it first: the winner is
    # still the latest version, ties broken by the content hash, and per touch the latest batch, then
    # the row with more timestamps filled.
    from kequn.bronze import latest_version, touches_resolved

    versions = spark.createDataFrame([
        ("a", "x", "2026-11-01 08:00:00", "h1"), ("a", "x", "2026-11-02 08:00:00", "h2"),
        ("a", None, "2026-11-03 08:00:00", "h3"), ("a", None, "2026-11-03 08:00:00", "h4"),
        ("b", "x", None, "h5"), ("b", "x", "2026-11-01 08:00:00", "h6")],
        "k1 string, k2 string, updated_at string, _row_hash string"
    ).withColumn("updated_at", F.to_timestamp("updated_at"))
    got = latest_version(versions, ["k1", "k2"], "updated_at").select("k1", "k2", "_row_hash")
    assert_df_equality(got, spark.createDataFrame([("a", "x", "h2"), ("a", None, "h4"), ("b", "x", "h6")],
                                                  "k1 string, k2 string, _row_hash string"),
                       ignore_row_order=True, ignore_nullable=True)

    t = "2026-11-01 09:00:00"
    touches = spark.createDataFrame([
        ("T1", "2026-11-01", None, None, "h1"), ("T1", "2026-11-02", None, None, "h2"),
        ("T2", "2026-11-02", t, None, "h3"), ("T2", "2026-11-02", None, None, "h9"),
        ("T3", "2026-11-01", t, t, "h4"), ("T3", "2026-11-02", t, None, "h5"),
        ("T4", "2026-11-01", None, None, "h6"), ("T5", "2026-11-02", t, None, "h7")],
        "touch_id string, _batch_dt string, opened_time string, converted_time string, _row_hash string")
    # T4 and T5, delivered once, pass without the sort; the others are sorted. Sorting every row, as for
    # touches with too many repeated ids to broadcast, keeps the same rows.
    want = spark.createDataFrame([("T1", "h2"), ("T2", "h3"), ("T3", "h5"), ("T4", "h6"), ("T5", "h7")],
                                 "touch_id string, _row_hash string")
    for got in (touches_resolved(touches), touches_resolved(touches, sort_all=True)):
        assert_df_equality(got.select("touch_id", "_row_hash"), want, ignore_row_order=True, ignore_nullable=True)


def test_latest_touches_broadcast_at_most_the_bound_of_repeated_ids(spark, tmp_path):
    # bronze.touch of 6 rows, 2 ids delivered twice. Up to twice the bound in all (the Delta log's count)
    # or with at most the bound of repeated ids (counted), only those ids' rows are sorted, picked by a
    # broadcast anti/semi join; above it every row is sorted. Each way the latest delivery wins.
    from kequn.bronze import latest_touches
    from kequn.tables import Warehouse

    wh = Warehouse(spark, str(tmp_path / "wh"))
    t = "2026-11-01 09:00:00"
    wh.overwrite(spark.createDataFrame([
        ("T1", "2026-11-01", None, None, "h1"), ("T1", "2026-11-02", t, None, "h2"),
        ("T2", "2026-11-01", None, None, "h3"), ("T2", "2026-11-03", t, t, "h4"),
        ("T3", "2026-11-01", None, None, "h5"), ("T4", "2026-11-02", t, None, "h6")],
        "touch_id string, _batch_dt string, opened_time string, converted_time string, _row_hash string"),
        "bronze.touch")
    want = spark.createDataFrame([("T1", "h2"), ("T2", "h4"), ("T3", "h5"), ("T4", "h6")],
                                 "touch_id string, _row_hash string")
    for bound, split in ((3, True), (2, True), (1, False)):
        got = latest_touches(wh, wh.read("bronze.touch"), bound=bound)
        plan = got._jdf.queryExecution().executedPlan().toString()
        assert ("LeftAnti" in plan) == split, (bound, plan)
        assert_df_equality(got.select("touch_id", "_row_hash"), want, ignore_row_order=True, ignore_nullable=True)


def _release(held):
    """Free what a test held (parsed rows, ``unique_bronze_rows``' key hashes), as ingest does when a
    source's load ends."""
    from kequn.session import release

    for df in held:
        release(df)


def _one_bronze_row(spark, name, values):
    from kequn.ingest.parse import bronze_rows, checked_rows

    src = SOURCES[name]
    df = spark.createDataFrame([values], ", ".join(f"`{c}` string" for c in src.column_names))
    df = df.select("*", F.lit(None).cast("string").alias("_corrupt"),
                   F.create_map().cast("map<string,string>").alias("_extra"), F.lit("f.csv").alias("_file"),
                   F.lit("2026-11-01").cast("date").alias("_batch_dt"), F.lit(2).cast("long").alias("_line"))
    return bronze_rows(checked_rows(df, src, b"golden-key"), src).first()


def test_row_hash_stays_sha256_where_bronze_merges_on_it_and_is_short_elsewhere(spark):
    # Master versions and touches are MERGEd on _row_hash: these values were computed before the fact
    # hash changed, and a warehouse loaded then must see the same rows as the same rows.
    master = _one_bronze_row(spark, "core_customer", [
        "C1", "张三", "ID_CARD", "11010519491231002X", "13800138000", "M", "1949-12-31", "teacher", "married",
        "120000.50", "B01", "2001-02-03", "2026-11-01 08:00:00"])
    assert master._row_hash == "kdmkajpecfejkciednimkeipbdodnicbgfilijoldlejbmbkkoikkabdgcpnlcbb"
    touch = _one_bronze_row(spark, "touch", ["TC1", "CAMP1", "2", "sms", "app_user", "U1", "2026-11-01 09:00:00", "", ""])
    assert touch._row_hash == "edhblmcojabkpjbjdapodbencanfpbamdoncihklnipicakagmffckjocfeihbhj"
    # Other facts: a 64-bit hash in letters, different for different content.
    values = ["H1", "2026-11-01", "wealth", "100.00", ""]
    a = _one_bronze_row(spark, "holding", values)._row_hash
    b = _one_bronze_row(spark, "holding", values[:3] + ["100.01", ""])._row_hash
    assert len(a) == 16 and set(a) <= set("abcdefghijklmnop") and a != b


def test_letters64_writes_each_4_bits_as_one_letter_high_bits_first(spark):
    from kequn.ingest.parse import letters64

    values = [0, 1, 15, 16, -1, 0x0123456789ABCDEF, -(1 << 63), (1 << 63) - 1, -8070450532247928832]
    got = [r[0] for r in spark.createDataFrame([(v,) for v in values], "h long")
           .select(letters64(F.col("h"))).collect()]
    want = ["".join("abcdefghijklmnop"[int(c, 16)] for c in format(v & (2 ** 64 - 1), "016x")) for v in values]
    assert got == want
    assert got[5] == "abcdefghijklmnop"


def test_bronze_tables_keep_file_statistics_for_the_filtered_columns_only(spark, tmp_path):
    from delta_log import first_commit_stats
    from kequn.ingest import merge_into_bronze
    from kequn.tables import Warehouse

    wh = Warehouse(spark, str(tmp_path / "wh"))
    src = SOURCES["transaction"]
    rows = spark.createDataFrame([
        ("T1", "core", "C1", "2026-11-01 12:00:00", "1.00", "debit", "app", "food", None),
        ("T2", "core", "C1", "2026-11-02 12:00:00", "2.00", "debit", "app", "food", None)],
        ", ".join(f"`{c}` string" for c in src.column_names))
    rows = rows.select("txn_id", *[F.col(c) for c in src.column_names if c != "txn_id"],
                       F.lit("2026-11-02").cast("date").alias("_batch_dt"), F.lit("x").alias("_row_hash"))
    merge_into_bronze(wh, rows, src)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{wh.path('bronze.transaction')}`").first()
    assert detail.properties["delta.dataSkippingStatsColumns"] == f"txn_id,{src.time_column},_batch_dt"
    stats = first_commit_stats(wh.path("bronze.transaction"))
    assert stats and all(set(s["minValues"]) == {"txn_id", src.time_column, "_batch_dt"} for s in stats)
