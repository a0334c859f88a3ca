"""The sender against the real local endpoint: retries, backoff, no retry on 4xx, resets, secrets."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest

from etl.collector import CollectorServer, FaultOptions, read_store
from etl.load import HttpTransport, Ledger, OutboxTransport, RetryPolicy, SendSettings, send_pending
from etl.load.sender import check_minimal
from etl.policy import PrivacyViolation
from tests.load.conftest import events_frame

SECRET = "sentinel-secret-3b1d"
MID = "G-TESTSEND1"
NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
NOW_MICROS = int(NOW.timestamp()) * 1_000_000
FAST = RetryPolicy(max_attempts=8, base_s=0.01, max_s=0.2)


def _plan(ledger: Ledger, n: int, clients: int = 10) -> list[str]:
    keys = []
    ledger.begin_run("r1", "send")
    for i in range(n):
        key = f"crm|purchase|T-{i:05d}"
        frame = events_frame([key], f"{100 + i % clients}.1700000000", ts=NOW_MICROS - 3_600_000_000)
        frame["row"] = i + 1
        ledger.plan(frame, "r1", oldest_sendable_micros=NOW_MICROS - 71 * 3_600_000_000)
        keys.append(key)
    return keys


def _stored_ids(data_dir) -> list[str]:
    store = read_store(data_dir)
    if store.empty:
        return []
    return [next(p["value"]["string_value"] for p in params if p["key"] == "transaction_id")
            for params in store["event_params"]]


def _settings(concurrency=8, policy=FAST, **kw) -> SendSettings:
    return SendSettings(run_id="r1", policy=policy, concurrency=concurrency, max_age_micros=71 * 3_600_000_000,
                        clock=lambda: NOW_MICROS, seed=1, **kw)


def _send(ledger, server_url, concurrency=8, policy=FAST, **kw):
    transport = HttpTransport(server_url, MID, SECRET, concurrency=concurrency, timeout_s=5)
    return send_pending(ledger, transport, _settings(concurrency, policy, **kw))


def test_every_event_arrives_exactly_once_through_5xx_and_429(tmp_path, make_ledger):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW, faults=FaultOptions(
                         fail_rate=0.2, throttle_rate=0.1, latency_ms=5, latency_jitter_ms=20, seed=3)) as server, \
            make_ledger() as ledger:
        keys = _plan(ledger, 300)
        stats = _send(ledger, server.url, policy=RetryPolicy(max_attempts=10, base_s=0.01, max_s=0.05))
        faults = server.stats()
    ids = _stored_ids(tmp_path / "store")
    assert sorted(ids) == sorted(k.split("|")[-1] for k in keys)  # all, once each
    assert stats.events_sent == 300 and stats.events_failed == 0
    assert stats.retries > 0 and stats.http_statuses.get("429", 0) > 0 and stats.http_statuses.get("500", 0) + stats.http_statuses.get("503", 0) > 0
    assert faults["events_stored"] == 300


def test_a_lost_answer_may_duplicate_and_is_flagged(tmp_path, make_ledger):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW,
                         faults=FaultOptions(reset_rate=0.3, seed=5)) as server, make_ledger() as ledger:
        _plan(ledger, 200)
        stats = _send(ledger, server.url)
        sent = ledger.for_reconcile(run_id="r1")
        flagged = set(sent.loc[sent["possible_duplicate"], "transaction_id"])
    ids = pd.Series(_stored_ids(tmp_path / "store"))
    assert set(ids) == {f"T-{i:05d}" for i in range(200)}
    duplicated = set(ids[ids.duplicated()])
    assert duplicated, "a 30 % reset rate should have duplicated something"
    assert duplicated <= flagged
    assert stats.possible_duplicates == len(flagged)


def test_other_4xx_is_not_retried_and_marks_failed(tmp_path, make_ledger):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server, \
            make_ledger() as ledger:
        _plan(ledger, 5, clients=1)
        stats = _send(ledger, server.url + "/no-such-prefix")
        outcome = ledger.outcome("r1")
        refused = ledger.snapshot_pending()
    assert stats.events_failed == 5 and stats.retries == 0 and stats.http_statuses == {"404": 1}
    assert outcome.by_source == {"crm": {"failed": 5}} and refused == 5


def test_endpoint_down_exhausts_retries_then_a_later_run_delivers(tmp_path, make_ledger):
    with make_ledger() as ledger:
        _plan(ledger, 30)
        started = time.monotonic()
        stats = _send(ledger, "http://127.0.0.1:9", policy=RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.02))
        assert time.monotonic() - started < 20
        assert stats.events_failed == 30 and stats.events_sent == 0
        assert stats.last_error and SECRET not in stats.last_error
        assert ledger.outcome("r1").by_source == {"crm": {"failed": 30}}
        with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server:
            again = _send(ledger, server.url)
    assert again.events_sent == 30
    assert len(_stored_ids(tmp_path / "store")) == 30


def test_nothing_pending_means_nothing_sent(tmp_path, make_ledger):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server, \
            make_ledger() as ledger:
        _plan(ledger, 40)
        assert _send(ledger, server.url).events_sent == 40
        after_first = server.stats()["requests"]
        rerun = _send(ledger, server.url)
        after_rerun = server.stats()["requests"]
    assert rerun.events_sent == 0 and rerun.total_events == 0
    assert after_first == 10  # 40 events of 10 clients: one request per client
    assert after_rerun == after_first
    assert len(_stored_ids(tmp_path / "store")) == 40


def test_dry_run_outbox_holds_the_exact_bodies(tmp_path, make_ledger):
    with make_ledger() as ledger:
        _plan(ledger, 60, clients=2)
        stats = send_pending(ledger, OutboxTransport(tmp_path / "requests.ndjson"), _settings(4))
    bodies = [orjson.loads(line) for line in (tmp_path / "requests.ndjson").read_bytes().splitlines()]
    assert stats.events_sent == 60
    assert sum(len(b["events"]) for b in bodies) == 60
    assert all(len(b["events"]) <= 25 and set(b) <= {"client_id", "events", "consent", "user_id"}
               and all(e["params"]["mpetl_run"] == "r1" for e in b["events"]) for b in bodies)
    assert SECRET not in (tmp_path / "requests.ndjson").read_text()


def test_a_field_outside_the_allowlist_stops_the_run():
    with pytest.raises(PrivacyViolation, match="purchase.customer_email"):
        check_minimal({"client_id": "1.2", "events": [{"name": "purchase", "params": {"customer_email": "x"}}]}, None)
    with pytest.raises(PrivacyViolation, match="ip_override"):
        check_minimal({"client_id": "1.2", "ip_override": "1.2.3.4", "events": []}, None)


class _Dribbler:
    """A server that answers one byte every `gap_s` and never finishes: httpx's per-read timeout never fires."""

    def __init__(self, gap_s: float = 0.3) -> None:
        import socket
        import threading

        self.gap_s = gap_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    def _dribble(self, conn) -> None:
        conn.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
        for byte in answer:
            if self.stop.is_set():
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            time.sleep(self.gap_s)
        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_dribbling_server_cannot_hold_the_run_past_its_deadlines(tmp_path, make_ledger):
    server = _Dribbler()
    try:
        with make_ledger() as ledger:
            _plan(ledger, 6, clients=2)
            started = time.monotonic()
            stats = _send(ledger, server.url, policy=RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02),
                          request_deadline_s=1.0)
            elapsed = time.monotonic() - started
            assert ledger.outcome("r1").by_source == {"crm": {"failed": 6}}
    finally:
        server.close()
    assert elapsed < 10, f"the run took {elapsed:.1f} s against a 1 s request deadline"
    assert stats.events_failed == 6 and stats.http_statuses == {"no_answer": 4}
    assert stats.possible_duplicates == 0  # nothing was marked sent


def test_a_stale_event_is_split_out_and_its_clients_fresh_events_still_go(tmp_path, make_ledger):
    with CollectorServer(tmp_path / "store", measurement_id=MID, api_secret=SECRET, now=NOW) as server, \
            make_ledger() as ledger:
        ledger.begin_run("r1", "send")
        fresh = events_frame(["crm|purchase|F1", "crm|purchase|F2"], "7.7", ts=NOW_MICROS - 3_600_000_000)
        aging = events_frame(["crm|purchase|AGING"], "7.7", ts=NOW_MICROS - 70 * 3_600_000_000)
        for frame in (fresh, aging):
            ledger.plan(frame, "r1", oldest_sendable_micros=NOW_MICROS - 71 * 3_600_000_000)
        # Two hours pass before the send (a long queue, a retry): AGING is now past the window.
        transport = HttpTransport(server.url, MID, SECRET, concurrency=2, timeout_s=5)
        stats = send_pending(ledger, transport, SendSettings(
            run_id="r1", policy=FAST, concurrency=2, max_age_micros=71 * 3_600_000_000,
            clock=lambda: NOW_MICROS + 2 * 3_600_000_000))
        expired = [e.event_key for e in ledger.deferred_events(run_id="r1")]
    assert sorted(_stored_ids(tmp_path / "store")) == ["F1", "F2"]
    assert expired == ["crm|purchase|AGING"] and stats.expired == 1 and stats.events_sent == 2


def test_an_event_too_large_to_send_is_refused_with_its_row_never_silently(tmp_path, make_ledger):
    with make_ledger() as ledger:
        ledger.begin_run("r1", "send")
        big = events_frame(["crm|purchase|BIG"], "5.5", ts=NOW_MICROS - 3_600_000_000)
        big["event_json"] = big["event_json"].str.replace('"currency":"EUR"', '"currency":"EUR","coupon":"' + "x" * 140_000 + '"',
                                                          regex=False)
        big["row"] = 42
        ledger.plan(big, "r1", oldest_sendable_micros=NOW_MICROS - 71 * 3_600_000_000)
        stats = send_pending(ledger, OutboxTransport(tmp_path / "requests.ndjson"), _settings(2))
        assert ledger.rejected_at_send("r1") == [("crm", 42, ledger.rejected_at_send("r1")[0][2])]
        assert "130 kB" in ledger.rejected_at_send("r1")[0][2]
        assert ledger.snapshot_pending() == 0  # final: it does not fail every night
    assert stats.rejected_at_send == 1 and stats.events_sent == 0
