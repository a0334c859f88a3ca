"""Turn an accepted MP event into one row shaped like GA4's BigQuery export (``events_YYYYMMDD``).

Why mimic the export: reconciliation runs the same SQL against this local store and against the
real BigQuery export, so column names, nesting and value typing must match what Google writes:
``event_params`` as key/value structs (str → string_value, int/bool → int_value, float →
double_value), MP's ``session_id`` as ``ga_session_id``, ``items`` as structs, ``ecommerce`` filled
from the event's params.

Deviations, kept deliberately small: ``ecommerce.currency`` (the real export keeps currency only in
``event_params``; docs/ARCHITECTURE.md asks for it here too) and ``*_in_usd`` fields, filled only
when the currency already is USD (no exchange rates offline). ``stream_id`` is the numeric
data-stream id (as in the export), never the measurement id. The collector keeps no sessions to
attribute from, so ``collected_traffic_source`` and ``session_traffic_source_last_click`` stay null.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

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


def _typed_value(value: Any) -> dict[str, Any]:
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


def event_params(params: dict[str, Any]) -> list[dict[str, Any]]:
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
                rows.append({"key": "ga_session_id", "value": _typed_value(number)})
                continue
        rows.append({"key": key, "value": _typed_value(value)})
    return rows


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def export_items(items: list[dict[str, Any]], event_name: str, currency: Any) -> list[dict[str, Any]]:
    """MP items → export ``items`` structs; unknown item keys go to ``item_params``."""
    usd = currency == "USD"
    out = []
    for item in items:
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
            item_params=[{"key": k, "value": _typed_value(v)} for k, v in item.items() if k not in _ITEM_KNOWN],
        )
        out.append(row)
    return out


def ecommerce(event_name: str, params: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any] | None:
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
        value = _typed_value(entry.get("value"))
        value["set_timestamp_micros"] = entry.get("timestamp_micros", default_ts)
        rows.append({"key": key, "value": value})
    return rows


def event_date(timestamp_micros: int, zone: zoneinfo.ZoneInfo) -> str:
    """YYYYMMDD of an instant in the property's reporting zone (as the export names its tables)."""
    return dt.datetime.fromtimestamp(timestamp_micros // 1_000_000, tz=zone).strftime("%Y%m%d")


def export_row(
    event: dict[str, Any],
    body: dict[str, Any],
    *,
    arrival_micros: int,
    zone: zoneinfo.ZoneInfo,
    stream_id: str,
) -> dict[str, Any]:
    """One stored row. Event time: event-level timestamp_micros, else request-level, else arrival."""
    timestamp = event.get("timestamp_micros", body.get("timestamp_micros", arrival_micros))
    name = event["name"]
    params = event.get("params") or {}
    items = export_items(params.get("items") or [], name, params.get("currency"))
    return {
        "event_date": event_date(timestamp, zone),
        "event_timestamp": timestamp,
        "event_name": name,
        "event_params": event_params(params),
        "event_server_timestamp_offset": arrival_micros - timestamp,
        "user_id": body.get("user_id"),
        "user_pseudo_id": body.get("client_id"),
        "privacy_info": privacy_info(body.get("consent")),
        "user_properties": user_properties(body.get("user_properties"), body.get("timestamp_micros", arrival_micros)),
        "stream_id": stream_id,
        "platform": "WEB",
        "ecommerce": ecommerce(name, params, items),
        "items": items,
        "collected_traffic_source": None,
        "session_traffic_source_last_click": None,
    }
