"""The landing contract (shared/contract/landing.md) as data.

Sources, their keys, columns, types and enumerations; which columns are personal
data; which are identifiers. Ingest validates against this; identity, tags and
the generator read it rather than repeating column lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

MASTER = "master"
FACT = "fact"
SNAPSHOT = "snapshot"

# Personal data: pseudonymised at the door, clear values only in the vault.
PII_COLUMNS = ("name", "id_no", "mobile", "card_no")

# Identifier types used for linking, in the order identity reports them.
IDENTIFIER_TYPES = ("mobile", "id_no", "device_id", "cust_no", "unionid")


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"          # string | date | timestamp | decimal | boolean | int
    enum: tuple[str, ...] = ()
    required_value: bool = False  # empty value quarantines the row


@dataclass(frozen=True)
class Source:
    name: str
    kind: str                     # master | fact | snapshot
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # Column deciding which version of a key wins (master data).
    version_column: Optional[str] = None
    time_column: Optional[str] = None  # event time of a fact, for point-in-time reads

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def pii(self) -> list[str]:
        return [c for c in self.column_names if c in PII_COLUMNS]


def _c(name, type="string", enum=(), required=False):
    return Column(name, type, tuple(enum), required)


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("core_customer", MASTER, ("cust_no",), (
        _c("cust_no", required=True), _c("name"), _c("id_type", enum=("ID_CARD", "PASSPORT", "OTHER")), _c("id_no"),
        _c("mobile"), _c("gender", enum=("M", "F")), _c("birth_date", "date"), _c("occupation"),
        _c("marital_status"), _c("annual_income", "decimal"), _c("branch_code"), _c("open_date", "date"),
        _c("updated_at", "timestamp", required=True)), version_column="updated_at"),
    Source("card_account", MASTER, ("card_cust_id",), (
        _c("card_cust_id", required=True), _c("name"), _c("id_no"), _c("mobile"), _c("card_no"),
        _c("card_level", enum=("standard", "gold", "platinum", "diamond")), _c("credit_limit", "decimal"),
        _c("open_date", "date"), _c("updated_at", "timestamp", required=True)), version_column="updated_at"),
    Source("app_user", MASTER, ("app_user_id",), (
        _c("app_user_id", required=True), _c("mobile"), _c("device_id"), _c("cust_no"),
        _c("register_time", "timestamp"), _c("updated_at", "timestamp", required=True)), version_column="updated_at"),
    Source("wechat_user", MASTER, ("openid",), (
        _c("openid", required=True), _c("unionid"), _c("app_type", enum=("official_account", "mini_program")),
        _c("mobile"), _c("subscribe_time", "timestamp"), _c("updated_at", "timestamp", required=True)),
        version_column="updated_at"),
    Source("transaction", FACT, ("txn_id",), (
        _c("txn_id", required=True), _c("source", enum=("core", "card"), required=True), _c("source_key", required=True),
        _c("txn_time", "timestamp", required=True), _c("amount", "decimal", required=True),
        _c("direction", enum=("debit", "credit"), required=True),
        _c("channel", enum=("branch", "atm", "app", "web", "wechat", "pos", "online")),
        _c("category"), _c("product_code")), time_column="txn_time"),
    Source("holding", SNAPSHOT, ("source_key", "snapshot_date", "product_type"), (
        _c("source_key", required=True), _c("snapshot_date", "date", required=True),
        _c("product_type", enum=("demand_deposit", "time_deposit", "wealth", "fund", "insurance", "mortgage",
                                 "consumer_loan"), required=True),
        _c("balance", "decimal", required=True), _c("maturity_date", "date")), time_column="snapshot_date"),
    Source("event", FACT, ("event_id",), (
        _c("event_id", required=True), _c("source", enum=("app", "web", "official_account", "mini_program"), required=True),
        _c("user_key", required=True), _c("device_id"), _c("event_time", "timestamp", required=True),
        _c("event_type", enum=("login", "page_view", "search", "like", "comment", "share", "click"), required=True),
        _c("page"), _c("keyword")), time_column="event_time"),
    Source("touch", FACT, ("touch_id",), (
        _c("touch_id", required=True), _c("campaign_id", required=True), _c("step", "int"),
        _c("channel", enum=("app_push", "sms", "wechat"), required=True),
        _c("target_source", enum=("core_customer", "card_account", "app_user", "wechat_user"), required=True),
        _c("target_key", required=True), _c("sent_time", "timestamp", required=True), _c("opened_time", "timestamp"),
        _c("converted_time", "timestamp")), time_column="sent_time"),
    Source("consent", FACT, ("source", "source_key", "purpose", "event_time"), (
        _c("source", enum=("core_customer", "card_account", "app_user", "wechat_user"), required=True),
        _c("source_key", required=True), _c("purpose", enum=("marketing", "profiling"), required=True),
        _c("granted", "boolean", required=True), _c("event_time", "timestamp", required=True)), time_column="event_time"),
]}

MASTER_SOURCES = tuple(n for n, s in SOURCES.items() if s.kind == MASTER)
FACT_SOURCES = tuple(n for n, s in SOURCES.items() if s.kind != MASTER)

# Which identifiers each master source carries (column in bronze -> identifier type).
IDENTIFIER_COLUMNS: dict[str, dict[str, str]] = {
    "core_customer": {"mobile_token": "mobile", "id_no_token": "id_no", "cust_no": "cust_no"},
    "card_account": {"mobile_token": "mobile", "id_no_token": "id_no"},
    "app_user": {"mobile_token": "mobile", "device_id": "device_id", "cust_no": "cust_no"},
    "wechat_user": {"mobile_token": "mobile", "unionid": "unionid"},
}
