"""Debug-endpoint messages are scrubbed before they reach summary.json: the rule stays, values go (issue 14)."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load import RetryPolicy, SendSettings, open_ledger, send_pending
from etl.load.transport import Answer
from etl.protocol import scrub_message
from etl.protocol.messages import MAX_SCRUBBED_DESCRIPTION
from tests.load.conftest import Clock, events_frame

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


@settings(deadline=None)
@given(templates, values)
def test_values_in_brackets_quotes_urls_and_secret_pairs_never_survive(template: str, value: str) -> None:
    scrubbed = scrub_message({"fieldPath": "events", "description": template.format(v=value), "validationCode": "VALUE_INVALID"})
    assert MARK not in json.dumps(scrubbed)
    assert scrubbed["validationCode"] == "VALUE_INVALID" and scrubbed["fieldPath"] == "events"


@settings(deadline=None)
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
    clock = Clock()
    tid = "T-Zq9-000123"
    ledger = open_ledger(str(tmp_path / "l.sqlite"), clock=clock)
    try:
        ledger.bind_property("G-TESTSEND1", "http://127.0.0.1")
        ledger.begin_run("r1", "send")
        ledger.plan(events_frame([f"crm|purchase|{tid}"]), "r1", oldest_sendable_micros=clock() - 71 * 3_600_000_000)
        stats = send_pending(ledger, _EchoingDebugEndpoint(), SendSettings(
            run_id="r1", policy=RetryPolicy(max_attempts=1), concurrency=1, max_age_micros=71 * 3_600_000_000,
            clock=clock, seed=1))
    finally:
        ledger.close()
    summary = json.dumps(stats.to_dict())
    assert stats.events_sent == 1 and sum(stats.debug_messages.values()) == 1
    for leaked in (tid, "jane.doe", SECRET):
        assert leaked not in summary
    (key,) = stats.debug_messages
    assert key.startswith("VALUE_INVALID (redacted): Param […]")


# --- bounded by design (issue 23: a 50 kB description took 26 s, a 100 kB one 111 s) ---------------------------

_HOSTILE = {
    "one long token": lambda n: "a" * n,
    "no closing bracket": lambda n: "[" * n,
    "no closing quote": lambda n: "'" + "x " * (n // 2),
    "digits and spaces": lambda n: "1 " * (n // 2),
    "at signs without spaces": lambda n: "a@" * (n // 2),
    "secret keys": lambda n: "key= " * (n // 5),
    "query parameters": lambda n: "?a=&" * (n // 4),
}


def _cpu_seconds(description: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        scrubbed = scrub_message({"fieldPath": "events", "description": description, "validationCode": "VALUE_INVALID"})
        best = min(best, time.process_time() - start)
    assert len(scrubbed["description"]) <= MAX_SCRUBBED_DESCRIPTION + 1
    return best


@pytest.mark.parametrize("shape", list(_HOSTILE))
def test_scrubbing_grows_linearly_up_to_a_megabyte(shape: str) -> None:
    """1 MB against 100 kB of the same shape: linear is a ratio of ~10, quadratic ~100. The bound (30) is a
    ratio, not a time, so a loaded machine slows both sides alike; an absolute floor of 20 ms on the small
    side keeps timer noise out of the ratio."""
    make = _HOSTILE[shape]
    small, large = _cpu_seconds(make(100_000)), _cpu_seconds(make(1_000_000))
    assert large / max(small, 0.02) < 30, (shape, small, large)


def test_a_megabyte_description_is_scrubbed_like_a_short_one() -> None:
    filler = "x" * 1_000_000
    scrubbed = scrub_message({"fieldPath": "events", "description": f"Param [jane@example.com] {filler} api_secret={SECRET}",
                              "validationCode": "VALUE_INVALID"})
    assert scrubbed["description"].startswith("Param […] …") and SECRET not in json.dumps(scrubbed)
    assert scrub_message({"fieldPath": "a." * 300_000, "description": "", "validationCode": "X"})["fieldPath"] == "(redacted)"
