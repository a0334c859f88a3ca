"""The local Data Manager endpoint fails the way Google documents (errors page, limits page), never kinder.

Tokens come from google-auth's real service-account refresh against the collector's /token.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx
import orjson
import pytest

from etl.collector import CollectorServer
from etl.collector.datamanager import make_service_account
from etl.collector.faults import FaultOptions
from etl.load.batching import Request
from etl.load.datamanager import SCOPE, CredentialsError, Destination, TokenSource, build_dm_requests
from etl.load.datamanager.errors import parse_error
from etl.load.ledger import PendingEvent

MID = "G-K7QW2ZP9LM"
PROPERTY = "123456789"
# The endpoint's clock is this process's (assertions are checked against it, as Google checks its own).
NOW_US = int(dt.datetime.now(dt.UTC).timestamp()) * 1_000_000
DEST = Destination(PROPERTY, MID)


def _server(tmp_path: Path, **options) -> tuple[CollectorServer, TokenSource]:
    info, trust = make_service_account()
    server = CollectorServer(tmp_path / "store", measurement_id=MID, api_secret="s3cret-mp", timezone="UTC",
                             dm_trust=trust, property_id=PROPERTY, **options).start()
    from google.oauth2 import service_account

    info["token_uri"] = server.url + "/token"
    creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    return server, TokenSource(creds)


@pytest.fixture
def dm(tmp_path):
    server, tokens = _server(tmp_path)
    yield server, tokens
    server.stop()


def _events(n: int, *, age_h: float = 2.0, tid: str = "T") -> list[PendingEvent]:
    ts = NOW_US - int(age_h * 3600 * 1_000_000)
    params = orjson.dumps({"transaction_id": "x", "value": 12.5, "currency": "EUR", "session_id": 1795000000,
                           "items": [{"item_id": "SKU", "price": 12.5, "quantity": 1}]})
    return [PendingEvent(i, f"s|purchase|{tid}-{i}", f"{1000 + i}.1763000000", None, 0, "purchase", ts + i,
                         params.replace(b'"x"', orjson.dumps(f"{tid}-{i}")), i) for i in range(n)]


def _body(events, **kw) -> bytes:
    return next(build_dm_requests(events, run_id="R1", destination=DEST, max_bytes=10**8, **kw)).body


def _post(server, body: bytes, token: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    return httpx.post(server.url + "/v1/events:ingest", content=body, headers=headers, timeout=30)


def _stored(server) -> list[dict]:
    return [orjson.loads(line) for f in sorted(server.data_dir.glob("events_*.ndjson")) for line in f.read_bytes().splitlines()]


def test_google_auth_gets_a_token_from_the_local_token_endpoint_and_a_stranger_is_refused(dm, tmp_path):
    server, tokens = dm
    token = tokens.token()
    assert token.startswith("ya29.local-") and tokens.refreshes == 1
    assert tokens.token() == token and tokens.refreshes == 1  # still valid: no second refresh
    stranger, _ = make_service_account(server.url + "/token")  # a key the endpoint does not trust
    from google.oauth2 import service_account

    other = TokenSource(service_account.Credentials.from_service_account_info(stranger, scopes=[SCOPE]), label="x.json")
    with pytest.raises(CredentialsError, match=r"^x\.json: the token endpoint refused the credentials \(invalid_grant"):
        other.token()
    assert server.stats()["tokens_issued"] == 1 and server.stats()["tokens_refused"] == 1


def test_ingest_refuses_a_missing_wrong_or_expired_token_with_googles_401(tmp_path):
    server, tokens = _server(tmp_path, dm_token_ttl_s=1.0)
    try:
        body = _body(_events(1))
        for token in (None, "ya29.forged"):
            answer = _post(server, body, token)
            assert answer.status_code == 401
            assert answer.json()["error"]["status"] == "UNAUTHENTICATED" and answer.json()["error"]["code"] == 401
        token = tokens.token()
        assert _post(server, body, token).status_code == 200
        time.sleep(1.1)
        assert _post(server, body, token).status_code == 401  # expired at the endpoint
        assert _post(server, body, tokens.token()).status_code == 200  # the source refreshes before expiry
        assert tokens.refreshes == 2
        assert len(_stored(server)) == 2 and server.stats()["dm_unauthorized"] == 3
    finally:
        server.stop()


def test_more_than_2000_events_or_over_10_mib_fail_the_whole_request(dm):
    server, tokens = dm
    answer = _post(server, _body(_events(2001), max_events=2001), tokens.token())
    assert answer.status_code == 400
    error = parse_error(400, answer.content)
    assert (error.status, error.reason, error.request_level) == ("INVALID_ARGUMENT", "TOO_MANY_EVENTS", True)
    big = b'{"destinations":[],"events":[' + b" " * (10 * 1024 * 1024) + b"]}"
    answer = _post(server, big, tokens.token())
    assert answer.status_code == 400 and "10485760 bytes" in answer.json()["error"]["message"]
    assert _stored(server) == []


def test_fast_fail_one_bad_event_fails_the_request_and_names_it(dm):
    server, tokens = dm
    events = _events(3)
    old = _events(1, age_h=73, tid="OLD")[0]  # older than GA's 72 h by this endpoint's clock
    body = orjson.loads(_body([*events, old]))
    body["events"][1]["eventTimestamp"] = "2026-11-21 04:00:00"  # not RFC 3339
    answer = _post(server, orjson.dumps(body), tokens.token())
    assert answer.status_code == 400
    error = parse_error(400, answer.content)
    assert not error.request_level and sorted(error.by_event) == [1, 3]
    assert [(e.field, e.reason) for e in error.by_event[1]] == [("eventTimestamp", "INVALID_FORMAT")]
    assert [(e.field, e.reason) for e in error.by_event[3]] == [("eventTimestamp", "EVENT_TIME_INVALID")]
    assert _stored(server) == []  # nothing of a failed request is processed
    assert server.stats()["events_refused"] == 4


def test_validate_only_checks_and_stores_nothing(dm):
    server, tokens = dm
    answer = _post(server, _body(_events(5), validate_only=True), tokens.token())
    assert answer.status_code == 200 and answer.json() == {}  # "only errors are returned, not results"
    assert _stored(server) == [] and server.stats()["dm_validate_requests"] == 1


def test_a_destination_of_another_property_or_stream_is_permission_denied(dm):
    server, tokens = dm
    for destination in (Destination("987654321", MID), Destination(PROPERTY, "G-OTHER")):
        body = next(build_dm_requests(_events(1), run_id="R1", destination=destination, max_bytes=10**6)).body
        answer = _post(server, body, tokens.token())
        assert answer.status_code == 403 and answer.json()["error"]["status"] == "PERMISSION_DENIED"
    assert _stored(server) == []


def test_stored_rows_are_the_same_export_rows_the_mp_path_stores(dm, tmp_path):
    server, tokens = dm
    events = _events(3)
    assert _post(server, _body(events), tokens.token()).status_code == 200
    mp = CollectorServer(tmp_path / "mp", measurement_id=MID, api_secret="s3cret-mp", timezone="UTC").start()
    try:
        from etl.load.batching import build_requests

        for request in build_requests(events, run_id="R1"):
            assert isinstance(request, Request)
            httpx.post(mp.url + "/mp/collect", params={"measurement_id": MID, "api_secret": "s3cret-mp"},
                       content=request.body, timeout=10)
        over_mp = _stored(mp)
    finally:
        mp.stop()

    def key(row):
        return next(p["value"]["string_value"] for p in row["event_params"] if p["key"] == "transaction_id")

    over_dm = sorted(_stored(server), key=key)
    over_mp = sorted(over_mp, key=key)
    assert len(over_dm) == 3
    for a, b in zip(over_dm, over_mp, strict=True):
        for row in (a, b):
            row.pop("event_server_timestamp_offset")
            row["event_params"].sort(key=lambda p: p["key"])  # the export's params have no order
        assert a == b  # values, params, items, ecommerce, run marker: the same row whichever API carried it


def test_request_status_success_and_a_loss_in_processing_reported_as_failed(tmp_path):
    server, tokens = _server(tmp_path, faults=FaultOptions(drop_rate=1.0))
    try:
        answer = _post(server, _body(_events(4)), tokens.token())
        assert answer.status_code == 200  # accepted ...
        request_id = answer.json()["requestId"]
        status = httpx.get(server.url + "/v1/requestStatus:retrieve", params={"requestId": request_id},
                           headers={"authorization": f"Bearer {tokens.token()}"}).json()
        (one,) = status["requestStatusPerDestination"]
        assert one["requestStatus"] == "FAILED"  # ... and lost: only diagnostics can tell
        assert one["errorInfo"]["errorCounts"] == [{"recordCount": "4", "reason": "PROCESSING_ERROR_REASON_INTERNAL_ERROR"}]
        assert one["eventsIngestionStatus"] == {"recordCount": "4"}
        unknown = httpx.get(server.url + "/v1/requestStatus:retrieve", params={"requestId": "nope"},
                            headers={"authorization": f"Bearer {tokens.token()}"})
        assert unknown.status_code == 400 and parse_error(400, unknown.content).reason == "INVALID_REQUEST_ID"
    finally:
        server.stop()


def test_throttle_is_429_resource_exhausted_with_a_retry_delay(tmp_path):
    server, tokens = _server(tmp_path, faults=FaultOptions(throttle_rate=1.0))
    try:
        answer = _post(server, _body(_events(1)), tokens.token())
        assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
        error = parse_error(429, answer.content)
        assert (error.status, error.retry_delay_s) == ("RESOURCE_EXHAUSTED", 1.0)
    finally:
        server.stop()
