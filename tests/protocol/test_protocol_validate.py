"""validate_request: one case per rule, good and bad, in the debug endpoint's message shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.protocol import VALIDATION_CODES, event_index_of, split_by_event, validate_request

NOW = 1_795_348_800_000_000  # 2026-11-22T12:00:00Z in µs
HOUR = 3_600_000_000


def valid_body() -> dict[str, Any]:
    return {
        "client_id": "1162820436.1749482504",
        "user_id": "crm-123",
        "timestamp_micros": NOW - HOUR,
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "user_properties": {"tier": {"value": "gold"}},
        "events": [
            {
                "name": "purchase",
                "timestamp_micros": NOW - 2 * HOUR,
                "params": {
                    "transaction_id": "T-1",
                    "currency": "GBP",
                    "value": 49.99,
                    "session_id": "1746825440",
                    "engagement_time_msec": 1,
                    "mpetl_run": "run-1",
                    "is_test": False,
                    "items": [{"item_id": "SKU1", "item_name": "Shirt", "price": 49.99, "quantity": 1}],
                },
            },
            {"name": "generate_lead", "params": {"lead_source": "crm"}},
        ],
    }


def pairs(messages: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(m["fieldPath"], m["validationCode"]) for m in messages}


def test_a_complete_valid_request_has_no_messages() -> None:
    assert validate_request(valid_body(), now_micros=NOW, strict=True) == []


def test_minimal_request_is_valid() -> None:
    assert validate_request({"client_id": "1.2", "events": [{"name": "sign_up"}]}) == []


def test_messages_have_the_debug_endpoint_shape() -> None:
    body = valid_body()
    body["events"][0]["params"]["currency"] = "pounds"
    [msg] = validate_request(body)
    assert set(msg) == {"fieldPath", "description", "validationCode"}
    assert msg["fieldPath"] == "events[0].params.currency"
    assert msg["validationCode"] in VALIDATION_CODES
    assert msg["description"].endswith(".")
    assert "pounds" not in msg["description"]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


P0 = ["events", 0, "params"]

CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, str]]] = [
    # request level
    ("client_id missing", _delete(["client_id"]), ("client_id", "VALUE_REQUIRED")),
    ("client_id empty", _set(["client_id"], "  "), ("client_id", "VALUE_INVALID")),
    ("client_id number", _set(["client_id"], 123), ("client_id", "VALUE_INVALID")),
    ("user_id too long", _set(["user_id"], "u" * 256), ("user_id", "VALUE_OUT_OF_BOUNDS")),
    ("unknown field", _set(["bogus"], 1), ("bogus", "NAME_INVALID")),
    ("events missing", _delete(["events"]), ("events", "VALUE_REQUIRED")),
    ("events empty", _set(["events"], []), ("events", "VALUE_REQUIRED")),
    ("events not a list", _set(["events"], {"name": "x"}), ("events", "VALUE_INVALID")),
    ("26 events", _set(["events"], [{"name": "e"}] * 26), ("events", "EXCEEDED_MAX_ENTITIES")),
    ("request ts float", _set(["timestamp_micros"], 1.5e15), ("timestamp_micros", "VALUE_INVALID")),
    ("request ts string", _set(["timestamp_micros"], "1795348800000000"), ("timestamp_micros", "VALUE_INVALID")),
    ("request ts too old", _set(["timestamp_micros"], NOW - 73 * HOUR), ("timestamp_micros", "VALUE_OUT_OF_BOUNDS")),
    # consent
    ("consent lower case", _set(["consent", "ad_user_data"], "granted"), ("consent.ad_user_data", "VALUE_INVALID")),
    ("consent bool", _set(["consent", "ad_personalization"], True), ("consent.ad_personalization", "VALUE_INVALID")),
    ("consent unknown key", _set(["consent", "analytics_storage"], "GRANTED"), ("consent.analytics_storage", "NAME_INVALID")),
    ("consent not object", _set(["consent"], "GRANTED"), ("consent", "VALUE_INVALID")),
    # user properties
    ("user prop name 25", _set(["user_properties", "p" * 25], {"value": "x"}), ("user_properties." + "p" * 25, "VALUE_OUT_OF_BOUNDS")),
    ("user prop reserved", _set(["user_properties", "first_visit_time"], {"value": "x"}), ("user_properties.first_visit_time", "NAME_RESERVED")),
    ("user prop prefix", _set(["user_properties", "ga_tier"], {"value": "x"}), ("user_properties.ga_tier", "NAME_RESERVED")),
    ("user prop value 37", _set(["user_properties", "tier", "value"], "v" * 37), ("user_properties.tier.value", "VALUE_OUT_OF_BOUNDS")),
    ("user prop no value", _set(["user_properties", "tier"], {}), ("user_properties.tier.value", "VALUE_REQUIRED")),
    ("user prop bare", _set(["user_properties", "tier"], "gold"), ("user_properties.tier", "VALUE_INVALID")),
    (
        "26 user props",
        _set(["user_properties"], {f"p{i}": {"value": i} for i in range(26)}),
        ("user_properties", "EXCEEDED_MAX_ENTITIES"),
    ),
    # event name
    ("event name missing", _delete(["events", 0, "name"]), ("events[0].name", "VALUE_REQUIRED")),
    ("event name 41", _set(["events", 1, "name"], "e" * 41), ("events[1].name", "VALUE_OUT_OF_BOUNDS")),
    # Google's own shape for an invalid event name: fieldPath "events", the index in the description.
    ("event name digit first", _set(["events", 1, "name"], "1lead"), ("events", "NAME_INVALID")),
    ("event name hyphen", _set(["events", 1, "name"], "lead-won"), ("events", "NAME_INVALID")),
    ("event name reserved", _set(["events", 1, "name"], "session_start"), ("events[1].name", "NAME_RESERVED")),
    ("event name prefix", _set(["events", 1, "name"], "google_lead"), ("events[1].name", "NAME_RESERVED")),
    ("event unknown field", _set(["events", 1, "extra"], 1), ("events[1].extra", "NAME_INVALID")),
    ("event not object", _set(["events", 1], "generate_lead"), ("events[1]", "VALUE_INVALID")),
    ("event ts too old", _set(["events", 0, "timestamp_micros"], NOW - 72 * HOUR - 1), ("events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS")),
    ("event ts future", _set(["events", 0, "timestamp_micros"], NOW + 301_000_000), ("events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS")),
    ("event ts bool", _set(["events", 0, "timestamp_micros"], True), ("events[0].timestamp_micros", "VALUE_INVALID")),
    ("event ts negative", _set(["events", 0, "timestamp_micros"], -5), ("events[0].timestamp_micros", "VALUE_INVALID")),
    # params
    ("params not object", _set(["events", 1, "params"], ["a"]), ("events[1].params", "VALUE_INVALID")),
    ("26 params", _set(["events", 1, "params"], {f"p{i}": i for i in range(26)}), ("events[1].params", "EXCEEDED_MAX_ENTITIES")),
    ("param name 41", _set([*P0, "p" * 41], 1), ("events[0].params." + "p" * 41, "VALUE_OUT_OF_BOUNDS")),
    ("param name bad", _set([*P0, "2nd"], 1), ("events[0].params.2nd", "NAME_INVALID")),
    ("param reserved", _set([*P0, "firebase_conversion"], 1), ("events[0].params.firebase_conversion", "NAME_RESERVED")),
    ("param prefix", _set([*P0, "ga_thing"], 1), ("events[0].params.ga_thing", "NAME_RESERVED")),
    ("param value 101", _set([*P0, "note"], "n" * 101), ("events[0].params.note", "VALUE_OUT_OF_BOUNDS")),
    ("param value object", _set([*P0, "note"], {"a": 1}), ("events[0].params.note", "VALUE_INVALID")),
    ("param value null", _set([*P0, "note"], None), ("events[0].params.note", "VALUE_INVALID")),
    ("param value list", _set([*P0, "note"], [1]), ("events[0].params.note", "VALUE_INVALID")),
    ("param int too wide", _set([*P0, "big"], 2**63), ("events[0].params.big", "VALUE_OUT_OF_BOUNDS")),
    # commerce
    ("purchase without transaction_id", _delete([*P0, "transaction_id"]), ("events[0].params.transaction_id", "VALUE_REQUIRED")),
    ("purchase blank transaction_id", _set([*P0, "transaction_id"], " "), ("events[0].params.transaction_id", "VALUE_REQUIRED")),
    ("value without currency", _delete([*P0, "currency"]), ("events[0].params.currency", "VALUE_REQUIRED")),
    ("currency not ISO", _set([*P0, "currency"], "GBX"), ("events[0].params.currency", "VALUE_INVALID")),
    ("currency lower case", _set([*P0, "currency"], "gbp"), ("events[0].params.currency", "VALUE_INVALID")),
    ("value as text", _set([*P0, "value"], "49.99"), ("events[0].params.value", "VALUE_INVALID")),
    ("value as bool", _set([*P0, "value"], True), ("events[0].params.value", "VALUE_INVALID")),
    # items
    ("items not list", _set([*P0, "items"], "SKU1"), ("events[0].params.items", "VALUE_INVALID")),
    ("201 items", _set([*P0, "items"], [{"item_id": str(i)} for i in range(201)]), ("events[0].params.items", "EXCEEDED_MAX_ENTITIES")),
    ("item without id or name", _set([*P0, "items"], [{"price": 1.0}]), ("events[0].params.items[0]", "VALUE_REQUIRED")),
    ("item not object", _set([*P0, "items"], ["SKU1"]), ("events[0].params.items[0]", "VALUE_INVALID")),
    ("item price text", _set([*P0, "items"], [{"item_id": "a", "price": "1.0"}]), ("events[0].params.items[0].price", "VALUE_INVALID")),
    ("item quantity float", _set([*P0, "items"], [{"item_id": "a", "quantity": 1.5}]), ("events[0].params.items[0].quantity", "VALUE_INVALID")),
    ("item value 101", _set([*P0, "items"], [{"item_id": "a", "item_brand": "b" * 101}]), ("events[0].params.items[0].item_brand", "VALUE_OUT_OF_BOUNDS")),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_each_rule_reports_its_field_and_code(mutate: Callable[[dict[str, Any]], None], expected: tuple[str, str]) -> None:
    body = valid_body()
    mutate(body)
    assert pairs(validate_request(body, now_micros=NOW)) == {expected}


def test_limits_are_inclusive() -> None:
    body = valid_body()
    body["events"] = [{"name": "e" * 40, "params": {f"p{i}": "v" * 100 for i in range(25)}}] * 25
    body["user_properties"] = {f"{'u' * 20}{i:02d}": {"value": "v" * 36} for i in range(25)}
    body["events"][0] = {"name": "purchase", "params": {"transaction_id": "T", "items": [{"item_id": "a"}] * 200}}
    assert validate_request(body, now_micros=NOW) == []


def test_time_window_edges() -> None:
    body = valid_body()
    body["events"][0]["timestamp_micros"] = NOW - 72 * HOUR
    body["events"][1]["timestamp_micros"] = NOW + 300_000_000
    assert validate_request(body, now_micros=NOW) == []
    # a custom window (mpetl keeps a safety margin) and no window at all
    assert pairs(validate_request(body, now_micros=NOW, max_age_hours=71, future_tolerance_s=0)) == {
        ("events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS"),
        ("events[1].timestamp_micros", "VALUE_OUT_OF_BOUNDS"),
    }
    body["events"][0]["timestamp_micros"] = 1  # 1970: only a window can tell
    assert validate_request(body) == []


def test_refund_needs_transaction_id_and_lead_does_not() -> None:
    body = {"client_id": "1.2", "events": [{"name": "refund", "params": {"value": 5, "currency": "EUR"}}, {"name": "qualify_lead"}]}
    assert pairs(validate_request(body)) == {("events[0].params.transaction_id", "VALUE_REQUIRED")}


def test_strict_mode_forbids_user_data_and_ip_override() -> None:
    body = valid_body()
    body["user_data"] = {"sha256_email_address": ["ab" * 32]}
    body["ip_override"] = "192.0.2.1"
    assert validate_request(body) == []  # GA4 accepts them
    assert pairs(validate_request(body, strict=True)) == {("user_data", "VALUE_INVALID"), ("ip_override", "VALUE_INVALID")}


def test_non_object_body() -> None:
    for body in (None, [], "x", 3):
        assert pairs(validate_request(body)) == {("", "VALUE_INVALID")}


def test_malformed_names_are_shown_by_position_not_echoed() -> None:
    body = {"client_id": "1.2", "events": [{"name": "e", "params": {"ok": 1, "jane.doe@example.com": "x"}}]}
    [msg] = validate_request(body)
    assert msg["fieldPath"] == "events[0].params[#1]"
    assert "jane" not in json.dumps(msg)


def test_event_index_helpers_split_request_from_event_messages() -> None:
    body = valid_body()
    body["consent"]["ad_user_data"] = "maybe"
    body["events"][1]["name"] = "ga_x"
    messages = validate_request(body)
    request_level, by_event = split_by_event(messages)
    assert [m["fieldPath"] for m in request_level] == ["consent.ad_user_data"]
    assert list(by_event) == [1]
    assert event_index_of({"fieldPath": "events[12].params.x", "description": "", "validationCode": ""}) == 12
    assert event_index_of({"fieldPath": "events", "description": "", "validationCode": ""}) is None


def test_an_invalid_event_name_reads_as_the_debug_endpoint_writes_it() -> None:
    body = valid_body()
    body["events"][1]["name"] = "_badEventName"
    body["events"][0]["name"] = "jane.doe@example.com"
    messages = validate_request(body)
    assert messages == [
        {"fieldPath": "events", "description": "Event at index: [0] has invalid name […]. Names must contain only "
         "alphanumeric characters and underscores.", "validationCode": "NAME_INVALID"},
        {"fieldPath": "events", "description": "Event at index: [1] has invalid name [_badEventName]. Names must start "
         "with an alphabetic character.", "validationCode": "NAME_INVALID"},
    ]
    # Still an event-level message: the collector drops only that event, as GA4 does.
    request_level, by_event = split_by_event(messages)
    assert request_level == [] and sorted(by_event) == [0, 1]


MARK = "Zq9MARKER"
marked_text = st.text(min_size=0, max_size=150).map(lambda s: MARK + s)


@settings(max_examples=150, deadline=None)
@given(value=marked_text, where=st.sampled_from(["param_long", "currency", "consent", "user_prop", "item", "client_id_list", "tid_blank"]))
def test_descriptions_and_paths_never_echo_values(value: str, where: str) -> None:
    body = valid_body()
    params = body["events"][0]["params"]
    if where == "param_long":
        params["note"] = value + "x" * 101
    elif where == "currency":
        params["currency"] = value
    elif where == "consent":
        body["consent"]["ad_user_data"] = value
    elif where == "user_prop":
        body["user_properties"]["tier"]["value"] = value + "x" * 40
    elif where == "item":
        params["items"] = [{"item_id": value + "x" * 101}]
    elif where == "client_id_list":
        body["client_id"] = [value]
    else:
        params["transaction_id"] = [value]
    messages = validate_request(body, now_micros=NOW, strict=True)
    assert messages, "each mutation breaks a rule"
    assert MARK not in json.dumps(messages)
