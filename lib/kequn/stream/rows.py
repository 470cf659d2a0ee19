"""Raw event rows of one micro-batch, in the shape batch ingest's parser produces.

Whatever the source, the result has the ``event`` columns as strings plus ``_extra``,
``_corrupt``, ``_file``, ``_line``, ``_raw_fields`` (and ``_batch_dt``, set later to the
event's date), so ``kequn.ingest.parse.checked_rows``, ``bronze_rows`` and ``quarantine_rows``
apply unchanged.

- CSV files are parsed by batch ingest's own ``header_group_rows`` (header per file, so column order
  may differ; UTF-8 BOM; RFC 4180 multi-line quoting; physical line numbers; unknown
  columns into ``_extra``). A file lacking a contract column has every row quarantined with
  ``missing_required_column:<names>``: the stream cannot reject a file and then see it again.
- JSON-lines files: one object per line, every field read as a string.
- Kafka records: the value is one JSON object (or one CSV line in contract column order);
  ``_file`` is ``kafka:<topic>/<partition>/<offset>`` and ``_line`` the offset.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ..ingest.discover import header
from ..ingest.parse import CORRUPT, header_group_rows, value_col, with_line_numbers, with_raw_fields, with_record_ids
from ..landing import SOURCES

EVENT = SOURCES["event"]
COLUMNS = EVENT.column_names
MISSING = "_missing"


def string_schema(columns: list[str] = COLUMNS) -> str:
    """The explicit all-string schema events are read with, plus the corrupt-record column."""
    return ", ".join(f"`{c}` string" for c in columns) + f", `{CORRUPT}` string"


def _empty_extra() -> Column:
    return F.create_map().cast("map<string,string>")


def csv_rows(spark: SparkSession, files: list[str]) -> DataFrame:
    """Rows of CSV files, grouped by header and parsed as batch ingest parses them (``header_group_rows``)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for f in files:
        groups.setdefault(tuple(header(spark, f)), []).append(f)
    parts = []
    for i, (cols, group) in enumerate(groups.items()):
        missing = [c for c in COLUMNS if c not in cols]
        df = header_group_rows(spark, EVENT, group, list(cols), i)
        parts.append(df.withColumn(MISSING, F.lit(",".join(missing) if missing else None).cast("string")))
    # Every row keeps its raw text, as the JSON and Kafka rows do; a micro-batch is small.
    rows = with_record_ids(reduce(DataFrame.unionByName, parts))
    return with_line_numbers(with_raw_fields(rows, EVENT, list(groups)))


def json_rows(spark: SparkSession, files: list[str]) -> DataFrame:
    """Rows of JSON-lines files; ``_line`` counts records in file order."""
    df = (spark.read.schema(string_schema()).option("mode", "PERMISSIVE")
          .option("columnNameOfCorruptRecord", CORRUPT).option("encoding", "UTF-8")
          .json(files)
          .withColumn("_rid", F.monotonically_increasing_id())
          .withColumn("_file", F.col("_metadata.file_path")))
    w = Window.partitionBy("_file").orderBy("_rid")
    return df.select(
        *COLUMNS, _empty_extra().alias("_extra"), F.col(CORRUPT), "_file",
        F.lit(None).cast("date").alias("_batch_dt"), F.row_number().over(w).cast("long").alias("_line"),
        F.to_json(F.struct(*COLUMNS)).alias("_raw_fields"), F.lit(None).cast("string").alias(MISSING))


def kafka_rows(df: DataFrame, value_format: str = "json") -> DataFrame:
    """Rows of Kafka records (``key, value, topic, partition, offset, timestamp, ...``)."""
    value = F.col("value").cast("string")
    opts = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    parsed = (F.from_csv(value, string_schema(), opts) if value_format == "csv"
              else F.from_json(value, string_schema(), opts))
    return df.select(
        parsed.alias("_p"), value.alias("_value"), "topic", "partition", "offset"
    ).select(
        *[F.col(f"_p.`{c}`").alias(c) for c in COLUMNS], _empty_extra().alias("_extra"),
        # A record that is not an object at all (null value) counts as corrupt.
        F.coalesce(F.col(f"_p.{CORRUPT}"), F.when(F.col("_p").isNull(), F.coalesce(F.col("_value"), F.lit("")))
                   ).alias(CORRUPT),
        F.format_string("kafka:%s/%d/%d", "topic", "partition", "offset").alias("_file"),
        F.lit(None).cast("date").alias("_batch_dt"), F.col("offset").cast("long").alias("_line"),
        F.col("_value").alias("_raw_fields"), F.lit(None).cast("string").alias(MISSING))


def missing_columns_rule() -> Column:
    """A file's missing contract columns as a rule break (``validated_rows``' first rule)."""
    return F.when(F.col(MISSING).isNotNull(), F.concat(F.lit("missing_required_column:"), F.col(MISSING)))


def with_event_date(checked: DataFrame) -> DataFrame:
    """``_batch_dt`` of a streamed event = its own date (the processing date when unreadable)."""
    return (checked
            .withColumn("_batch_dt", F.coalesce(F.to_date(F.col(value_col("event_time"))), F.current_date()))
            .drop(MISSING))
