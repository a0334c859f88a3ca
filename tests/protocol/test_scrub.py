"""Debug-endpoint messages are scrubbed before they reach summary.json: the rule stays, values go (issue 14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from etl.load import Ledger, RetryPolicy, send_pending
from etl.load.transport import Answer
from etl.protocol import scrub_message

MARK = "Zq9mark"
SECRET = "k3Y9sEcReT_vAlUe-2026xx"
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="[]'\""), max_size=30).map(
    lambda s: MARK + s
)
templates = st.sampled_from([
    "Event at index: [0] has invalid name [{v}]. Names must start with an alphabetic character.",
    "Param value '{v}' is too long.",
    'Value "{v}" is not allowed.',
    "Request to https://www.google-analytics.com/debug/mp/collect?measurement_id=G-1&api_secret={v} failed",
    "api_secret={v}",
    "token: {v}",
])


@given(templates, values)
def test_values_in_brackets_quotes_urls_and_secret_pairs_never_survive(template: str, value: str) -> None:
    scrubbed = scrub_message({"fieldPath": "events", "description": template.format(v=value), "validationCode": "VALUE_INVALID"})
    assert MARK not in json.dumps(scrubbed)
    assert scrubbed["validationCode"] == "VALUE_INVALID" and scrubbed["fieldPath"] == "events"


@given(st.sampled_from(["jane.doe@example.com", "jürgen@müller.de", "+44 20 7946 0958", "4111 1111 1111 1111", "a" * 64,
                        SECRET]))
def test_bare_personal_data_and_long_tokens_never_survive(value: str) -> None:
    scrubbed = scrub_message({"fieldPath": f"events[0].params.{value}", "description": f"bad {value} here",
                              "validationCode": "NOT_A_CODE"})
    assert value not in json.dumps(scrubbed, ensure_ascii=False)
    assert scrubbed["fieldPath"] == "(redacted)" and scrubbed["validationCode"] == "UNKNOWN"


def test_googles_own_message_keeps_its_rule_and_index_and_is_stable() -> None:
    msg = {"fieldPath": "events", "description": "Event at index: [3] has invalid name [_badEventName]. Names must "
           "start with an alphabetic character.", "validationCode": "NAME_INVALID"}
    scrubbed = scrub_message(msg)
    assert scrubbed["description"] == "Event at index: [3] has invalid name […]. Names must start with an alphabetic character."
    assert scrub_message(scrubbed) == scrubbed
    assert scrub_message({"fieldPath": "events[0].params.items[2]", "description": "ok", "validationCode": "VALUE_REQUIRED"})[
        "fieldPath"] == "events[0].params.items[2]"


def test_known_secrets_are_removed_even_when_short() -> None:
    scrubbed = scrub_message({"fieldPath": "", "description": "echo: s3cr", "validationCode": "VALUE_INVALID"}, secrets=("s3cr",))
    assert "s3cr" not in scrubbed["description"]


def test_garbage_from_an_endpoint_is_still_a_message() -> None:
    for garbage in (None, "text", 3, {"fieldPath": 5}, {"description": ["x"]}):
        scrubbed = scrub_message(garbage)
        assert set(scrubbed) == {"fieldPath", "description", "validationCode"}


class _EchoingDebugEndpoint:
    """A debug endpoint that quotes what it was sent, and the api_secret, into its messages."""

    async def post(self, body: bytes) -> Answer:
        event = orjson.loads(body)["events"][0]
        tid = event["params"]["transaction_id"]
        return Answer(200, validation_messages=[
            {"fieldPath": f"events[0].params.{tid}", "description": f"Param [{tid}] for jane.doe@example.com with "
             f"api_secret={SECRET} is odd", "validationCode": "VALUE_INVALID"},
        ])

    async def aclose(self) -> None:
        return None


def test_the_summarys_debug_messages_hold_no_value_and_no_secret(tmp_path) -> None:
    now = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    now_micros = int(now.timestamp()) * 1_000_000
    tid = "T-Zq9-000123"
    event = {"name": "purchase", "timestamp_micros": now_micros - 3_600_000_000,
             "params": {"transaction_id": tid, "value": 10.5, "currency": "EUR", "mpetl_run": "r1"}}
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.plan(pd.DataFrame([{
            "source": "crm", "row": 1, "event_key": f"crm|purchase|{tid}", "event_name": "purchase",
            "client_id": "100.1700000000", "user_id": None, "consent_json": None,
            "timestamp_micros": event["timestamp_micros"], "event_date": "20261121", "transaction_id": tid,
            "has_session": False, "event_json": orjson.dumps(event).decode()}]), "r1")
        stats = send_pending(ledger, _EchoingDebugEndpoint(), run_id="r1", now_micros=now_micros,
                             policy=RetryPolicy(max_attempts=1), concurrency=1, seed=1)
    summary = json.dumps(stats.to_dict())
    assert stats.events_sent == 1 and sum(stats.debug_messages.values()) == 1
    for leaked in (tid, "jane.doe", SECRET):
        assert leaked not in summary
    (key,) = stats.debug_messages
    assert key.startswith("VALUE_INVALID (redacted): Param […]")
