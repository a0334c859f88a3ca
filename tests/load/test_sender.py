"""The sender against the real local endpoint: retries, backoff, no retry on 4xx, resets, secrets."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest

from etl.collector import CollectorServer, read_store
from etl.load import HttpTransport, Ledger, OutboxTransport, RetryPolicy, send_pending
from etl.load.sender import check_minimal
from etl.policy import PrivacyViolation

SECRET = "sentinel-secret-3b1d"
MID = "G-TESTSEND1"
NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
NOW_MICROS = int(NOW.timestamp()) * 1_000_000
FAST = RetryPolicy(max_attempts=8, base_s=0.01, max_s=0.2)


def _plan(ledger: Ledger, n: int, clients: int = 10) -> list[str]:
    rows, keys = [], []
    for i in range(n):
        tid = f"T-{i:05d}"
        key = f"crm|purchase|{tid}"
        event = {"name": "purchase", "timestamp_micros": NOW_MICROS - 3_600_000_000,
                 "params": {"transaction_id": tid, "value": 10.5, "currency": "EUR", "engagement_time_msec": 1,
                            "mpetl_run": "r1"}}
        rows.append({"source": "crm", "row": i + 1, "event_key": key, "event_name": "purchase",
                     "client_id": f"{100 + i % clients}.1700000000", "user_id": None, "consent_json": None,
                     "timestamp_micros": event["timestamp_micros"], "event_date": "20261121", "transaction_id": tid,
                     "has_session": False, "event_json": orjson.dumps(event).decode()})
        keys.append(key)
    ledger.plan(pd.DataFrame(rows), "r1")
    return keys


def _stored_ids(data_dir) -> list[str]:
    store = read_store(data_dir)
    if store.empty:
        return []
    return [next(p["value"]["string_value"] for p in params if p["key"] == "transaction_id")
            for params in store["event_params"]]


def _send(ledger, server_url, concurrency=8, policy=FAST):
    transport = HttpTransport(server_url, MID, SECRET, concurrency=concurrency, timeout_s=5)
    return send_pending(ledger, transport, run_id="r1", now_micros=NOW_MICROS, policy=policy,
                        concurrency=concurrency, seed=1)


def test_every_event_arrives_exactly_once_through_5xx_and_429(tmp_path):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW, fail_rate=0.2,
                         throttle_rate=0.1, latency_ms=5, latency_jitter_ms=20, seed=3) as server, \
            Ledger(tmp_path / "l.sqlite") as ledger:
        keys = _plan(ledger, 300)
        stats = _send(ledger, server.url, policy=RetryPolicy(max_attempts=10, base_s=0.01, max_s=0.05))
        faults = server.stats()
    ids = _stored_ids(tmp_path / "store")
    assert sorted(ids) == sorted(k.split("|")[-1] for k in keys)  # all, once each
    assert stats.events_sent == 300 and stats.events_failed == 0
    assert stats.retries > 0 and stats.http_statuses.get("429", 0) > 0 and stats.http_statuses.get("500", 0) + stats.http_statuses.get("503", 0) > 0
    assert faults["events_stored"] == 300


def test_a_lost_answer_may_duplicate_and_is_flagged(tmp_path):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW, reset_rate=0.3,
                         seed=5) as server, Ledger(tmp_path / "l.sqlite") as ledger:
        _plan(ledger, 200)
        stats = _send(ledger, server.url)
        flagged = {r[0] for r in ledger.db.execute(
            "SELECT transaction_id FROM events WHERE possible_duplicate = 1")}
    ids = pd.Series(_stored_ids(tmp_path / "store"))
    assert set(ids) == {f"T-{i:05d}" for i in range(200)}
    duplicated = set(ids[ids.duplicated()])
    assert duplicated, "a 30 % reset rate should have duplicated something"
    assert duplicated <= flagged
    assert stats.possible_duplicates == len(flagged)


def test_other_4xx_is_not_retried_and_marks_failed(tmp_path):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server, \
            Ledger(tmp_path / "l.sqlite") as ledger:
        _plan(ledger, 5, clients=1)
        stats = _send(ledger, server.url + "/no-such-prefix")
        rows = ledger.db.execute("SELECT status, http_status, attempts FROM events").fetchall()
    assert stats.events_failed == 5 and stats.retries == 0
    assert {r for r in rows} == {("failed", 404, 1)}


def test_endpoint_down_exhausts_retries_then_a_later_run_delivers(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        _plan(ledger, 30)
        started = time.monotonic()
        stats = _send(ledger, "http://127.0.0.1:9", policy=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.02))
        assert time.monotonic() - started < 20
        assert stats.events_failed == 30 and stats.events_sent == 0
        assert stats.last_error and SECRET not in stats.last_error
        assert ledger.db.execute("SELECT COUNT(*) FROM events WHERE status = 'failed'").fetchone()[0] == 30
        with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server:
            again = _send(ledger, server.url)
    assert again.events_sent == 30
    assert len(_stored_ids(tmp_path / "store")) == 30


def test_nothing_pending_means_nothing_sent(tmp_path):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server, \
            Ledger(tmp_path / "l.sqlite") as ledger:
        _plan(ledger, 40)
        assert _send(ledger, server.url).events_sent == 40
        after_first = server.stats()["requests"]
        rerun = _send(ledger, server.url)
        after_rerun = server.stats()["requests"]
    assert rerun.events_sent == 0 and rerun.total_events == 0
    assert after_first == 10  # 40 events of 10 clients: one request per client
    assert after_rerun == after_first
    assert len(_stored_ids(tmp_path / "store")) == 40


def test_dry_run_outbox_holds_the_exact_bodies(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        _plan(ledger, 60, clients=2)
        stats = send_pending(ledger, OutboxTransport(tmp_path / "requests.ndjson"), run_id="r1",
                             now_micros=NOW_MICROS, policy=FAST, concurrency=4)
    bodies = [orjson.loads(line) for line in (tmp_path / "requests.ndjson").read_bytes().splitlines()]
    assert stats.events_sent == 60
    assert sum(len(b["events"]) for b in bodies) == 60
    assert all(len(b["events"]) <= 25 and set(b) <= {"client_id", "events", "consent", "user_id"} for b in bodies)
    assert SECRET not in (tmp_path / "requests.ndjson").read_text()


def test_a_field_outside_the_allowlist_stops_the_run():
    with pytest.raises(PrivacyViolation, match="purchase.customer_email"):
        check_minimal({"client_id": "1.2", "events": [{"name": "purchase", "params": {"customer_email": "x"}}]}, None)
    with pytest.raises(PrivacyViolation, match="ip_override"):
        check_minimal({"client_id": "1.2", "ip_override": "1.2.3.4", "events": []}, None)
