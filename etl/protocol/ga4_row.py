"""An MP event → one row shaped like GA4's BigQuery export (``events_YYYYMMDD``), as a pure function.

Why here, in the stage-neutral protocol package: two stages need the same row. The local collector
stores what a real GA4 would have exported, and the loader writes deferred events (too old for MP) to
the historical table at their true date. Reports union that table with ``events_*``
(jobs/sql/historical_union_view.sql), so both must type values exactly as the export does:
``event_params`` as key/value structs (str → string_value, int/bool → int_value, float →
double_value), MP's numeric ``session_id`` as ``ga_session_id``, ``items`` as structs,
``ecommerce`` filled from the event's params. The output equals etl/collector/export.py's
``export_row`` for the same input (tests/historical/test_ga4_row.py pins that), so the collector can
import this module instead of keeping its own copy.

Deviations from the real export, kept small and shared with the collector: ``ecommerce.currency``
(the export keeps currency only in ``event_params``), ``stream_id`` is the measurement id, and the
``*_in_usd`` fields are filled only when the currency already is USD (no exchange rates offline).
A row with no arrival time (a historical row never reached Google) has
``event_server_timestamp_offset`` null.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from typing import Any

from etl.protocol.place import app_platform, export_device, export_geo

_ITEM_STRING_FIELDS = (
    "item_id",
    "item_name",
    "item_brand",
    "item_variant",
    "item_category",
    "item_category2",
    "item_category3",
    "item_category4",
    "item_category5",
    "coupon",
    "affiliation",
    "location_id",
    "item_list_id",
    "item_list_name",
    "item_list_index",
    "promotion_id",
    "promotion_name",
    "creative_name",
    "creative_slot",
)
_ITEM_KNOWN = frozenset(_ITEM_STRING_FIELDS) | {"price", "quantity", "index"}
_ECOMMERCE_PARAMS = frozenset({"transaction_id", "value", "currency", "tax", "shipping", "items"})


def typed_value(value: Any) -> dict[str, Any]:
    """An export ``value`` struct: exactly one of the four fields set, the rest null."""
    out: dict[str, Any] = {"string_value": None, "int_value": None, "float_value": None, "double_value": None}
    if isinstance(value, bool):
        out["int_value"] = int(value)
    elif isinstance(value, int):
        out["int_value"] = value
    elif isinstance(value, float):
        out["double_value"] = value
    elif value is not None:
        out["string_value"] = str(value)
    return out


def _session_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def event_params(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """MP params → export ``event_params`` (items excluded: they have their own column).

    A numeric ``session_id`` becomes ``ga_session_id`` (int), as GA4 stores it; a non-numeric one
    is kept verbatim under ``session_id`` rather than pretending it was understood.
    """
    rows = []
    for key, value in params.items():
        if key == "items":
            continue
        if key == "session_id":
            number = _session_number(value)
            if number is not None:
                rows.append({"key": "ga_session_id", "value": typed_value(number)})
                continue
        rows.append({"key": key, "value": typed_value(value)})
    return rows


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def export_items(items: list[Any], event_name: str, currency: Any) -> list[dict[str, Any]]:
    """MP items → export ``items`` structs; unknown item keys go to ``item_params``."""
    usd = currency == "USD"
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        row: dict[str, Any] = {name: None for name in _ITEM_STRING_FIELDS}
        for name in _ITEM_STRING_FIELDS:
            if name in item:
                row[name] = str(item[name])
        if "index" in item and row["item_list_index"] is None:
            row["item_list_index"] = str(item["index"])
        price = _as_float(item.get("price"))
        quantity = _as_int(item.get("quantity"))
        quantity = 1 if quantity is None else quantity
        line_total = price * quantity if price is not None else None
        revenue = line_total if event_name == "purchase" else None
        refund = line_total if event_name == "refund" else None
        row.update(
            price=price,
            price_in_usd=price if usd else None,
            quantity=quantity,
            item_revenue=revenue,
            item_revenue_in_usd=revenue if usd else None,
            item_refund=refund,
            item_refund_in_usd=refund if usd else None,
            item_params=[{"key": k, "value": typed_value(v)} for k, v in item.items() if k not in _ITEM_KNOWN],
        )
        out.append(row)
    return out


def ecommerce(event_name: str, params: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The export's ``ecommerce`` struct, or None for an event with no commerce params."""
    if _ECOMMERCE_PARAMS.isdisjoint(params):
        return None
    currency = params.get("currency")
    usd = currency == "USD"
    value = _as_float(params.get("value"))
    purchase = value if event_name == "purchase" else None
    refund = value if event_name == "refund" else None
    shipping = _as_float(params.get("shipping"))
    tax = _as_float(params.get("tax"))
    tid = params.get("transaction_id")
    return {
        "total_item_quantity": sum(i["quantity"] for i in items) if items else None,
        "purchase_revenue_in_usd": purchase if usd else None,
        "purchase_revenue": purchase,
        "refund_value_in_usd": refund if usd else None,
        "refund_value": refund,
        "shipping_value_in_usd": shipping if usd else None,
        "shipping_value": shipping,
        "tax_value_in_usd": tax if usd else None,
        "tax_value": tax,
        "unique_items": len({i["item_id"] or i["item_name"] for i in items}) if items else None,
        "transaction_id": None if tid is None else str(tid),
        "currency": currency if isinstance(currency, str) else None,
    }


def privacy_info(consent: Any) -> dict[str, Any]:
    """Export ``privacy_info`` from MP ``consent``.

    MP carries only ad_user_data and ad_personalization; the export has ads_storage. Both granted →
    "Yes", either denied → "No", otherwise unknown (null). analytics_storage is not something MP
    can express, so it stays null.
    """
    ads = None
    if isinstance(consent, dict):
        states = {consent.get("ad_user_data"), consent.get("ad_personalization")}
        if "DENIED" in states:
            ads = "No"
        elif states == {"GRANTED"}:
            ads = "Yes"
    return {"analytics_storage": None, "ads_storage": ads, "uses_transient_token": "No"}


def user_properties(props: Any, default_ts: int) -> list[dict[str, Any]]:
    if not isinstance(props, dict):
        return []
    rows = []
    for key, entry in props.items():
        value = typed_value(entry.get("value"))
        value["set_timestamp_micros"] = entry.get("timestamp_micros", default_ts)
        rows.append({"key": key, "value": value})
    return rows


def event_date(timestamp_micros: int, zone: zoneinfo.ZoneInfo) -> str:
    """YYYYMMDD of an instant in the property's reporting zone (as the export names its tables)."""
    return dt.datetime.fromtimestamp(timestamp_micros // 1_000_000, tz=zone).strftime("%Y%m%d")


def ga4_row(
    event: Mapping[str, Any],
    body: Mapping[str, Any],
    *,
    zone: zoneinfo.ZoneInfo,
    stream_id: str,
    arrival_micros: int | None = None,
    firebase_app_id: str | None = None,
) -> dict[str, Any]:
    """One export-shaped row for `event` (an MP event object) from request `body` (client_id, user_id…).

    Event time: the event's ``timestamp_micros``, else the request's, else the arrival time; with
    neither a timestamp nor an arrival time there is no event date, so that is a ValueError.

    `geo` and `device` come from the request's `user_location` and `device` (etl/protocol/place.py: what
    GA reads of them; null when the request carried none: the local collector derives nothing from an
    IP). An app stream's row (`firebase_app_id`) has the app instance id as `user_pseudo_id` (BigQuery
    export schema: "the pseudonymous id … for the user"), `app_info.firebase_app_id`, and `platform`
    ANDROID or IOS from the app id.
    """
    timestamp = event.get("timestamp_micros", body.get("timestamp_micros", arrival_micros))
    if timestamp is None:
        raise ValueError("an event with no timestamp_micros and no arrival time has no event date")
    name = event["name"]
    params = event.get("params") or {}
    items = export_items(params.get("items") or [], name, params.get("currency"))
    return {
        "event_date": event_date(timestamp, zone),
        "event_timestamp": timestamp,
        "event_name": name,
        "event_params": event_params(params),
        "event_server_timestamp_offset": None if arrival_micros is None else arrival_micros - timestamp,
        "user_id": body.get("user_id"),
        "user_pseudo_id": body.get("app_instance_id") if firebase_app_id else body.get("client_id"),
        "privacy_info": privacy_info(body.get("consent")),
        "user_properties": user_properties(body.get("user_properties"), body.get(
            "timestamp_micros", timestamp if arrival_micros is None else arrival_micros)),
        "stream_id": stream_id,
        "platform": app_platform(firebase_app_id) if firebase_app_id else "WEB",
        "app_info": {"id": None, "version": None, "firebase_app_id": firebase_app_id} if firebase_app_id else None,
        "geo": export_geo(body.get("user_location")),
        "device": export_device(body.get("device")),
        "ecommerce": ecommerce(name, params, items),
        "items": items,
        "collected_traffic_source": None,
        "session_traffic_source_last_click": None,
    }


def _f(name: str, kind: str, *fields: dict[str, Any], mode: str = "NULLABLE") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    if fields:
        out["fields"] = list(fields)
    return out


_VALUE = (_f("string_value", "STRING"), _f("int_value", "INTEGER"), _f("float_value", "FLOAT"),
          _f("double_value", "FLOAT"))
_KEY_VALUE = (_f("key", "STRING"), _f("value", "RECORD", *_VALUE))

ROW_SCHEMA: list[dict[str, Any]] = [
    _f("event_date", "STRING"),
    _f("event_timestamp", "INTEGER"),
    _f("event_name", "STRING"),
    _f("event_params", "RECORD", *_KEY_VALUE, mode="REPEATED"),
    _f("event_server_timestamp_offset", "INTEGER"),
    _f("user_id", "STRING"),
    _f("user_pseudo_id", "STRING"),
    _f("privacy_info", "RECORD", _f("analytics_storage", "STRING"), _f("ads_storage", "STRING"),
       _f("uses_transient_token", "STRING")),
    _f("user_properties", "RECORD", _f("key", "STRING"),
       _f("value", "RECORD", *_VALUE, _f("set_timestamp_micros", "INTEGER")), mode="REPEATED"),
    _f("stream_id", "STRING"),
    _f("platform", "STRING"),
    _f("app_info", "RECORD", *(_f(name, "STRING") for name in ("id", "version", "firebase_app_id"))),
    _f("geo", "RECORD", *(_f(name, "STRING") for name in ("city", "country", "continent", "region", "sub_continent",
                                                          "metro"))),
    _f("device", "RECORD", *(_f(name, "STRING") for name in (
        "category", "mobile_brand_name", "mobile_model_name", "operating_system", "operating_system_version",
        "language")), _f("web_info", "RECORD", _f("browser", "STRING"), _f("browser_version", "STRING"))),
    _f("ecommerce", "RECORD", *(
        _f(name, "INTEGER" if name in ("total_item_quantity", "unique_items") else
           "STRING" if name in ("transaction_id", "currency") else "FLOAT")
        for name in ("total_item_quantity", "purchase_revenue_in_usd", "purchase_revenue", "refund_value_in_usd",
                     "refund_value", "shipping_value_in_usd", "shipping_value", "tax_value_in_usd", "tax_value",
                     "unique_items", "transaction_id", "currency"))),
    _f("items", "RECORD", *(_f(name, "STRING") for name in _ITEM_STRING_FIELDS),
       _f("price", "FLOAT"), _f("price_in_usd", "FLOAT"), _f("quantity", "INTEGER"), _f("item_revenue", "FLOAT"),
       _f("item_revenue_in_usd", "FLOAT"), _f("item_refund", "FLOAT"), _f("item_refund_in_usd", "FLOAT"),
       _f("item_params", "RECORD", *_KEY_VALUE, mode="REPEATED"), mode="REPEATED"),
    _f("collected_traffic_source", "RECORD", *(_f(name, "STRING") for name in (
        "manual_campaign_id", "manual_campaign_name", "manual_source", "manual_medium", "manual_term",
        "manual_content", "gclid", "dclid"))),
    _f("session_traffic_source_last_click", "RECORD",
       _f("manual_campaign", "RECORD", *(_f(name, "STRING") for name in ("campaign_name", "source", "medium"))),
       _f("cross_channel_campaign", "RECORD", *(_f(name, "STRING") for name in (
           "campaign_name", "source", "medium", "default_channel_group")))),
]
"""The row's columns as a BigQuery JSON schema (``bq`` / ``SchemaField.from_api_repr``), in output order."""

_DUCKDB_TYPES = {"STRING": "VARCHAR", "INTEGER": "BIGINT", "FLOAT": "DOUBLE", "DATE": "DATE"}


def duckdb_type(field: Mapping[str, Any]) -> str:
    """A ROW_SCHEMA field as a DuckDB type (what ``read_json(columns=…)`` needs to read the rows back)."""
    if field["type"] == "RECORD":
        kind = "STRUCT(" + ", ".join(f"{f['name']} {duckdb_type(f)}" for f in field["fields"]) + ")"
    else:
        kind = _DUCKDB_TYPES[field["type"]]
    return kind + "[]" if field.get("mode") == "REPEATED" else kind


def duckdb_columns(schema: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Column name → DuckDB type for a schema (default: ROW_SCHEMA)."""
    return {f["name"]: duckdb_type(f) for f in (ROW_SCHEMA if schema is None else schema)}
