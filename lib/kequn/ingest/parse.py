"""From CSV files to typed, validated, pseudonymised rows.

``raw_rows`` reads files (grouped by header, since column order may differ
between files) with every column as a string and keeps the record Spark could
not split (``_corrupt``) and the physical line each record starts on.
``validated_rows`` types the columns, checks enumerations and required values,
and collects every rule a row breaks in ``_reason``; ``pseudonymised`` adds the
tokens of personal data; ``with_bronze_values`` the rest of the bronze content
(identifier validity), ``checked_rows`` the three in order; ``bronze_rows``
selects it. All built-in functions.
"""
from __future__ import annotations

from functools import reduce
from typing import Optional, Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from ..landing import MASTER, Source
from . import identifiers as ids
from .pseudonym import token

CORRUPT = "_corrupt"
DECIMAL = "decimal(18,2)"


def header_group_rows(spark: SparkSession, source: Source, files: list[str], columns: list[str],
                      group: int = 0) -> DataFrame:
    """Rows of files sharing one header, all strings, with ``_file``, ``_batch_dt``, ``_extra``, ``_newlines``
    (for ``with_line_numbers``) and ``_group`` (for ``raw_fields``); record ids come from ``with_record_ids``."""
    schema = ", ".join(f"`{c}` string" for c in columns) + f", `{CORRUPT}` string"
    df = (spark.read.schema(schema)
          .option("header", True).option("multiLine", True).option("encoding", "UTF-8")
          .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
          .csv(files)
          .withColumn("_file", F.col("_metadata.file_path")))
    known = [c for c in source.column_names if c in columns]
    extra = [c for c in columns if c not in source.column_names]
    return df.select(
        *[F.col(f"`{c}`").alias(c) for c in known],
        *[F.lit(None).cast("string").alias(c) for c in source.column_names if c not in columns],
        (F.create_map(*[x for c in extra for x in (F.lit(c), F.col(f"`{c}`"))]) if extra
         else F.create_map().cast("map<string,string>")).alias("_extra"),
        F.col(CORRUPT),
        F.col("_file"),
        batch_date(F.col("_file")).alias("_batch_dt"),
        line_breaks(columns).alias("_newlines"),
        F.lit(group).alias("_group"),
    )


def batch_date(file: Column) -> Column:
    """The batch date of a landing file ``<landing>/<source>/dt=YYYY-MM-DD/<name>``: its folder's name.

    Cut out of the path rather than matched with a regular expression: 2 s of a 16M-row holdings load.
    """
    return F.substring(F.substring_index(file, "/", -2), 4, 10).try_cast("date")


def line_breaks(columns: list[str]) -> Column:
    """Line breaks inside the record's fields (quoted, multi-line values), or in its unsplit text."""
    fields = [F.col(f"`{c}`") for c in columns]
    text = F.coalesce(F.col(CORRUPT), F.concat_ws("\u0001", *fields))
    count = F.size(F.split(text, "\n")) - 1
    # Almost no record holds one: looking for it is cheaper than splitting every record's text.
    anywhere = reduce(lambda a, b: a | b, [F.coalesce(f.contains("\n"), F.lit(False)) for f in fields],
                      F.col(CORRUPT).isNotNull())
    return F.when(anywhere, count).otherwise(0).cast("int")


def raw_fields(source: Source, header_groups: Sequence[Sequence[str]]) -> Column:
    """The record's fields as CSV text in its file's column order (``_group`` indexes ``header_groups``)."""
    def field(c: str) -> Column:
        return F.col(c) if c in source.column_names else F.col("_extra")[c]

    out = None
    for i, cols in enumerate(header_groups):
        text = F.to_csv(F.struct(*[field(c).alias(c) for c in cols]))
        out = F.when(F.col("_group") == i, text) if out is None else out.when(F.col("_group") == i, text)
    return out if out is not None else F.lit(None).cast("string")


def with_record_ids(rows: DataFrame) -> DataFrame:
    """``rows`` (header groups, unioned) with ``_rid``: multiLine reads each file whole in one task, so a
    file's records get consecutive ids.

    Numbered above the union, not in each group: a projection that is not deterministic stays where
    it is, so the validation and pseudonymisation written over these rows run once, not copied into
    every header group. A 90-day load of card_account had 25 groups; its rows took 5.6 s to validate
    and cache with the ids inside the groups and 1.8 s with them here.
    """
    return rows.withColumn("_rid", F.monotonically_increasing_id())


def raw_rows(spark: SparkSession, source: Source, files_by_header: dict[tuple[str, ...], list[str]]) -> DataFrame:
    """Rows of every file, read per header (column order may differ between files), with ``_rid`` and
    ``_group``, the index of the row's header in ``files_by_header`` (for ``with_raw_fields``)."""
    groups = [header_group_rows(spark, source, files, list(cols), i)
              for i, (cols, files) in enumerate(files_by_header.items())]
    return with_record_ids(reduce(DataFrame.unionByName, groups))


def with_raw_fields(rows: DataFrame, source: Source, headers: Sequence[Sequence[str]]) -> DataFrame:
    """``rows`` (of ``raw_rows`` over ``headers``, in order) with ``_raw_fields`` in place of ``_group``.

    Batch ingest calls it on the bad rows alone, for the quarantine. Computed for every row, the text
    cost 7 s of a 16M-row holdings load; written over the validated rows, with one branch per header
    (20 in that load), it made their generated code too large to compile and the validation 2.5
    times slower.
    """
    return rows.withColumn("_raw_fields", raw_fields(source, headers)).drop("_group")


def file_reason_counts(df: DataFrame, *by: str) -> DataFrame:
    """One row per file, ``by`` columns (functions of the file, such as ``_batch_dt``) and broken-rule
    text (``_reason``, null for good rows) of validated rows: ``_rows``, the first record id and the
    records holding line breaks.

    Small (a file has few distinct reasons), and it serves both the per-batch tally and the line
    numbers (``line_breaks_by_file``): one pass over the rows instead of two (7 s of a 16M-row
    holdings load went to the second).
    """
    return df.groupBy("_file", *by, "_reason").agg(
        F.count(F.lit(1)).alias("_rows"),
        F.min("_rid").alias("_first"),
        F.collect_list(F.when(F.col("_newlines") > 0, F.struct("_rid", "_newlines"))).alias("_breaks"))


def line_breaks_by_file(counts: DataFrame) -> DataFrame:
    """``file_reason_counts`` summed per file: its first record id, and the records holding line breaks."""
    return counts.groupBy("_file").agg(F.min("_first").alias("_first"),
                                       F.flatten(F.collect_list("_breaks")).alias("_breaks"))


def file_line_breaks(df: DataFrame) -> DataFrame:
    """One row per file of ``raw_rows``' output: its first record id, and the records holding line breaks."""
    if "_reason" not in df.columns:
        df = df.withColumn("_reason", F.lit(None).cast("string"))
    return line_breaks_by_file(file_reason_counts(df))


def line_spans(files: DataFrame) -> DataFrame:
    """Per file of ``line_breaks_by_file``, the stretches of record ids that share one count of line
    breaks before them: ``_file``, ``_first``, ``_after`` and ``_upto`` (the ids ``_after < _rid <= _upto``,
    null for open ends) and ``_offset``, the line breaks in the file's records before the stretch.

    A file without a break is one stretch; a file whose k records hold breaks is k + 1.
    """
    ordered = F.array_sort("_breaks")  # structs order by their first field, the record id
    before_first = files.select("_file", "_first", F.lit(None).cast("long").alias("_after"),
                                F.get(ordered, 0)["_rid"].alias("_upto"), F.lit(0).cast("long").alias("_offset"))
    w = Window.partitionBy("_file").orderBy("_i")
    after_each = (files.select("_file", "_first", F.posexplode(ordered).alias("_i", "_b"))
                  .select("_file", "_first", F.col("_b._rid").alias("_after"),
                          F.lead(F.col("_b._rid")).over(w).alias("_upto"),
                          F.sum(F.col("_b._newlines").cast("long")).over(w.rowsBetween(Window.unboundedPreceding, 0))
                          .alias("_offset")))
    return before_first.unionByName(after_each)


def with_line_numbers(df: DataFrame, files: Optional[DataFrame] = None) -> DataFrame:
    """``raw_rows`` with ``_line``, the physical line each record starts on, in place of ``_rid``/``_newlines``.

    A record starts on line 2 (after the header) plus the records and embedded line breaks
    before it in its file. A window over each file would shuffle and sort every row; instead
    the few stretches of each file (``line_spans`` of ``file_line_breaks``, given or computed
    here) are broadcast back, since a file's records carry consecutive ids.

    A join with a range condition, not a lambda over each file's breaks: a lambda cannot be
    compiled, and Spark then runs the whole projection it sits in, the typing of every column
    with it, interpreted. Bronze rows of 16M holdings took 35 s that way.
    """
    files = files if files is not None else file_line_breaks(df)
    spans = line_spans(files).withColumnRenamed("_file", "_span_file")
    inside = ((F.col("_file") == F.col("_span_file"))
              & (F.col("_after").isNull() | (F.col("_rid") > F.col("_after")))
              & (F.col("_upto").isNull() | (F.col("_rid") <= F.col("_upto"))))
    return (df.join(F.broadcast(spans), inside)
            .withColumn("_line", F.col("_rid") - F.col("_first") + 2 + F.col("_offset"))
            .drop("_rid", "_newlines", "_first", "_span_file", "_after", "_upto", "_offset"))


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


DATE_SHAPE = r"^\d{4}-\d{2}-\d{2}$"
TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,3})?$"


def typed(c: Column, type_: str) -> Column:
    t = F.trim(c)
    # Dates and times: the contract's shapes checked by a pattern, then Spark's own cast (which alone
    # would also take other shapes). Parsing with a format was 4 s more per timestamp column of 16M rows.
    if type_ == "date":
        return F.when(t.rlike(DATE_SHAPE), t.try_cast("date"))
    if type_ == "timestamp":
        return F.when(t.rlike(TIMESTAMP_SHAPE), t.try_cast("timestamp"))
    if type_ == "decimal":
        return t.try_cast(DECIMAL)
    if type_ == "int":
        return t.try_cast("int")
    if type_ == "boolean":
        return F.when(F.lower(t) == "true", True).when(F.lower(t) == "false", False)
    return F.when(~_blank(c), t)


def value_col(name: str) -> str:
    """The column holding ``name``'s value as bronze holds it (``with_typed_values``, ``with_bronze_values``)."""
    return f"__v_{name}"


def with_typed_values(raw: DataFrame, source: Source) -> DataFrame:
    """``raw`` with each column's typed value (``typed``) in ``value_col``, personal data aside (bronze holds
    its token): typed once, for the checks and for the bronze rows alike."""
    return raw.select("*", *[typed(F.col(c.name), c.type).alias(value_col(c.name))
                             for c in source.columns if c.name not in source.pii])


def rule_breaks(source: Source) -> list[Column]:
    """One Column per rule, each null when the row keeps the rule, else the rule's name; over
    ``with_typed_values``' rows."""
    checks = [F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed_csv_record"))]
    for col in source.columns:
        c = F.col(col.name)
        if col.required_value:
            checks.append(F.when(_blank(c), F.lit(f"empty_required:{col.name}")))
        if col.type != "string":
            value = F.col(value_col(col.name))
            checks.append(F.when(~_blank(c) & value.isNull(), F.lit(f"bad_{col.type}:{col.name}")))
        if col.enum:
            checks.append(F.when(~_blank(c) & ~F.trim(c).isin(*col.enum), F.lit(f"bad_enum:{col.name}")))
    return checks


def validated_rows(raw: DataFrame, source: Source, first_rules: Sequence[Column] = ()) -> DataFrame:
    """``raw`` with its typed values (``with_typed_values``) and ``_reason``: every rule the row breaks
    (``first_rules``, then the source's), or null."""
    raw = with_typed_values(raw, source)
    # concat_ws skips the nulls (rules kept): the names of the broken rules in order, or "". The same
    # text as joining a compacted array, without building two arrays per row: validating 3.2M holdings
    # took 8.2 s that way and 2.3 s this way.
    reasons = F.concat_ws("; ", *first_rules, *rule_breaks(source))
    # Where the rows already hold their raw text (the stream's), it serves only the quarantine: kept
    # for bad rows alone, so good rows carry no copy of themselves through caches and shuffles.
    out = raw.withColumn("_reason", F.when(reasons != "", reasons))
    if "_raw_fields" in raw.columns:
        out = out.withColumn("_raw_fields", F.when(F.col("_reason").isNotNull(), F.col("_raw_fields")))
    return out


def _letters(hex_col: Column) -> Column:
    # Hex digests as letters a-p: no run of digits that a PII scanner could mistake for a phone number.
    return F.translate(hex_col, "0123456789", "ghijklmnop")


def normal_col(name: str) -> str:
    return f"__n_{name}"


def token_col(name: str) -> str:
    return f"__t_{name}"


def pseudonymised(df: DataFrame, source: Source, key: bytes) -> DataFrame:
    """Adds the normal form and the token of each personal-data and identifier column.

    Two projections, so each value is normalised and hashed once however many
    expressions (bronze column, vault row, masked raw text) use it.
    """
    normalised = [c for c in source.column_names if c in ids.NORMAL]
    df = df.select("*", *[ids.NORMAL[c](F.col(c)).alias(normal_col(c)) for c in normalised])
    return df.select("*", *[token(key, p, F.col(normal_col(p))).alias(token_col(p)) for p in source.pii])


def with_bronze_values(df: DataFrame, source: Source) -> DataFrame:
    """Pseudonymised rows with every content column of their bronze row (``bronze_content``) computed in
    ``value_col``: the device id's normal form, and a master's identifier validity.

    Batch ingest computes them in the pass that holds the parsed rows, so the bronze rows are a
    projection of held values: the write no longer types every date, time and amount again (about
    2 s of 5.4M transactions).
    """
    values: dict[str, Column] = {}
    for col in source.columns:
        c = F.col(col.name)
        if col.name == "device_id":
            values[value_col("device_id")] = F.when(F.col(value_col("device_id")).isNotNull(),
                                                    F.col(normal_col("device_id")))
        if col.name in ids.REASON and source.kind == "master":
            reason = ids.REASON[col.name](c, F.col(normal_col(col.name)))
            if col.name == "id_no" and "id_type" in source.column_names:
                not_id_card = ~_blank(c) & (F.trim(F.col("id_type")) != "ID_CARD")
                reason = F.when(not_id_card, F.lit("not_id_card")).otherwise(reason)
            values[value_col(f"{col.name}_valid")] = reason.isNull()
            values[value_col(f"{col.name}_invalid_reason")] = reason
    return df.withColumns(values)


def checked_rows(raw: DataFrame, source: Source, key: bytes, first_rules: Sequence[Column] = ()) -> DataFrame:
    """``raw`` validated (``first_rules``, then the source's), pseudonymised and with its bronze values: what
    batch ingest holds and the stream persists, and what ``bronze_rows`` and ``quarantine_rows`` read."""
    return with_bronze_values(pseudonymised(validated_rows(raw, source, first_rules), source, key), source)


def bronze_rows(df: DataFrame, source: Source) -> DataFrame:
    """Good rows (of ``checked_rows``) in bronze form: typed columns, tokens instead of personal
    data, identifier validity."""
    body = df.select(*bronze_content(source), "_extra", "_batch_dt", "_file", "_line")
    content = [c for c in body.columns if not c.startswith("_")]
    return (body
            .withColumn("_row_hash", row_hash(source, content))
            .withColumn("_ingested_at", F.current_timestamp()))


def bronze_content(source: Source) -> list[Column]:
    """The content columns of a bronze row (``bronze_rows``), over ``checked_rows``: what
    ``_row_hash`` is taken over."""
    out: list[Column] = []
    for col in source.columns:
        if col.name in source.pii:
            out.append(F.col(token_col(col.name)).alias(f"{col.name}_token"))
        else:
            out.append(F.col(value_col(col.name)).alias(col.name))
        if col.name in ids.REASON and source.kind == "master":
            out += [F.col(value_col(f"{col.name}_{x}")).alias(f"{col.name}_{x}") for x in ("valid", "invalid_reason")]
    return out


def raw_of_bad_rows(df: DataFrame, source: Source) -> DataFrame:
    """``df`` (``checked_rows``) with the source's raw text kept for bad rows alone, which the
    quarantine quotes: good rows hold only what bronze writes, so held rows take less memory."""
    bad = F.col("_reason").isNotNull()
    return df.withColumns({c: F.when(bad, F.col(c)) for c in source.column_names})


def merged_on_content(source: Source) -> bool:
    """Whether bronze keeps one row per distinct delivered content of a key: every master-data
    version, and every delivery of a touch (re-delivered when opened). Their ``_row_hash`` is part
    of the MERGE key."""
    return source.kind == MASTER or source.name == "touch"


def row_hash(source: Source, content: list[str]) -> Column:
    """``_row_hash`` of a bronze row from its typed content columns.

    Where it is part of the MERGE key (``merged_on_content``) it is the SHA-256 of the row as JSON,
    and must stay so: another definition would load rows already in bronze again. For the other
    facts it only orders repeated deliveries of one key within a load, so a 64-bit hash serves: the
    SHA-256 of JSON took 25 s of a 16M-row holdings load and was 80 % of the table's bytes.
    """
    if merged_on_content(source):
        return _letters(F.sha2(F.to_json(F.struct(*content)), 256))
    return letters64(F.xxhash64(*content))


def letters64(h: Column) -> Column:
    """A 64-bit value as 16 letters, one per 4 bits, high bits first: 0 is ``a``, 15 is ``p``.

    Each half's eight nibbles are spread into the low nibbles of eight bytes by shifts and masks, the
    bytes lifted to ``a`` (0x61) and read as ASCII. All arithmetic: 1.6 s for 16M rows, where the hex
    text of the hash mapped to letters by ``translate`` took 6.4 s (a map lookup per character).
    ``_letters`` still spells the SHA-256 texts: those values are merge keys and tokens already written.
    """
    def spread(x: Column) -> Column:
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F)):
            x = x.bitwiseOR(F.shiftleft(x, shift)).bitwiseAND(F.lit(mask))
        return F.unhex(F.hex(x + F.lit(0x6161616161616161)))   # 8 bytes, big-endian

    return F.decode(F.concat(spread(F.shiftrightunsigned(h, 32)), spread(h.bitwiseAND(F.lit(0xFFFFFFFF)))),
                    "US-ASCII")


VAULT_SCHEMA = "token string, pii_type string, value string"


def vault_rows(df: DataFrame, source: Source) -> list[DataFrame]:
    """(token, pii_type, value) for every personal-data value: the only place clear values live."""
    return [df.select(F.col(token_col(p)).alias("token"), F.lit(p).alias("pii_type"),
                      F.col(normal_col(p)).alias("value")).where("token IS NOT NULL")
            for p in source.pii]


def masked_raw(source: Source) -> Column:
    """The raw record with every personal-data field replaced by its token."""
    raw = F.coalesce(F.col(CORRUPT), F.col("_raw_fields"))
    for pii in source.pii:
        # Replacing an empty search string leaves the text as it is, so no branch is needed.
        raw = F.replace(raw, F.coalesce(F.col(pii), F.lit("")), F.coalesce(F.col(token_col(pii)), F.lit("")))
    # A record Spark could not split may have shifted personal data into other fields: mask what looks like it.
    return F.when(F.col(CORRUPT).isNull(), raw).otherwise(
        F.regexp_replace(F.regexp_replace(raw, r"\d{6,}[\dXx]*", "#"), r"\p{IsHan}", "*"))


def quarantine_rows(df: DataFrame, source: Source, as_of: str) -> DataFrame:
    """Bad rows with file, line, masked raw text and reason; ``_verbatim`` goes to the vault only."""
    raw_id = _letters(F.sha2(F.concat_ws("|", F.col("_file"), F.col("_line").cast("string")), 256))
    return df.select(
        F.lit(source.name).alias("source"), F.col("_file").alias("file"), F.col("_line").alias("line"),
        masked_raw(source).alias("raw"), F.col("_reason").alias("reason"),
        F.concat(F.lit("raw_"), F.substring(raw_id, 1, 32)).alias("raw_token"),
        F.col("_batch_dt").alias("batch_dt"), F.lit(as_of).cast("date").alias("as_of"),
        F.current_timestamp().alias("quarantined_at"),
        F.coalesce(F.col(CORRUPT), F.col("_raw_fields")).alias("_verbatim"))
