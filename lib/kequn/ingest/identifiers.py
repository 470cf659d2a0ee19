"""Normal forms of identifiers (landing contract, "Identifiers and how they are cleaned").

Each function takes a raw string Column and returns Columns built from Spark's
own functions, so they run inside the JVM at full speed and can be tested on a
few rows. ``*_normal`` is the value used for the token; ``*_reason`` is null
when the value is valid, else why it is not used for linking.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


def mobile_normal(raw: Column) -> Column:
    s = F.regexp_replace(raw, r"[\s\-]", "")
    # A +86/0086/86 prefix is a country code only when 11 digits starting with 1 follow it.
    return F.regexp_replace(s, r"^(\+86|0086|86)(?=1\d{10}$)", "")


def mobile_reason(raw: Column, normal: Column) -> Column:
    return (F.when(_blank(raw), F.lit("empty"))
            .when(~normal.rlike(r"^1[3-9]\d{9}$"), F.lit("bad_format")))


def id_check_digit(first17: Column) -> Column:
    """GB 11643 check character of the first 17 digits."""
    total = reduce(lambda a, b: a + b,
                   [F.substring(first17, i + 1, 1).cast("int") * w for i, w in enumerate(_ID_WEIGHTS)])
    return F.substring(F.lit(_ID_CHECK), F.pmod(total, F.lit(11)) + 1, 1)


def id_no_normal(raw: Column) -> Column:
    s = F.upper(F.regexp_replace(raw, r"\s", ""))
    # An old 15-digit number becomes 18: century 19 inserted before the birth year, check digit appended.
    first17 = F.concat(F.substring(s, 1, 6), F.lit("19"), F.substring(s, 7, 9))
    return F.when(s.rlike(r"^\d{15}$"), F.concat(first17, id_check_digit(first17))).otherwise(s)


def id_no_reason(raw: Column, n: Column) -> Column:
    return (F.when(_blank(raw), F.lit("empty"))
            .when(~n.rlike(r"^\d{17}[\dX]$"), F.lit("bad_format"))
            .when(F.substring(n, 18, 1) != id_check_digit(F.substring(n, 1, 17)), F.lit("bad_check_digit")))


def device_id_normal(raw: Column) -> Column:
    return F.lower(F.trim(raw))


def device_id_reason(raw: Column, n: Column) -> Column:
    return (F.when(_blank(raw), F.lit("empty"))
            .when(n.rlike(r"^[0\-]+$") | n.isin("unknown", "null", "none", "nil"), F.lit("placeholder")))


def plain_reason(raw: Column) -> Column:
    """cust_no and unionid are used as given: only an empty value is invalid."""
    return F.when(_blank(raw), F.lit("empty"))


def name_normal(raw: Column) -> Column:
    return F.regexp_replace(F.trim(raw), r"\s+", " ")


def card_no_normal(raw: Column) -> Column:
    return F.regexp_replace(raw, r"[\s\-]", "")


NORMAL = {"mobile": mobile_normal, "id_no": id_no_normal, "device_id": device_id_normal,
          "name": name_normal, "card_no": card_no_normal}
REASON = {"mobile": mobile_reason, "id_no": id_no_reason, "device_id": device_id_reason}
