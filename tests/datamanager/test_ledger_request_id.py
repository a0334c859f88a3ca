"""The ledger keeps the Data Manager API's requestId per event, on both backends, and an older ledger
gains the nullable column when it is opened."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from etl.load import open_ledger
from tests.load.conftest import T0, events_frame

HOUR = 3_600_000_000
MID, ENDPOINT = "G-K7QW2ZP9LM", "local"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite"
    return request.getfixturevalue("pg_url")


def _send(location, keys, request_ids, run="R1"):
    with open_ledger(location, clock=lambda: T0) as ledger:
        ledger.bind_property(MID, ENDPOINT)
        ledger.begin_run(run, "send")
        ledger.plan(events_frame(keys), run, oldest_sendable_micros=T0 - 71 * HOUR)
        ledger.snapshot_pending()
        ids = [e.id for e in ledger.iter_pending()]
        ledger.mark_in_flight(ids)
        ledger.mark_sent(ids, run, attempts=[1] * len(ids), maybe_delivered=[False] * len(ids), request_ids=request_ids)
        return dict(zip(ledger.inspect()["transaction_id"], ledger.inspect()["request_id"], strict=True))


def test_each_sent_event_keeps_its_requests_id(location):
    got = _send(location, ["crm|purchase|A", "crm|purchase|B", "crm|purchase|C"], ["req-1", "req-1", "req-2"])
    assert got == {"A": "req-1", "B": "req-1", "C": "req-2"}


def _drop_column(location) -> None:
    if isinstance(location, str):
        import psycopg

        with psycopg.connect(location, autocommit=True) as db:
            db.execute("ALTER TABLE mpetl_events DROP COLUMN request_id")
            db.execute("UPDATE mpetl_meta SET value = '2' WHERE key = 'schema'")  # the schema before the column
    else:
        with sqlite3.connect(location) as db:
            db.execute("ALTER TABLE events DROP COLUMN request_id")
            db.execute("UPDATE meta SET v = '3' WHERE k = 'schema'")  # the schema before the column


def test_a_ledger_from_before_the_column_gains_it_and_keeps_its_events(location):
    assert _send(location, ["crm|purchase|OLD"], [None]) == {"OLD": None}
    _drop_column(location)  # what a ledger written before this change looks like
    with open_ledger(location, clock=lambda: T0) as ledger:
        rows = ledger.inspect()
    assert rows["transaction_id"].tolist() == ["OLD"] and rows["status"].tolist() == ["sent"]
    assert rows["request_id"].isna().all()
    after = _send(location, ["crm|purchase|NEW"], ["req-9"], run="R2")
    assert after["NEW"] == "req-9" and pd.isna(after["OLD"])
