"""GA4's answers: 204 for (almost) everything, drop what is invalid, debug validates and never records."""

from __future__ import annotations

import http.client

import orjson

from etl.collector import read_store
from etl.protocol import MAX_BODY_BYTES


def _stored_tids(mp) -> list[str]:
    frame = read_store(mp.server.data_dir)
    return sorted(frame["ecommerce"].map(lambda e: e["transaction_id"])) if len(frame) else []


def test_invalid_events_are_dropped_and_valid_siblings_kept(mp, build) -> None:
    body = build.request(
        build.purchase("T-ok-1"),
        build.purchase("T-bad-currency", currency="pounds"),
        {"name": "session_start", "timestamp_micros": build.NOW_MICROS},
        build.purchase("T-too-old", ts=build.NOW_MICROS - 73 * build.HOUR),
        build.purchase("T-ok-2"),
    )
    assert mp.collect(body).status_code == 204
    # RELAXED (the default): the event older than 72 h is kept, re-dated (see the next test).
    assert _stored_tids(mp) == ["T-ok-1", "T-ok-2", "T-too-old"]
    stats = mp.stats()
    assert stats["events_received"] == 5
    assert stats["events_stored"] == 3
    assert stats["dropped"] == {"invalid": 2}


def test_relaxed_records_an_old_event_at_72_hours_before_receipt(mp, build) -> None:
    """Google, RELAXED: accepted, timestamp reset to 72 h before receipt: a wrong date, no error."""
    true_time = build.NOW_MICROS - 100 * build.HOUR
    assert mp.collect(build.request(build.purchase("T-old", ts=true_time))).status_code == 204
    [row] = read_store(mp.server.data_dir).to_dict(orient="records")
    assert row["event_timestamp"] == build.NOW_MICROS - 72 * build.HOUR != true_time
    assert row["event_date"] == "20261119"  # 72 h before 2026-11-22 12:00 UTC, not the true 20261118
    assert mp.stats()["events_redated"] == 1


def test_enforce_recommendations_rejects_an_old_event_and_debug_says_why(mp, build) -> None:
    old = build.purchase("T-old", ts=build.NOW_MICROS - 73 * build.HOUR)
    body = build.request(old, build.purchase("T-new"), validation_behavior="ENFORCE_RECOMMENDATIONS")
    assert mp.collect(body).status_code == 204
    assert _stored_tids(mp) == ["T-new"]
    assert mp.stats()["dropped"] == {"too_old": 1}
    [msg] = mp.debug(body).json()["validationMessages"]
    assert (msg["fieldPath"], msg["validationCode"]) == ("events[0].timestamp_micros", "VALUE_OUT_OF_BOUNDS")
    assert "72" in msg["description"]
    relaxed = build.request(old)
    assert mp.debug(relaxed).json() == {"validationMessages": []}  # RELAXED accepts it (re-dated)


def test_invalid_request_level_field_drops_the_whole_request(mp, build) -> None:
    bad_consent = build.request(build.purchase("T-1"), build.purchase("T-2"), consent={"ad_user_data": "yes"})
    no_client = {"events": [build.purchase("T-3")]}
    too_many = build.request(*[build.purchase(f"T-{i}") for i in range(26)])
    for body in (bad_consent, no_client, too_many):
        assert mp.collect(body).status_code == 204
    assert mp.collect(raw=b"{not json").status_code == 204
    assert _stored_tids(mp) == []
    stats = mp.stats()
    assert stats["dropped_requests"] == {"invalid": 4}
    assert stats["dropped"] == {"invalid": 2 + 1 + 26}
    assert stats["events_received"] == stats["events_stored"] + sum(stats["dropped"].values())


def test_oversized_body_is_dropped(mp, build) -> None:
    items = [{"item_id": f"SKU-{j}", "item_name": "n" * 60} for j in range(200)]
    events = [build.purchase(f"T-{i}", items=items) for i in range(10)]
    body = orjson.dumps(build.request(*events))
    assert len(body) > MAX_BODY_BYTES
    assert mp.collect(raw=body).status_code == 204
    assert mp.stats()["events_stored"] == 0
    assert mp.stats()["dropped"] == {"invalid": 10}


def test_future_event_is_dropped_as_future(mp, build) -> None:
    mp.collect(build.request(build.purchase("T-1", ts=build.NOW_MICROS + build.HOUR)))
    assert mp.stats()["dropped"] == {"future": 1}


def test_wrong_or_missing_credentials_answer_204_and_record_nothing(mp, build) -> None:
    body = build.request(build.purchase("T-1"))
    assert mp.collect(body, secret="not-the-secret").status_code == 204
    assert mp.collect(body, mid="G-OTHER").status_code == 204
    assert mp.collect(body, secret="").status_code == 204
    assert mp.http.post("/mp/collect", json=body).status_code == 204
    assert _stored_tids(mp) == []
    assert list(mp.server.data_dir.glob("events_*")) == []
    stats = mp.stats()
    assert stats["dropped_requests"] == {"bad_auth": 4}
    assert stats["dropped"] == {"bad_auth": 4}


def test_debug_validates_and_never_records(mp, build) -> None:
    good = build.request(build.purchase("T-1"))
    answer = mp.debug(good)
    assert answer.status_code == 200
    assert answer.json() == {"validationMessages": []}

    bad = build.request(build.purchase("T-2", currency="EURO"))
    [msg] = mp.debug(bad).json()["validationMessages"]
    assert msg == {
        "fieldPath": "events[0].params.currency",
        "description": msg["description"],
        "validationCode": "VALUE_INVALID",
    }
    assert "EURO" not in msg["description"]

    future = build.request(build.purchase("T-3", ts=build.NOW_MICROS + 2 * build.HOUR))
    assert [m["fieldPath"] for m in mp.debug(future).json()["validationMessages"]] == ["events[0].timestamp_micros"]

    assert list(mp.server.data_dir.glob("events_*")) == []
    assert mp.stats()["events_stored"] == 0
    assert mp.stats()["debug_requests"] == 3


def test_debug_cannot_tell_a_wrong_secret_or_stream(mp, build) -> None:
    """Google's debug endpoint does not check credentials: only the export shows a wrong secret."""
    wrong = "wrong-Secret-Value-777"
    answer = mp.debug(build.request(build.purchase("T-1")), secret=wrong, mid="G-OTHER")
    assert answer.json() == {"validationMessages": []}
    assert wrong not in answer.text
    assert build.API_SECRET not in answer.text
    assert list(mp.server.data_dir.glob("events_*")) == []


def test_stats_and_unknown_paths(mp) -> None:
    assert mp.http.get("/__stats").headers["content-type"] == "application/json"
    assert mp.http.get("/mp/collect").status_code == 405
    assert mp.http.post("/elsewhere", content=b"{}").status_code == 404
    assert mp.http.get("/").status_code == 404


def test_keep_alive_and_chunked_bodies(mp, build) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", mp.server.port, timeout=5)
    path = f"/mp/collect?measurement_id={build.MEASUREMENT_ID}&api_secret={build.API_SECRET}"
    conn.request("POST", path, body=orjson.dumps(build.request(build.purchase("T-1"))))
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    chunks = iter([orjson.dumps(build.request(build.purchase("T-2")))])
    conn.request("POST", path, body=chunks, encode_chunked=True)
    second = conn.getresponse()
    second.read()
    assert (first.status, second.status) == (204, 204)
    assert conn.sock is sock  # the same TCP connection served both
    conn.close()
    assert _stored_tids(mp) == ["T-1", "T-2"]


def test_concurrent_senders_never_interleave_lines(mp, build) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def send(worker: int) -> int:
        with httpx.Client(base_url=mp.server.url, timeout=10) as client:
            for i in range(20):
                events = [build.purchase(f"W{worker}-{i}-{j}", note="x" * 100) for j in range(25)]
                params = {"measurement_id": build.MEASUREMENT_ID, "api_secret": build.API_SECRET}
                assert client.post("/mp/collect", params=params, json=build.request(*events)).status_code == 204
        return 20 * 25

    with ThreadPoolExecutor(max_workers=6) as pool:
        sent = sum(pool.map(send, range(6)))
    lines = (mp.server.data_dir / "events_20261122.ndjson").read_bytes().splitlines()
    assert len(lines) == sent == 3000
    assert len({orjson.loads(line)["ecommerce"]["transaction_id"] for line in lines}) == sent
