"""The real-time stage on real Spark streaming (availableNow) and real Delta tables."""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kequn import stream
from kequn.config import ConfigError, PipelineConfig, StreamConfig
from kequn.stream import job
from kequn.stream.settings import load_settings

from conftest import session_conf

COLS = ["event_id", "source", "user_key", "device_id", "event_time", "event_type", "page", "keyword"]


def midday_zone() -> str:
    """A fixed-offset zone in which it is now about noon.

    The stream dates events, counts ``events_today`` and names the micro-batch's day in the session's
    time zone, from the wall clock and from event times up to two hours old. In Asia/Shanghai a run
    shortly after midnight there (16:00 UTC) put some of a test's events on the day before and broke
    every date these tests expect; in this zone no test's events straddle midnight.
    """
    offset = (12 - dt.datetime.now(dt.timezone.utc).hour + 12) % 24 - 12      # -12 .. 11 hours
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX sign


ZONE = midday_zone()
NOW = dt.datetime.now(ZoneInfo(ZONE)).replace(tzinfo=None, microsecond=0)
TODAY = NOW.date().isoformat()


def at(minutes_ago: int) -> dt.datetime:
    """The instant ``minutes_ago`` before NOW as Spark returns timestamps to Python (naive, machine time)."""
    return (NOW.replace(tzinfo=ZoneInfo(ZONE)) - dt.timedelta(minutes=minutes_ago)
            ).astimezone().replace(tzinfo=None)


@pytest.fixture(scope="module", autouse=True)
def _midday(spark):
    with session_conf(spark, {"spark.sql.session.timeZone": ZONE}):
        yield


@pytest.fixture(autouse=True)
def _clock():
    """Times are relative to each test's start: the suite may reach this file long after collection."""
    global NOW, TODAY
    NOW = dt.datetime.now(ZoneInfo(ZONE)).replace(tzinfo=None, microsecond=0)
    TODAY = NOW.date().isoformat()


def ts(minutes_ago: int) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")


def drop(landing: Path, name: str, rows: list[dict], columns=COLS) -> None:
    d = landing / "stream" / "event"
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    tmp.rename(d / name)  # atomic: the stream never sees half a file


def ev(event_id, user_key="U1", source="app", minutes_ago=5, event_type="page_view", page="首页", keyword=""):
    return dict(event_id=event_id, source=source, user_key=user_key, device_id="DEV-1",
                event_time=ts(minutes_ago), event_type=event_type, page=page, keyword=keyword)


def write_map(spark, wh, rows):
    wh.overwrite(spark.createDataFrame(rows, "source string, source_key string, one_id bigint"), "gold.one_id_map")


@pytest.fixture()
def landing(tmp_path):
    p = tmp_path / "landing"
    (p / "stream" / "event").mkdir(parents=True)
    return p


@pytest.fixture()
def config(tmp_path):
    return PipelineConfig(conf_dir=str(Path(__file__).resolve().parents[1] / "conf"))


def run(spark, wh, landing, config) -> int:
    return stream.run_stream(spark, wh, str(landing), config, available_now=True)


def table(wh, name, cols, order):
    return [tuple(r) for r in wh.read(name).select(*cols).orderBy(*order).collect()]


def test_dropped_files_land_in_bronze_activity_and_quarantine(spark, warehouse, landing, config):
    wh = warehouse
    write_map(spark, wh, [("app_user", "U1", 1), ("wechat_user", "O1", 1), ("app_user", "U2", 2)])
    drop(landing, "a.csv", [
        ev("e1", minutes_ago=30, event_type="login", page=""),
        ev("e2", minutes_ago=20, event_type="search", page="搜索", keyword="房贷"),
        ev("e3", source="official_account", user_key="O1", minutes_ago=10, page="公众号首页"),
        ev("e4", user_key="U2", minutes_ago=3, event_type="click"),
        ev("bad1", event_type="teleport"),
    ])
    assert run(spark, wh, landing, config) == 0

    assert table(wh, "bronze.event", ["event_id", "_batch_dt"], ["event_id"]) == [
        (e, NOW.date()) for e in ("e1", "e2", "e3", "e4")]
    q = wh.read("bronze.quarantine").collect()
    assert [(r.source, r.line, r.reason) for r in q] == [("event", 6, "bad_enum:event_type")]
    assert q[0].file.endswith("/stream/event/a.csv")

    act = {r.one_id: r for r in wh.read("gold.realtime_activity").collect()}
    assert set(act) == {1, 2}
    p1 = act[1]
    assert (p1.last_event_id, p1.last_source, p1.last_event_type, p1.events_today) == ("e3", "official_account",
                                                                                       "page_view", 3)
    assert p1.last_event_at == at(10)
    assert p1.last_login_at == at(30)
    assert (p1.last_search_keyword, p1.last_search_at) == ("房贷", at(20))
    assert (act[2].events_today, act[2].last_event_type, act[2].last_search_at) == (1, "click", None)

    # The searcher entered the live segment in the same micro-batch; the clicker did not.
    m = wh.read("gold.realtime_segment_members").collect()
    assert [(r.segment_code, r.one_id) for r in m] == [("searched_mortgage_1h", 1)]
    assert m[0].expires_at == at(20 - 60)

    b = wh.read("silver.stream_batches").collect()
    assert [(r.batch_id, r.files, r.input_rows, r.loaded, r.quarantined) for r in b] == [(0, 1, 5, 4, 1)]
    assert b[0].event_latency_s >= 180 and b[0].arrival_latency_s >= 0


def test_same_events_twice_and_old_or_stale_events(spark, warehouse, landing, config):
    wh = warehouse
    write_map(spark, wh, [("app_user", "U1", 1)])
    rows = [ev("e1", minutes_ago=50), ev("e2", minutes_ago=40, event_type="search", keyword="买房 房贷 利率"),
            ev("e2", minutes_ago=40, event_type="search", keyword="买房 房贷 利率")]  # twice in one file
    drop(landing, "a.csv", rows)
    assert run(spark, wh, landing, config) == 0
    before = {n: wh.read(n).drop("updated_at", "_ingested_at").orderBy(*wh.read(n).columns[:2]).collect()
              for n in ("bronze.event", "gold.realtime_activity", "gold.realtime_segment_members")}
    assert len(before["bronze.event"]) == 2 and before["gold.realtime_activity"][0].events_today == 2

    drop(landing, "b.csv", rows[:2])  # the same events again, in another file
    # ... and a search for a mortgage two hours ago: too old for a 1-hour live segment.
    drop(landing, "c.csv", [ev("e9", user_key="U1", minutes_ago=120, event_type="search", keyword="房贷")])
    assert run(spark, wh, landing, config) == 0
    after = {n: wh.read(n).drop("updated_at", "_ingested_at").orderBy(*wh.read(n).columns[:2]).collect()
             for n in before}
    assert [r.event_id for r in after["bronze.event"]] == ["e1", "e2", "e9"]
    assert after["bronze.event"][:2] == before["bronze.event"]  # same file/line: first delivery kept
    assert after["gold.realtime_segment_members"] == before["gold.realtime_segment_members"]
    a = after["gold.realtime_activity"][0]
    assert (a.events_today, a.last_event_id) == (3, "e2")  # late e9 counted, but e2 stays the latest


def test_event_loaded_by_batch_ingest_is_not_doubled(spark, warehouse, landing, config, tmp_path):
    from kequn import ingest

    wh = warehouse
    write_map(spark, wh, [("app_user", "U1", 1)])
    batch = landing / "event" / f"dt={TODAY}"
    batch.mkdir(parents=True)
    shared = [ev("e1", minutes_ago=30), ev("e2", minutes_ago=20, event_type="login", page="")]
    with open(batch / "part-0.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLS)
        w.writeheader()
        w.writerows(shared)
    ingest.run(spark, wh, str(landing), TODAY, config)
    assert wh.read("bronze.event").count() == 2

    # The stream brings the same two events (columns in another order) and one new one.
    drop(landing, "s.csv", shared + [ev("e3", minutes_ago=5)], columns=list(reversed(COLS)))
    assert run(spark, wh, landing, config) == 0
    rows = wh.read("bronze.event").orderBy("event_id").collect()
    assert [r.event_id for r in rows] == ["e1", "e2", "e3"]
    assert "/event/dt=" in rows[0]._file and rows[2]._file.endswith("/stream/event/s.csv")
    act = wh.read("gold.realtime_activity").collect()
    assert [(r.one_id, r.events_today, r.last_event_id) for r in act] == [(1, 3, "e3")]

    # And the other way round: the daily batch delivering what the stream loaded adds nothing.
    batch2 = landing / "event" / f"dt={(NOW + dt.timedelta(days=1)).date()}"
    batch2.mkdir(parents=True)
    with open(batch2 / "part-0.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLS)
        w.writeheader()
        w.writerow(ev("e3", minutes_ago=5))
    ingest.run(spark, wh, str(landing), (NOW + dt.timedelta(days=1)).date().isoformat(), config)
    rows = wh.read("bronze.event").orderBy("event_id").collect()
    assert [(r.event_id, r._batch_dt) for r in rows][2] == ("e3", NOW.date())
    assert len(rows) == 3


def test_unknown_user_waits_and_is_resolved_when_the_map_gains_it(spark, warehouse, landing, config):
    wh = warehouse
    write_map(spark, wh, [("app_user", "U1", 1)])
    drop(landing, "a.csv", [ev("e1", minutes_ago=9), ev("n1", user_key="NEW", minutes_ago=8, event_type="search",
                                                          keyword="房贷")])
    assert run(spark, wh, landing, config) == 0
    assert [r.event_id for r in wh.read("silver.realtime_unresolved").collect()] == ["n1"]
    assert [r.one_id for r in wh.read("gold.realtime_activity").collect()] == [1]
    assert wh.read("bronze.event").count() == 2  # bronze keeps it regardless

    write_map(spark, wh, [("app_user", "U1", 1), ("app_user", "NEW", 7)])
    assert run(spark, wh, landing, config) == 0  # no new file: the start-up pass retries the queue
    assert wh.read("silver.realtime_unresolved").count() == 0
    act = {r.one_id: r for r in wh.read("gold.realtime_activity").collect()}
    assert (act[7].last_event_id, act[7].events_today, act[7].last_search_keyword) == ("n1", 1, "房贷")
    assert [(r.segment_code, r.one_id) for r in wh.read("gold.realtime_segment_members").collect()] == [
        ("searched_mortgage_1h", 7)]


def test_crash_inside_a_batch_then_restart_loses_and_duplicates_nothing(spark, warehouse, landing, config):
    wh = warehouse
    write_map(spark, wh, [("app_user", "U1", 1), ("app_user", "U2", 2)])
    drop(landing, "a.csv", [ev("e1", minutes_ago=30), ev("e2", user_key="U2", minutes_ago=25)])
    assert run(spark, wh, landing, config) == 0

    drop(landing, "b.csv", [ev("e3", minutes_ago=10), ev("e4", user_key="U2", minutes_ago=9)])
    crashes = []

    def crash(batch_id):
        if not crashes:
            crashes.append(batch_id)
            raise RuntimeError("simulated crash after the bronze MERGE")

    job.HOOKS["after_bronze"] = crash
    try:
        assert run(spark, wh, landing, config) == stream.EXIT_FAILED
    finally:
        job.HOOKS.clear()
    assert crashes == [1]
    assert wh.read("bronze.event").count() == 4  # bronze committed, the rest of the batch did not

    drop(landing, "c.csv", [ev("e5", minutes_ago=2)])
    assert run(spark, wh, landing, config) == 0
    assert [r.event_id for r in wh.read("bronze.event").orderBy("event_id").collect()] == [
        "e1", "e2", "e3", "e4", "e5"]
    act = {r.one_id: (r.events_today, r.last_event_id) for r in wh.read("gold.realtime_activity").collect()}
    assert act == {1: (3, "e5"), 2: (2, "e4")}
    b = wh.read("silver.stream_batches").orderBy("batch_id").collect()
    assert [(r.batch_id, r.input_rows) for r in b] in ([(0, 2), (1, 2), (2, 1)], [(0, 2), (1, 3)])


def test_bad_config_is_refused_before_spark_starts(tmp_path):
    conf = tmp_path / "conf"
    (conf / "stream").mkdir(parents=True)
    (conf / "stream" / "realtime_segments.yaml").write_text(
        "realtime_segments:\n  - code: x\n    event_types: [teleport]\n", encoding="utf-8")
    cfg = PipelineConfig(conf_dir=str(conf))
    with pytest.raises(ConfigError, match="teleport"):
        load_settings(cfg)
    (conf / "stream" / "realtime_segments.yaml").write_text(
        "realtime_segments:\n  - code: x\n    keyword: [a]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="keyword"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="bootstrap"):
        load_settings(dataclasses.replace(cfg, stream=StreamConfig(format="kafka", kafka={"topic": "t"})))


def test_kafka_options_and_records_parse_like_files(spark, monkeypatch, tmp_path):
    from kequn.ingest.parse import validated_rows
    from kequn.stream.rows import EVENT, kafka_rows

    monkeypatch.setenv("KQ_SASL", "secret-jaas")
    cfg = PipelineConfig(conf_dir=str(tmp_path), stream=StreamConfig(format="kafka", kafka={
        "bootstrap.servers": "b1:9093", "topic": "events", "security.protocol": "SASL_SSL",
        "sasl.jaas.config": "${KQ_SASL}", "startingOffsets": "latest"}))
    opts = stream.kafka_options(load_settings(cfg))
    assert opts == {"subscribe": "events", "kafka.bootstrap.servers": "b1:9093",
                    "kafka.security.protocol": "SASL_SSL", "kafka.sasl.jaas.config": "secret-jaas",
                    "startingOffsets": "latest", "failOnDataLoss": "true"}
    assert stream.required_packages(cfg) == ["org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1"]
    assert stream.required_packages(PipelineConfig()) == []

    good = '{"event_id":"k1","source":"app","user_key":"U1","event_time":"2026-11-03T14:05:09","event_type":"login"}'
    records = spark.createDataFrame(
        [(None, bytearray(good.encode()), "events", 0, 41), (None, bytearray(b"{not json"), "events", 1, 7)],
        "key binary, value binary, topic string, partition int, offset long")
    out = validated_rows(kafka_rows(records), EVENT).orderBy("_line").collect()
    assert [(r._file, r._line, r.event_id, r._reason) for r in out] == [
        ("kafka:events/1/7", 7, None, "malformed_csv_record; empty_required:event_id; empty_required:source; "
                                     "empty_required:user_key; empty_required:event_time; empty_required:event_type"),
        ("kafka:events/0/41", 41, "k1", None)]
