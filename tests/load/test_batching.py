"""Requests: one identity each, at most 25 events, at most 130 kB, nothing lost or reordered."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load import PendingEvent, build_requests
from etl.load.batching import Oversized, Request
from etl.load.ledger import consent_code
from etl.protocol import rules


def _event(i: int, client: str = "1.2", pad: int = 0, consent: str | None = None, user: str | None = None) -> PendingEvent:
    params = orjson.dumps({"transaction_id": f"T{i}", "coupon": "x" * pad})
    return PendingEvent(i, f"crm|purchase|T{i}", client, user, consent_code(consent), "purchase", 1_700_000_000_000_000,
                        params)


def _requests(events, **kw):
    return list(build_requests(events, run_id="run-1", **kw))


def test_splits_at_25_events_and_at_identity_changes():
    events = [_event(i) for i in range(60)] + [_event(100 + i, client="3.4") for i in range(3)]
    requests = _requests(events)
    assert [len(r.ids) for r in requests] == [25, 25, 10, 3]
    for r in requests:
        body = orjson.loads(r.body)
        assert len({body["client_id"]}) == 1 and len(body["events"]) == len(r.ids)
    assert orjson.loads(requests[-1].body)["client_id"] == "3.4"


def test_every_event_carries_the_sending_runs_marker_and_its_own_time():
    (request,) = _requests([_event(1), _event(2)])
    events = orjson.loads(request.body)["events"]
    assert [e["params"]["mpetl_run"] for e in events] == ["run-1", "run-1"]
    assert [e["params"]["transaction_id"] for e in events] == ["T1", "T2"]
    assert {e["timestamp_micros"] for e in events} == {1_700_000_000_000_000}


def test_only_an_event_resend_requeued_carries_the_resend_marker():
    original = _event(1)
    resent = PendingEvent(2, "crm|purchase|T2", "1.2", None, 0, "purchase", 1_700_000_000_000_000,
                          orjson.dumps({"transaction_id": "T2"}), resent=True)
    (request,) = list(build_requests([original, resent], run_id="resend-9"))
    events = orjson.loads(request.body)["events"]
    assert [e["params"].get("mpetl_resend") for e in events] == [None, "resend-9"]
    assert [e["params"]["mpetl_run"] for e in events] == ["resend-9", "resend-9"]


def test_splits_by_size_below_the_limit():
    events = [_event(i, pad=20_000) for i in range(20)]
    requests = _requests(events)
    assert all(isinstance(r, Request) and len(r.body) <= rules.MAX_BODY_BYTES for r in requests)
    assert sum(len(r.ids) for r in requests) == 20
    assert len(requests) > 1


def test_consent_object_rides_at_request_level():
    consent = '{"ad_user_data":"DENIED","ad_personalization":"GRANTED"}'
    (request,) = _requests([_event(1, consent=consent)])
    assert orjson.loads(request.body)["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "GRANTED"}


def test_validation_behavior_rides_at_request_level_when_asked():
    (request,) = _requests([_event(1)], validation_behavior="ENFORCE_RECOMMENDATIONS")
    assert orjson.loads(request.body)["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
    (plain,) = _requests([_event(1)])
    assert "validation_behavior" not in orjson.loads(plain.body)


def test_an_event_too_large_for_any_request_is_reported_not_dropped():
    out = _requests([_event(1), _event(2, pad=140_000), _event(3)])
    assert [type(x).__name__ for x in out] == ["Request", "Oversized", "Request"]
    assert isinstance(out[1], Oversized) and out[1].event.id == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1.1", "2.2", "3.3"]), st.integers(0, 9000)), max_size=120))
def test_every_event_lands_in_exactly_one_request(spec):
    events = sorted((_event(i, client=c, pad=p) for i, (c, p) in enumerate(spec)), key=lambda e: e.client_id)
    requests = [r for r in _requests(events) if isinstance(r, Request)]
    ids = [k for r in requests for k in r.ids]
    assert ids == [e.id for e in events]
    for r in requests:
        assert len(r.ids) <= 25 and len(r.body) <= rules.MAX_BODY_BYTES
        assert len(orjson.loads(r.body)["events"]) == len(r.ids)


def test_user_id_is_part_of_the_request_identity():
    requests = _requests([_event(1), _event(2, user="CUST-7")])
    assert [orjson.loads(r.body).get("user_id") for r in requests] == [None, "CUST-7"]
