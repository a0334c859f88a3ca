"""Validate a Measurement Protocol request body the way GA4's debug endpoint does, offline.

Why: GA4's production endpoint answers 2xx and silently drops what it does not like. mpetl runs
this validator on every request before sending (``strict=True``: mpetl's own stricter policy), and
the local collector runs it (not strict) to decide what a real GA4 would have recorded.

Every message names a field (``fieldPath``) and a rule, never a value: the values are customer
data. The validator is a hot path (every request, before sending), so names already judged are
remembered and the common case does little more than a few type checks per param.
"""

from __future__ import annotations

import math
import re
from typing import Any

from etl.protocol.body import parse_body, validate_body_bytes
from etl.protocol.messages import Message, child_path, message
from etl.protocol.place import APP_INSTANCE_ID, DEVICE_FIELDS, USER_LOCATION_FIELDS
from etl.protocol.rules import (
    CONSENT_FIELDS,
    CONSENT_VALUES,
    EVENT_FIELDS,
    EVENTS_REQUIRING_TRANSACTION_ID,
    EXCEEDED_MAX_ENTITIES,
    FORBIDDEN_REQUEST_FIELDS,
    FUTURE_TOLERANCE_S,
    INT64_MAX,
    INT64_MIN,
    ISO_4217_CODES,
    MAX_EVENT_AGE_HOURS,
    MAX_EVENT_NAME_LEN,
    MAX_EVENTS_PER_REQUEST,
    MAX_ITEMS_PER_EVENT,
    MAX_PARAM_NAME_LEN,
    MAX_PARAM_VALUE_LEN,
    MAX_PARAMS_PER_EVENT,
    MAX_USER_ID_LEN,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME_LEN,
    MAX_USER_PROPERTY_VALUE_LEN,
    NAME_INVALID,
    NAME_PATTERN,
    NAME_RESERVED,
    REQUEST_FIELDS,
    RESERVED_EVENT_NAMES,
    RESERVED_PARAM_NAMES,
    RESERVED_PREFIXES,
    RESERVED_USER_PROPERTY_NAMES,
    VALIDATION_BEHAVIORS,
    VALUE_INVALID,
    VALUE_OUT_OF_BOUNDS,
    VALUE_REQUIRED,
)

__all__ = ["validate_request", "validate_body_bytes", "parse_body"]

_NUMBER = (int, float)
_ITEM_NUMBER_FIELDS = frozenset({"price", "discount"})
_ITEM_INT_FIELDS = frozenset({"quantity", "index"})


# --- names: judged once, remembered ----------------------------------------------------------
_Verdict = tuple[str, str] | None  # (code, description) or None when the name is fine


def _judge_name(kind: str, name: str, max_len: int, reserved: frozenset[str]) -> _Verdict:
    if len(name) > max_len:
        return VALUE_OUT_OF_BOUNDS, f"The {kind} name is longer than {max_len} characters."
    if not NAME_PATTERN.match(name):
        return NAME_INVALID, f"The {kind} name must start with a letter and contain only letters, digits and underscores."
    if name in reserved:
        return NAME_RESERVED, f"The {kind} name is reserved by Google Analytics."
    if name.startswith(RESERVED_PREFIXES):
        return NAME_RESERVED, f"The {kind} name uses a reserved prefix ({', '.join(RESERVED_PREFIXES)})."
    return None


class _NameCache:
    """Verdicts on names already seen; bounded so a hostile stream of unique names cannot grow it."""

    def __init__(self, kind: str, max_len: int, reserved: frozenset[str], limit: int = 20_000) -> None:
        self.kind, self.max_len, self.reserved, self.limit = kind, max_len, reserved, limit
        self.verdicts: dict[str, _Verdict] = {}

    def __call__(self, name: str) -> _Verdict:
        try:
            return self.verdicts[name]
        except KeyError:
            verdict = _judge_name(self.kind, name, self.max_len, self.reserved)
            if len(self.verdicts) >= self.limit:
                self.verdicts.clear()
            self.verdicts[name] = verdict
            return verdict


_event_name = _NameCache("event", MAX_EVENT_NAME_LEN, RESERVED_EVENT_NAMES)
_param_name = _NameCache("param", MAX_PARAM_NAME_LEN, RESERVED_PARAM_NAMES)
_user_property_name = _NameCache("user property", MAX_USER_PROPERTY_NAME_LEN, RESERVED_USER_PROPERTY_NAMES)


# --- the validator ---------------------------------------------------------------------------
class _Window:
    """The accepted timestamp range, in microseconds since the epoch (UTC)."""

    __slots__ = ("oldest", "newest", "max_age_hours")

    def __init__(self, now_micros: int, max_age_hours: float, future_tolerance_s: float) -> None:
        self.oldest = now_micros - int(max_age_hours * 3_600_000_000)
        self.newest = now_micros + int(future_tolerance_s * 1_000_000)
        self.max_age_hours = max_age_hours


def validate_request(
    body: Any,
    *,
    now_micros: int | None = None,
    max_age_hours: float = MAX_EVENT_AGE_HOURS,
    future_tolerance_s: float = FUTURE_TOLERANCE_S,
    strict: bool = False,
    stream: str = "web",
) -> list[Message]:
    """Messages for everything GA4 would refuse in ``body`` (an already-parsed JSON value).

    An empty list means valid. ``now_micros`` enables the time-window check (events older than
    ``max_age_hours`` or later than ``future_tolerance_s`` from now). ``strict`` adds mpetl's own
    policy: no ``user_data``, no ``ip_override``. ``stream`` is "web" (the request names a
    measurement_id: ``client_id`` required) or "app" (a firebase_app_id: ``app_instance_id`` required).
    """
    out: list[Message] = []
    if not isinstance(body, dict):
        out.append(message("", "The request body must be a JSON object.", VALUE_INVALID))
        return out
    window = _Window(now_micros, max_age_hours, future_tolerance_s) if now_micros is not None else None

    for position, key in enumerate(body):
        if key not in REQUEST_FIELDS:
            out.append(message(child_path("", key, position), "Unknown request field.", NAME_INVALID))
    if strict:
        for key in FORBIDDEN_REQUEST_FIELDS:
            if key in body:
                out.append(message(key, f"mpetl never sends {key}: it would carry personal data.", VALUE_INVALID))

    _check_identity(body, out, stream)
    if "timestamp_micros" in body:
        _check_timestamp(body["timestamp_micros"], "timestamp_micros", window, out)
    if "user_properties" in body:
        _check_user_properties(body["user_properties"], window, out)
    if "consent" in body:
        _check_consent(body["consent"], out)
    _check_optional_request_fields(body, out)
    _check_events(body, window, out)
    return out


def _check_identity(body: dict[str, Any], out: list[Message], stream: str = "web") -> None:
    key = "app_instance_id" if stream == "app" else "client_id"
    client_id = body.get(key)
    if client_id is None:
        out.append(message(key, f"{key} is required for {'an app' if stream == 'app' else 'a web'} stream.", VALUE_REQUIRED))
    elif not isinstance(client_id, str) or not client_id.strip():
        out.append(message(key, f"{key} must be a non-empty string.", VALUE_INVALID))
    elif stream == "app" and not APP_INSTANCE_ID.match(client_id):
        out.append(message(key, "app_instance_id must be 32 hexadecimal digits.", VALUE_INVALID))
    if "user_id" in body:
        user_id = body["user_id"]
        if not isinstance(user_id, str) or not user_id.strip():
            out.append(message("user_id", "user_id, when present, must be a non-empty string.", VALUE_INVALID))
        elif len(user_id) >= MAX_USER_ID_LEN:
            out.append(message("user_id", f"user_id must be shorter than {MAX_USER_ID_LEN} characters.", VALUE_OUT_OF_BOUNDS))


def _check_timestamp(value: Any, path: str, window: _Window | None, out: list[Message]) -> None:
    if type(value) is not int:
        out.append(message(path, "timestamp_micros must be an integer count of microseconds since the Unix epoch.", VALUE_INVALID))
        return
    if value <= 0 or value > INT64_MAX:
        out.append(message(path, "timestamp_micros must be a positive 64-bit integer.", VALUE_INVALID))
        return
    if window is None:
        return
    if value < window.oldest:
        out.append(
            message(path, f"The timestamp is more than {window.max_age_hours:g} hours in the past.", VALUE_OUT_OF_BOUNDS)
        )
    elif value > window.newest:
        out.append(message(path, "The timestamp is in the future.", VALUE_OUT_OF_BOUNDS))


def _check_user_properties(props: Any, window: _Window | None, out: list[Message]) -> None:
    if not isinstance(props, dict):
        out.append(message("user_properties", "user_properties must be an object.", VALUE_INVALID))
        return
    if len(props) > MAX_USER_PROPERTIES:
        out.append(
            message("user_properties", f"At most {MAX_USER_PROPERTIES} user properties are allowed.", EXCEEDED_MAX_ENTITIES)
        )
    for position, (name, entry) in enumerate(props.items()):
        path = child_path("user_properties", name, position)
        verdict = _user_property_name(name)
        if verdict is not None:
            out.append(message(path, verdict[1], verdict[0]))
        if not isinstance(entry, dict):
            out.append(message(path, 'A user property must be an object such as {"value": ...}.', VALUE_INVALID))
            continue
        for inner_pos, key in enumerate(entry):
            if key not in ("value", "timestamp_micros"):
                out.append(message(child_path(path, key, inner_pos), "Unknown user property field.", NAME_INVALID))
        if "value" not in entry:
            out.append(message(f"{path}.value", "A user property needs a value.", VALUE_REQUIRED))
        else:
            value = entry["value"]
            if type(value) is str:
                if len(value) > MAX_USER_PROPERTY_VALUE_LEN:
                    out.append(
                        message(
                            f"{path}.value",
                            f"A user property value must be at most {MAX_USER_PROPERTY_VALUE_LEN} characters.",
                            VALUE_OUT_OF_BOUNDS,
                        )
                    )
            elif value is not None and not _is_scalar_number(value):
                out.append(message(f"{path}.value", "A user property value must be a string, number or boolean.", VALUE_INVALID))
        if "timestamp_micros" in entry:
            _check_timestamp(entry["timestamp_micros"], f"{path}.timestamp_micros", window, out)


def _check_consent(consent: Any, out: list[Message]) -> None:
    if not isinstance(consent, dict):
        out.append(message("consent", "consent must be an object.", VALUE_INVALID))
        return
    for position, (key, value) in enumerate(consent.items()):
        path = child_path("consent", key, position)
        if key not in CONSENT_FIELDS:
            out.append(message(path, "Unknown consent field: only ad_user_data and ad_personalization exist.", NAME_INVALID))
        elif value not in CONSENT_VALUES:
            out.append(message(path, f"{key} must be GRANTED or DENIED.", VALUE_INVALID))


def _check_optional_request_fields(body: dict[str, Any], out: list[Message]) -> None:
    if "non_personalized_ads" in body and type(body["non_personalized_ads"]) is not bool:
        out.append(message("non_personalized_ads", "non_personalized_ads must be true or false.", VALUE_INVALID))
    if "validation_behavior" in body and body["validation_behavior"] not in VALIDATION_BEHAVIORS:
        out.append(
            message("validation_behavior", "validation_behavior must be RELAXED or ENFORCE_RECOMMENDATIONS.", VALUE_INVALID)
        )
    for key in ("user_location", "device", "user_data"):
        if key in body and not isinstance(body[key], dict):
            out.append(message(key, f"{key} must be an object.", VALUE_INVALID))
    # Their members' names and types. An unknown *code* (a region_id that is no ISO 3166-2 code) is not
    # malformed: GA takes the request and leaves that geo field unset (etl/protocol/place.py, export_geo).
    for key, fields in (("user_location", USER_LOCATION_FIELDS), ("device", DEVICE_FIELDS)):
        value = body.get(key)
        if not isinstance(value, dict):
            continue
        for position, (name, member) in enumerate(value.items()):
            path = child_path(key, name, position)
            if name not in fields:
                out.append(message(path, f"Unknown {key} field.", NAME_INVALID))
            elif not isinstance(member, str):
                out.append(message(path, f"{key}.{name} must be a string.", VALUE_INVALID))
    for key in ("user_agent", "ip_override", "app_instance_id"):
        if key in body and not isinstance(body[key], str):
            out.append(message(key, f"{key} must be a string.", VALUE_INVALID))


def _check_events(body: dict[str, Any], window: _Window | None, out: list[Message]) -> None:
    if "events" not in body:
        out.append(message("events", "events is required.", VALUE_REQUIRED))
        return
    events = body["events"]
    if not isinstance(events, list):
        out.append(message("events", "events must be a list.", VALUE_INVALID))
        return
    if not events:
        out.append(message("events", "At least one event is required.", VALUE_REQUIRED))
        return
    if len(events) > MAX_EVENTS_PER_REQUEST:
        out.append(
            message("events", f"At most {MAX_EVENTS_PER_REQUEST} events are allowed per request.", EXCEEDED_MAX_ENTITIES)
        )
    for i, event in enumerate(events):
        _check_event(event, f"events[{i}]", window, out)


def _check_event(event: Any, path: str, window: _Window | None, out: list[Message]) -> None:
    if not isinstance(event, dict):
        out.append(message(path, "An event must be an object.", VALUE_INVALID))
        return
    if len(event) > 3 or not EVENT_FIELDS.issuperset(event):
        for position, key in enumerate(event):
            if key not in EVENT_FIELDS:
                out.append(message(child_path(path, key, position), "Unknown event field.", NAME_INVALID))

    name = event.get("name")
    if name is None:
        out.append(message(f"{path}.name", "An event needs a name.", VALUE_REQUIRED))
    elif type(name) is not str:
        out.append(message(f"{path}.name", "The event name must be a string.", VALUE_INVALID))
    else:
        verdict = _event_name(name)
        if verdict is not None:
            if verdict[0] == NAME_INVALID:
                out.append(_invalid_event_name(name, path))
            else:
                out.append(message(f"{path}.name", verdict[1], verdict[0]))

    if "timestamp_micros" in event:
        _check_timestamp(event["timestamp_micros"], f"{path}.timestamp_micros", window, out)

    params = event.get("params")
    if params is None:
        if "params" in event:
            out.append(message(f"{path}.params", "params must be an object.", VALUE_INVALID))
        params = {}
    elif not isinstance(params, dict):
        out.append(message(f"{path}.params", "params must be an object.", VALUE_INVALID))
        return
    _check_params(params, f"{path}.params", out)
    _check_ecommerce(name, params, f"{path}.params", out)


_SHOWN_NAME = re.compile(r"[A-Za-z0-9_]{1,40}\Z")


def _invalid_event_name(name: str, path: str) -> Message:
    """Google's own message for an invalid event name (its validating-events guide shows it verbatim):
    ``{"fieldPath": "events", "description": "Event at index: [0] has invalid name [_badEventName]. Names
    must start with an alphabetic character.", "validationCode": "NAME_INVALID"}``.

    The name is shown as Google shows it only when it is made of name characters; anything else (a CRM
    field can put an email there) is shown as ``[…]``.
    """
    index = path[len("events[") : -1]
    shown = name if _SHOWN_NAME.match(name) else "…"
    if name[:1].isascii() and name[:1].isalpha():
        rule = "Names must contain only alphanumeric characters and underscores."
    else:
        rule = "Names must start with an alphabetic character."
    return message("events", f"Event at index: [{index}] has invalid name [{shown}]. {rule}", NAME_INVALID)


def _check_params(params: dict[str, Any], path: str, out: list[Message]) -> None:
    if len(params) > MAX_PARAMS_PER_EVENT:
        out.append(message(path, f"An event may have at most {MAX_PARAMS_PER_EVENT} params.", EXCEEDED_MAX_ENTITIES))
    for position, (name, value) in enumerate(params.items()):
        verdict = _param_name(name)
        if verdict is not None:
            out.append(message(child_path(path, name, position), verdict[1], verdict[0]))
        if name == "items":
            _check_items(value, f"{path}.items", out)
            continue
        kind = type(value)
        if kind is str:
            if len(value) > MAX_PARAM_VALUE_LEN:
                out.append(
                    message(
                        child_path(path, name, position),
                        f"A param value must be at most {MAX_PARAM_VALUE_LEN} characters.",
                        VALUE_OUT_OF_BOUNDS,
                    )
                )
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                out.append(
                    message(child_path(path, name, position), "An integer param must fit in 64 bits.", VALUE_OUT_OF_BOUNDS)
                )
        elif kind is float:
            if not math.isfinite(value):
                out.append(message(child_path(path, name, position), "A number param must be finite.", VALUE_INVALID))
        elif kind is not bool:
            out.append(
                message(
                    child_path(path, name, position),
                    "A param value must be a string, number or boolean (only items may be a list).",
                    VALUE_INVALID,
                )
            )


def _check_ecommerce(event_name: Any, params: dict[str, Any], path: str, out: list[Message]) -> None:
    if event_name in EVENTS_REQUIRING_TRANSACTION_ID:
        tid = params.get("transaction_id")
        if tid is None or (type(tid) is str and not tid.strip()):
            out.append(message(f"{path}.transaction_id", f"A {event_name} event needs a transaction_id.", VALUE_REQUIRED))
    if "value" in params:
        if not _is_number(params["value"]):
            out.append(message(f"{path}.value", "value must be a number.", VALUE_INVALID))
        if "currency" not in params:
            out.append(message(f"{path}.currency", "currency is required when value is set.", VALUE_REQUIRED))
    if "currency" in params and params["currency"] not in ISO_4217_CODES:
        out.append(message(f"{path}.currency", "currency must be an ISO 4217 code in capitals, such as EUR.", VALUE_INVALID))


def _check_items(items: Any, path: str, out: list[Message]) -> None:
    if not isinstance(items, list):
        out.append(message(path, "items must be a list of objects.", VALUE_INVALID))
        return
    if len(items) > MAX_ITEMS_PER_EVENT:
        out.append(message(path, f"An event may have at most {MAX_ITEMS_PER_EVENT} items.", EXCEEDED_MAX_ENTITIES))
    for j, item in enumerate(items):
        item_path = f"{path}[{j}]"
        if not isinstance(item, dict):
            out.append(message(item_path, "An item must be an object.", VALUE_INVALID))
            continue
        if not (_non_empty(item.get("item_id")) or _non_empty(item.get("item_name"))):
            out.append(message(item_path, "An item needs an item_id or an item_name.", VALUE_REQUIRED))
        for position, (key, value) in enumerate(item.items()):
            kind = type(value)
            if kind is str:
                if len(value) > MAX_PARAM_VALUE_LEN:
                    out.append(
                        message(
                            child_path(item_path, key, position),
                            f"An item value must be at most {MAX_PARAM_VALUE_LEN} characters.",
                            VALUE_OUT_OF_BOUNDS,
                        )
                    )
                    continue
            elif not _is_scalar_number(value):
                out.append(
                    message(child_path(item_path, key, position), "An item value must be a string or a number.", VALUE_INVALID)
                )
                continue
            if key in _ITEM_NUMBER_FIELDS and not _is_number(value):
                out.append(message(child_path(item_path, key, position), f"{key} must be a number.", VALUE_INVALID))
            elif key in _ITEM_INT_FIELDS and type(value) is not int:
                out.append(message(child_path(item_path, key, position), f"{key} must be an integer.", VALUE_INVALID))


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def _is_scalar_number(value: Any) -> bool:
    return type(value) is bool or _is_number(value)


def _non_empty(value: Any) -> bool:
    if type(value) is str:
        return bool(value.strip())
    return _is_number(value)
