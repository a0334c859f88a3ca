"""Google's per-event violations → our reject reasons: row, column, rule, never a value.

A Data Manager 400 names a field of one event (`events[3].eventTimestamp`, `events[3].cartData.items[0]
.unitPrice`, `events[3].additionalEventParameters[2].value`). The ledger stores the refusal as
`dm:` + a JSON list of reasons in the shape of every other reject (`fieldPath` in MP terms,
`description` naming the column, `validationCode` = Google's `ErrorReason`), so `rejects.ndjson`
reads the same whichever API refused the row, and `reject_reasons` names the source's own column
header when the config maps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from etl.load.datamanager.errors import EventError

PREFIX = "dm:"
# Data Manager field (first path segment) → (MP field path, our canonical column)
_FIELDS = {
    "eventTimestamp": ("events[0].timestamp_micros", "timestamp"),
    "clientId": ("client_id", "client_id"),
    "userId": ("user_id", "user_id"),
    "consent": ("consent", "ad_user_data"),
    "eventName": ("events[0].name", "event_name"),
    "transactionId": ("events[0].params.transaction_id", "transaction_id"),
    "conversionValue": ("events[0].params.value", "value"),
    "currency": ("events[0].params.currency", "currency"),
    "cartData": ("events[0].params.items", "items"),
}
_PARAM = re.compile(r"^additionalEventParameters\[(\d+)\]")
_COLUMN = re.compile(r"column '([^']*)'")


def _where(field: str, event: Mapping[str, Any]) -> tuple[str, str | None]:
    if field.startswith("cartData.couponCodes"):
        return "events[0].params.coupon", "param.coupon"
    match = _PARAM.match(field)
    if match:
        params = event.get("additionalEventParameters") or []
        k = int(match.group(1))
        name = params[k].get("parameterName") if k < len(params) and isinstance(params[k], dict) else None
        if isinstance(name, str):
            return f"events[0].params.{name}", ("session_id" if name == "session_id" else f"param.{name}")
        return "events[0].params", None
    head = re.split(r"[.\[]", field, maxsplit=1)[0]
    return _FIELDS.get(head, ("events[0]", None))


def refusal_reason(errors: list[EventError], event: Mapping[str, Any]) -> str:
    """What the ledger stores for an event Google refused (`dm:[…]`)."""
    reasons = []
    for e in errors:
        path, column = _where(e.field, event)
        subject = f"column '{column}'" if column else "the event"
        words = f": {e.description}" if e.description else ""
        reasons.append({"fieldPath": path, "description": f"{subject}: Data Manager refused it ({e.field or 'event'}{words})",
                        "validationCode": e.reason})
    return PREFIX + orjson.dumps(reasons).decode()


def reject_reasons(reason: str, columns: Mapping[str, str] | None = None) -> list[dict[str, str]] | None:
    """The reasons of a stored Data Manager refusal, columns named as the source names them; None
    when the reason is not one (an MP-side refusal keeps its own wording)."""
    if not reason.startswith(PREFIX):
        return None
    try:
        reasons = orjson.loads(reason[len(PREFIX):])
    except orjson.JSONDecodeError:
        return None
    if not columns:
        return reasons
    out = []
    for r in reasons:
        description = _COLUMN.sub(lambda m: f"column {columns.get(m.group(1), m.group(1))!r}", r["description"], count=1)
        out.append({**r, "description": description})
    return out
