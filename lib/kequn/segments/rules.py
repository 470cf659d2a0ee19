"""Segment rules: a small boolean SQL over tag codes, parsed and type-checked without Spark.

Grammar (keywords case-insensitive)::

    expr      := or
    or        := and ("OR" and)*
    and       := not ("AND" not)*
    not       := "NOT" not | predicate
    predicate := "(" expr ")"
               | operand [ cmp operand
                         | ["NOT"] "IN" "(" literal ("," literal)* ")"
                         | ["NOT"] "BETWEEN" operand "AND" operand
                         | ["NOT"] "LIKE" string
                         | "IS" ["NOT"] "NULL" ]
    operand   := tag_code | number | 'string' | TRUE | FALSE
    cmp       := = | == | != | <> | < | <= | > | >=

A bare operand used as a condition must be a boolean tag. ``tag IS NOT NULL``
means "has any value". :func:`parse_rule` returns a :class:`Rule` holding the
tag codes it reads and the rule rendered back as Spark SQL with every tag code
quoted, so nothing but the grammar above reaches Spark.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "LIKE"}
CMP = {"=", "==", "!=", "<>", "<", "<=", ">", ">="}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<op><=|>=|<>|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)

# value_type of the tag catalog -> kind used for checks -> Spark type used for the cast.
_KINDS = {
    "int": "numeric", "integer": "numeric", "bigint": "numeric", "long": "numeric", "count": "numeric",
    "smallint": "numeric", "double": "numeric", "float": "numeric", "number": "numeric",
    "numeric": "numeric", "amount": "numeric", "money": "numeric", "decimal": "numeric",
    "bool": "boolean", "boolean": "boolean",
    "date": "date", "timestamp": "date",
}
_SPARK_TYPES = {
    "int": "bigint", "integer": "bigint", "bigint": "bigint", "long": "bigint", "count": "bigint",
    "smallint": "bigint", "double": "double", "float": "double", "number": "double", "numeric": "double",
    "amount": "decimal(38,6)", "money": "decimal(38,6)", "decimal": "decimal(38,6)",
    "bool": "boolean", "boolean": "boolean", "date": "date", "timestamp": "timestamp",
}


def kind_of(value_type: Optional[str]) -> str:
    """numeric | boolean | date | string (anything unknown is compared as a string)."""
    vt = (value_type or "string").strip().lower()
    vt = vt.split("(", 1)[0]  # decimal(18,2) -> decimal
    return _KINDS.get(vt, "string")


def spark_type_of(value_type: Optional[str]) -> str:
    vt = (value_type or "string").strip().lower().split("(", 1)[0]
    return _SPARK_TYPES.get(vt, "string")


class RuleError(ValueError):
    """A rule is not valid: syntax, unknown tag, or a comparison of the wrong types."""


@dataclass(frozen=True)
class Rule:
    text: str
    tags: tuple[str, ...]
    sql: str


@dataclass(frozen=True)
class _Tok:
    kind: str   # number | string | op | punct | ident | kw | end
    value: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RuleError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "ident" and val.upper() in KEYWORDS:
            out.append(_Tok("kw", val.upper(), pos))
        elif kind != "ws":
            out.append(_Tok(kind, val, pos))
        pos = m.end()
    out.append(_Tok("end", "", pos))
    return out


class _Parser:
    """Recursive descent; each method returns (sql, kind) where kind is the operand kind or 'cond'."""

    def __init__(self, text: str, catalog: Optional[dict[str, str]]):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.catalog = catalog
        self.tags: list[str] = []
        self.problems: list[str] = []  # type / unknown-tag problems (syntax errors raise at once)

    # -------------------------------------------------------------- helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        t = self.peek()
        self.i += 1
        return t

    def accept_kw(self, *kws: str) -> Optional[str]:
        t = self.peek()
        if t.kind == "kw" and t.value in kws:
            self.i += 1
            return t.value
        return None

    def expect(self, kind: str, value: Optional[str] = None) -> _Tok:
        t = self.take()
        if t.kind != kind or (value is not None and t.value != value):
            want = value or kind
            got = t.value or "end of rule"
            raise RuleError(f"expected {want!r} at position {t.pos}, got {got!r}")
        return t

    # -------------------------------------------------------------- grammar
    def parse(self) -> str:
        sql = self.expr()
        if self.peek().kind != "end":
            t = self.peek()
            raise RuleError(f"unexpected {t.value!r} at position {t.pos}")
        return sql

    def expr(self) -> str:
        parts = [self.conj()]
        while self.accept_kw("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def conj(self) -> str:
        parts = [self.neg()]
        while self.accept_kw("AND"):
            parts.append(self.neg())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def neg(self) -> str:
        if self.accept_kw("NOT"):
            return f"(NOT {self.neg()})"
        return self.predicate()

    def predicate(self) -> str:
        t = self.peek()
        if t.kind == "punct" and t.value == "(":
            self.take()
            inner = self.expr()
            self.expect("punct", ")")
            return inner
        left, lkind, lname = self.operand()
        nxt = self.peek()
        if nxt.kind == "op":
            op = self.take().value
            op = {"==": "=", "!=": "<>"}.get(op, op)
            right, rkind, rname = self.operand()
            self.check_pair(lkind, lname, rkind, rname, op)
            return f"({left} {op} {right})"
        negate = ""
        if nxt.kind == "kw" and nxt.value == "NOT" and self.peek(1).kind == "kw" and self.peek(1).value in ("IN", "BETWEEN", "LIKE"):
            self.take()
            negate = "NOT "
        if self.accept_kw("IN"):
            self.expect("punct", "(")
            items = []
            while True:
                sql, kind, name = self.operand()
                if name is not None:
                    raise RuleError(f"IN list of {lname or left} must hold literals, got tag {name!r}")
                self.check_pair(lkind, lname, kind, None, "IN")
                items.append(sql)
                if self.peek().kind == "punct" and self.peek().value == ",":
                    self.take()
                    continue
                self.expect("punct", ")")
                break
            return f"({left} {negate}IN ({', '.join(items)}))"
        if self.accept_kw("BETWEEN"):
            lo, lok, lon = self.operand()
            self.expect("kw", "AND")
            hi, hik, hin = self.operand()
            self.check_pair(lkind, lname, lok, lon, "BETWEEN")
            self.check_pair(lkind, lname, hik, hin, "BETWEEN")
            return f"({left} {negate}BETWEEN {lo} AND {hi})"
        if self.accept_kw("LIKE"):
            pat, pk, pn = self.operand()
            if pk != "string" or pn is not None:
                raise RuleError(f"LIKE needs a string literal pattern at position {nxt.pos}")
            if lkind not in ("string", None):
                self.problems.append(f"LIKE on {lkind} tag {lname!r}")
            return f"({left} {negate}LIKE {pat})"
        if self.accept_kw("IS"):
            neg = "NOT " if self.accept_kw("NOT") else ""
            self.expect("kw", "NULL")
            return f"({left} IS {neg}NULL)"
        # a bare operand as a condition
        if lname is None:
            if lkind == "boolean":
                return left
            raise RuleError(f"literal {left} used as a condition at position {t.pos}")
        if lkind not in ("boolean", None):
            self.problems.append(f"tag {lname!r} is {lkind}, not boolean, but is used as a condition "
                                 f"(write e.g. `{lname} IS NOT NULL`)")
        return f"({left} = true)" if lkind == "boolean" else left

    def operand(self) -> tuple[str, Optional[str], Optional[str]]:
        """(sql, kind, tag_name or None); kind None means an unknown tag (already reported)."""
        t = self.take()
        if t.kind == "number":
            return t.value, "numeric", None
        if t.kind == "string":
            return t.value, "string", None
        if t.kind == "kw" and t.value in ("TRUE", "FALSE"):
            return t.value.lower(), "boolean", None
        if t.kind == "ident":
            code = t.value
            if code not in self.tags:
                self.tags.append(code)
            if self.catalog is None:
                return f"`{code}`", None, code
            if code not in self.catalog:
                self.problems.append(f"unknown tag {code!r}")
                return f"`{code}`", None, code
            return f"`{code}`", kind_of(self.catalog[code]), code
        raise RuleError(f"expected a tag code or a literal at position {t.pos}, got {t.value or 'end of rule'!r}")

    def check_pair(self, lk, ln, rk, rn, op) -> None:
        if lk is None or rk is None:
            return  # unknown tag: reported once already
        if ln is None and rn is None:
            return
        string_literal_vs_date = ((lk, rk) == ("date", "string") and rn is None) or \
            ((lk, rk) == ("string", "date") and ln is None)
        ok = lk == rk or string_literal_vs_date
        if not ok:
            who = " and ".join(f"{k} {'tag ' + repr(n) if n else 'literal'}" for k, n in ((lk, ln), (rk, rn)))
            self.problems.append(f"{op} compares {who}")


def parse_rule(text: str, catalog: Optional[dict[str, str]] = None) -> tuple[Rule, list[str]]:
    """Parse ``text``; with ``catalog`` (tag_code -> value_type) also check tags and types.

    Raises :class:`RuleError` on a syntax error; returns the rule and the list of
    catalog problems (unknown tags, comparisons of the wrong types), empty when fine.
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleError("empty rule")
    p = _Parser(text, catalog)
    sql = p.parse()
    return Rule(text=text, tags=tuple(p.tags), sql=sql), p.problems
