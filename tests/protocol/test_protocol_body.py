"""Byte-level checks: size, encoding, JSON syntax, duplicate keys."""

from __future__ import annotations

import orjson

from etl.protocol import MAX_BODY_BYTES, parse_body, validate_body_bytes


def test_well_formed_body_parses_without_messages() -> None:
    raw = orjson.dumps({"client_id": "1.2", "events": [{"name": "purchase"}]})
    body, messages = parse_body(raw)
    assert messages == []
    assert body["events"][0]["name"] == "purchase"


def test_oversized_body_is_out_of_bounds_but_still_parsed() -> None:
    raw = orjson.dumps({"client_id": "1.2", "events": [{"name": "e", "params": {"pad": "x" * (MAX_BODY_BYTES)}}]})
    body, messages = parse_body(raw)
    assert [m["validationCode"] for m in messages] == ["VALUE_OUT_OF_BOUNDS"]
    assert str(MAX_BODY_BYTES) in messages[0]["description"]
    assert body["client_id"] == "1.2"


def test_exactly_at_the_limit_is_fine() -> None:
    raw = b'{"x":"' + b"a" * (MAX_BODY_BYTES - 8) + b'"}'
    assert len(raw) == MAX_BODY_BYTES
    assert validate_body_bytes(raw) == []


def test_invalid_json_names_the_position_not_the_content() -> None:
    raw = b'{"client_id": "secret-looking-value", oops}'
    messages = validate_body_bytes(raw)
    assert len(messages) == 1
    assert messages[0]["validationCode"] == "VALUE_INVALID"
    assert "line 1" in messages[0]["description"]
    assert "secret-looking-value" not in messages[0]["description"]


def test_non_utf8_and_nan_are_invalid() -> None:
    assert validate_body_bytes(b'{"a": "\xff"}')[0]["validationCode"] == "VALUE_INVALID"
    assert validate_body_bytes(b'{"a": NaN}')[0]["validationCode"] == "VALUE_INVALID"


def test_duplicate_keys_are_reported_with_their_path() -> None:
    raw = b'{"client_id":"1","events":[{"name":"a","params":{"value":1,"value":2}}],"client_id":"2"}'
    body, messages = parse_body(raw)
    assert {(m["fieldPath"], m["validationCode"]) for m in messages} == {
        ("client_id", "NAME_DUPLICATED"),
        ("events[0].params.value", "NAME_DUPLICATED"),
    }
    assert body["events"][0]["params"]["value"] == 2  # what any JSON parser would keep
