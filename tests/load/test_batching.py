"""Requests: one identity each, at most 25 events, at most 130 kB, nothing lost or reordered."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.load import PendingEvent, build_requests
from etl.load.batching import Oversized, Request
from etl.protocol import rules


def _event(i: int, client: str = "1.2", pad: int = 0, consent: str | None = None) -> PendingEvent:
    body = {"name": "purchase", "timestamp_micros": 1, "params": {"transaction_id": f"T{i}", "coupon": "x" * pad}}
    return PendingEvent(f"k{i}", client, None, consent, orjson.dumps(body))


def test_splits_at_25_events_and_at_identity_changes():
    events = [_event(i) for i in range(60)] + [_event(100 + i, client="3.4") for i in range(3)]
    requests = list(build_requests(events))
    assert [len(r.keys) for r in requests] == [25, 25, 10, 3]
    for r in requests:
        body = orjson.loads(r.body)
        assert len({body["client_id"]}) == 1 and len(body["events"]) == len(r.keys)
    assert orjson.loads(requests[-1].body)["client_id"] == "3.4"


def test_splits_by_size_below_the_limit():
    events = [_event(i, pad=20_000) for i in range(20)]
    requests = list(build_requests(events))
    assert all(isinstance(r, Request) and len(r.body) <= rules.MAX_BODY_BYTES for r in requests)
    assert sum(len(r.keys) for r in requests) == 20
    assert len(requests) > 1


def test_consent_object_rides_at_request_level():
    consent = '{"ad_user_data":"DENIED","ad_personalization":"DENIED"}'
    (request,) = build_requests([_event(1, consent=consent)])
    assert orjson.loads(request.body)["consent"] == {"ad_user_data": "DENIED", "ad_personalization": "DENIED"}


def test_an_event_too_large_for_any_request_is_reported_not_dropped():
    out = list(build_requests([_event(1), _event(2, pad=140_000), _event(3)]))
    assert [type(x).__name__ for x in out] == ["Request", "Oversized", "Request"]
    assert isinstance(out[1], Oversized) and out[1].key == "k2"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1.1", "2.2", "3.3"]), st.integers(0, 9000)), max_size=120))
def test_every_event_lands_in_exactly_one_request(spec):
    events = sorted(
        (_event(i, client=c, pad=p) for i, (c, p) in enumerate(spec)), key=lambda e: e.client_id
    )
    requests = [r for r in build_requests(events) if isinstance(r, Request)]
    keys = [k for r in requests for k in r.keys]
    assert keys == [e.event_key for e in events]
    for r in requests:
        assert len(r.keys) <= 25 and len(r.body) <= rules.MAX_BODY_BYTES
        assert len(orjson.loads(r.body)["events"]) == len(r.keys)


def test_user_id_is_part_of_the_request_identity():
    plain = _event(1)
    with_user = PendingEvent("k2", "1.2", "CUST-7", None, plain.event_json)
    requests = list(build_requests([plain, with_user]))
    assert [orjson.loads(r.body).get("user_id") for r in requests] == [None, "CUST-7"]
