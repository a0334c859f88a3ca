"""Issue 26 in the load stage: a request carries one identity and one place, on both ledger backends.

MP takes `user_location` and `device` once per request for all its events: were two stores' orders of
one client batched together, one store would get the other's sale. The ledger keeps each event's place
(compactly: an id into a table of the distinct places) across runs, so a retried event leaves with the
store it was planned with; an app stream's requests name the client `app_instance_id`.
"""

from __future__ import annotations

import sqlite3

import orjson

from etl.load import build_requests
from tests.load.conftest import T0, events_frame

HOUR = 3_600_000_000
SOHO = '"user_location":{"city":"London","region_id":"GB-WSM","country_id":"GB"}'
ARNDALE = '"user_location":{"city":"Manchester","region_id":"GB-MAN","country_id":"GB"},"device":{"category":"tablet"}'


def _pending_requests(ledger, **kw):
    ledger.snapshot_pending()
    return [orjson.loads(r.body) for r in build_requests(ledger.iter_pending(), run_id="run-2", **kw)]


def test_one_clients_orders_at_two_stores_leave_in_two_requests_each_with_its_store(make_ledger):
    ledger = make_ledger(lock=True)
    ledger.begin_run("run-1", "send")
    keys = [f"pos|purchase|T{i}" for i in range(6)]
    places = [SOHO, ARNDALE, None, SOHO, ARNDALE, SOHO]
    ledger.plan(events_frame(keys, places=places), "run-1", oldest_sendable_micros=T0 - 71 * HOUR)
    bodies = _pending_requests(ledger)
    by_tid = {tuple(sorted(e["params"]["transaction_id"] for e in b["events"])): b for b in bodies}
    assert sorted(by_tid) == [("T0", "T3", "T5"), ("T1", "T4"), ("T2",)]
    assert by_tid[("T0", "T3", "T5")]["user_location"]["city"] == "London" and "device" not in by_tid[("T0", "T3", "T5")]
    assert by_tid[("T1", "T4")]["user_location"]["region_id"] == "GB-MAN"
    assert by_tid[("T1", "T4")]["device"] == {"category": "tablet"}
    assert "user_location" not in by_tid[("T2",)] and all(b["client_id"] == "111.222" for b in bodies)


def test_a_retried_event_leaves_later_with_the_store_it_was_planned_with(make_ledger):
    ledger = make_ledger(lock=True)
    ledger.begin_run("run-1", "send")
    ledger.plan(events_frame(["pos|purchase|T1"], places=[ARNDALE]), "run-1", oldest_sendable_micros=T0 - 71 * HOUR)
    ledger.snapshot_pending()
    [event] = list(ledger.iter_pending())
    ledger.mark_in_flight([event.id])
    ledger.mark_failed([event.id], "run-1", attempts=[1], maybe_delivered=[False], reason="http 503")
    ledger.close()
    later = make_ledger(lock=True)
    later.begin_run("run-2", "send")
    [body] = _pending_requests(later)
    assert body["user_location"]["city"] == "Manchester" and body["device"] == {"category": "tablet"}


def test_an_app_streams_requests_name_the_client_app_instance_id(make_ledger):
    ledger = make_ledger(lock=True, measurement_id="1:1234567890:android:321abc456def7890")
    ledger.begin_run("run-1", "send")
    instance = "0123456789abcdef0123456789abcdef"
    ledger.plan(events_frame(["play|purchase|GPA-1"], client=instance), "run-1", oldest_sendable_micros=T0 - 71 * HOUR)
    [body] = _pending_requests(ledger, identity_field="app_instance_id")
    assert body["app_instance_id"] == instance and "client_id" not in body


def test_sqlite_keeps_each_distinct_place_once(tmp_path):
    from etl.load import SqliteLedger

    path = tmp_path / "ledger.sqlite"
    with SqliteLedger(path, lock=True, clock=lambda: T0) as ledger:
        ledger.bind_property("G-TESTSEND1", "http://127.0.0.1")
        ledger.begin_run("run-1", "send")
        keys = [f"pos|purchase|T{i}" for i in range(300)]
        ledger.plan(events_frame(keys, places=[SOHO if i % 3 else ARNDALE for i in range(300)]), "run-1",
                    oldest_sendable_micros=T0 - 71 * HOUR)
    db = sqlite3.connect(path)
    assert sorted(m for (m,) in db.execute("SELECT members FROM places")) == sorted([SOHO, ARNDALE])
    assert db.execute("SELECT COUNT(DISTINCT place), typeof(place) FROM events").fetchone() == (2, "integer")
    db.close()
