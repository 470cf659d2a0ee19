"""Real-time tracking: behaviour events as they arrive into ``bronze.event`` and ``gold.realtime_activity``.

``run_stream`` starts a Structured Streaming query over new files in ``<landing>/stream/event/``
(CSV with header, or JSON lines) or over a Kafka topic, as ``conf/pipeline.yaml`` ``stream:`` says,
and hands every micro-batch to :class:`kequn.stream.job.MicroBatch`, which validates,
pseudonymises and quarantines exactly as batch ingest does (it calls the same functions), MERGEs
into ``bronze.event`` on event_id, and keeps the real-time tables:

- ``gold.realtime_activity``: one row per one_id, latest behaviour (see docs/stream.md);
- ``gold.realtime_segment_members``: people in the live segments of ``conf/stream/realtime_segments.yaml``;
- ``silver.realtime_unresolved``: events whose user is not in ``gold.one_id_map`` yet, retried each batch;
- ``silver.stream_batches``: one row of metrics per micro-batch.

Public: :func:`run_stream`, :func:`required_packages`, :func:`checkpoint_path`.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Optional

from pyspark.sql import DataFrame, SparkSession

from .. import versions
from ..config import ConfigError, PipelineConfig
from ..tables import Warehouse
from .job import ACTIVITY, BATCHES, CHECKPOINT, MEMBERS, UNRESOLVED, MicroBatch
from .settings import StreamSettings, load_settings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FILE_SCHEMA = "path string, modificationTime timestamp, length bigint, content binary"
GLOBS = {"csv": "*.csv", "json": "{*.json,*.jsonl}"}
# Options Spark's Kafka source takes itself; any other key of stream.kafka is a consumer setting.
KAFKA_SOURCE_OPTIONS = {"subscribe", "subscribePattern", "assign", "startingOffsets", "startingOffsetsByTimestamp",
                        "startingTimestamp", "failOnDataLoss", "maxOffsetsPerTrigger", "minOffsetsPerTrigger",
                        "maxTriggerDelay", "minPartitions", "groupIdPrefix", "includeHeaders",
                        "kafkaConsumer.pollTimeoutMs", "fetchOffset.numRetries", "fetchOffset.retryIntervalMs"}
KAFKA_OWN_KEYS = {"topic", "value.format"}

__all__ = ["run_stream", "required_packages", "checkpoint_path", "ACTIVITY", "MEMBERS", "UNRESOLVED", "BATCHES"]


def required_packages(config: PipelineConfig) -> list[str]:
    """JVM packages the stream needs beyond the session's defaults: the Kafka connector, for Kafka only."""
    return [versions.KAFKA_PACKAGE] if config.stream.format == "kafka" else []


def checkpoint_path(wh: Warehouse) -> str:
    return f"{wh.root}/{CHECKPOINT}"


def kafka_options(settings: StreamSettings) -> dict[str, str]:
    """``stream.kafka`` as Spark Kafka source options: ``topic`` -> ``subscribe``; source options as
    they are; everything else (``bootstrap.servers``, ``security.protocol``, ``sasl.*``, ``ssl.*``)
    prefixed ``kafka.`` for the consumer. ``${ENV}`` values were expanded when settings were loaded."""
    out = {"startingOffsets": "earliest", "failOnDataLoss": "true"}
    for k, v in settings.kafka.items():
        if k == "topic":
            out["subscribe"] = v
        elif k in KAFKA_OWN_KEYS:
            continue
        elif k in KAFKA_SOURCE_OPTIONS or k.startswith("kafka."):
            out[k] = v
        else:
            out[f"kafka.{k}"] = v
    if settings.options.max_offsets_per_trigger and "maxOffsetsPerTrigger" not in out:
        out["maxOffsetsPerTrigger"] = str(settings.options.max_offsets_per_trigger)
    return out


def source_stream(spark: SparkSession, landing: str, settings: StreamSettings) -> DataFrame:
    """The streaming DataFrame the query reads.

    Files: Spark's file source in ``binaryFile`` format over ``<landing>/stream/event/`` (sub-folders
    included, hidden ``.``/``_`` files ignored), selecting path and modification time only, so no
    content is read here; the checkpoint records which files each micro-batch took, and the batch
    parses them with the explicit all-string schema (see ``kequn.stream.rows``).
    Kafka: Spark's Kafka source with the options of :func:`kafka_options`.
    """
    if settings.format == "kafka":
        reader = spark.readStream.format("kafka")
        for k, v in kafka_options(settings).items():
            reader = reader.option(k, v)
        return reader.load()
    path = f"{landing.rstrip('/')}/stream/event"
    return (spark.readStream.format("binaryFile").schema(FILE_SCHEMA)
            .option("pathGlobFilter", GLOBS[settings.format]).option("recursiveFileLookup", "true")
            .option("maxFilesPerTrigger", settings.options.max_files_per_trigger)
            .load(path).select("path", "modificationTime", "length"))


def _kafka_available(spark: SparkSession) -> bool:
    try:
        spark.sparkContext._jvm.java.lang.Class.forName("org.apache.spark.sql.kafka010.KafkaSourceProvider")
        return True
    except Exception:  # noqa: BLE001 - py4j wraps ClassNotFoundException
        return False


def run_stream(spark: SparkSession, wh: Warehouse, landing: str, config: PipelineConfig,
               available_now: bool = False, trigger_seconds: Optional[int] = None) -> int:
    """Run the real-time query; returns an exit code (0 ok, 1 failed, 2 configuration).

    ``available_now``: process every file/offset present at start (in micro-batches of at most
    ``max_files_per_trigger`` files), then return. Otherwise run every ``trigger_seconds``
    (default ``stream.trigger_seconds``) until stopped (SIGTERM / Ctrl-C stop it cleanly between
    batches; a kill at any other moment is recovered from the checkpoint on the next start).
    """
    from ..ingest.pseudonym import PseudonymKeyMissing, load_key

    try:
        settings = load_settings(config, trigger_seconds)
        key = load_key(config.pseudonym)
    except (ConfigError, PseudonymKeyMissing) as e:
        log.error("stream: %s", e)
        return EXIT_USAGE
    if settings.format == "kafka" and not _kafka_available(spark):
        log.error("stream: stream.format is kafka but the Kafka connector is not on the classpath; start the "
                  "session with build_session(..., extra_packages=kequn.stream.required_packages(config)) "
                  "(jobs/stream.py does) or spark-submit --packages %s", versions.KAFKA_PACKAGE)
        return EXIT_USAGE

    checkpoint = checkpoint_path(wh)
    batch = MicroBatch(wh, settings, key, checkpoint)
    # Events queued while identity was behind: resolve them against today's map before new ones.
    batch.drain_queue()
    map_version = wh.version("gold.one_id_map")

    writer = (source_stream(spark, landing, settings).writeStream.queryName("kequn_stream_event")
              .foreachBatch(batch).option("checkpointLocation", checkpoint))
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(
        processingTime=f"{settings.trigger_seconds} seconds")
    started = time.time()
    log.info("stream: %s source, %s, checkpoint %s, %d real-time segment(s)",
             settings.format, "available-now" if available_now else f"every {settings.trigger_seconds}s",
             checkpoint, len(settings.segments))
    query = writer.start()

    stop = threading.Event()
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            restore[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        while query.isActive and not stop.is_set():
            query.awaitTermination(max(1, settings.trigger_seconds))
            if not available_now and query.isActive:
                # No new events means no micro-batch: retry the queue when identity published a new map.
                v = wh.version("gold.one_id_map")
                if v != map_version:
                    map_version = v
                    batch.drain_queue()
        if stop.is_set() and query.isActive:
            log.info("stream: stop requested; stopping after the current micro-batch")
            query.stop()
        query.awaitTermination()
    except Exception as e:  # noqa: BLE001 - StreamingQueryException: the batch is replayed on restart
        log.error("stream: query failed (%d batch(es) committed this run; restart resumes from the checkpoint): %s",
                  batch.batches, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return EXIT_FAILED
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
    log.info("stream: stopped after %d micro-batch(es) in %.1fs", batch.batches, time.time() - started)
    return EXIT_OK
