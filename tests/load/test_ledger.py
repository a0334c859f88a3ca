"""The ledger is the state: planning, dedupe across runs, write-ahead statuses, locking."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pandas as pd
import pytest

from etl.errors import LedgerLockedError
from etl.load import Ledger


def _events(keys: list[str], client: str = "111.222") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "crm",
            "row": range(1, len(keys) + 1),
            "event_key": keys,
            "event_name": "purchase",
            "client_id": client,
            "user_id": pd.Series([pd.NA] * len(keys), dtype="string"),
            "consent_json": pd.Series([pd.NA] * len(keys), dtype="string"),
            "timestamp_micros": 1_763_700_000_000_000,
            "event_date": "20251121",
            "transaction_id": [k.split("|")[-1] for k in keys],
            "has_session": True,
            "event_json": [orjson.dumps({"name": "purchase", "params": {"transaction_id": k}}).decode() for k in keys],
        }
    )


def test_plan_marks_in_run_repeats_as_duplicates(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        buckets = ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T1"]), "run-a")
        assert list(buckets) == ["planned", "planned", "duplicate"]
        # The same key in a later chunk of the same run is a duplicate too.
        assert list(ledger.plan(_events(["crm|purchase|T2"]), "run-a")) == ["duplicate"]


def test_sent_events_are_duplicates_in_later_runs_but_unsent_ones_are_replanned(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2"]), "run-a")
        ledger.mark(["crm|purchase|T1"], "sent", http_status=204, sent_run_id="run-a")
        buckets = ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2"]), "run-b")
        assert list(buckets) == ["duplicate", "planned"]
        owner = ledger.db.execute("SELECT run_id FROM events WHERE event_key = 'crm|purchase|T2'").fetchone()[0]
        assert owner == "run-b"


def test_in_flight_at_a_crash_is_resent_and_flagged(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2"]), "run-a")
        ledger.mark(["crm|purchase|T1"], "in_flight", request_hash="abc")
        assert ledger.recover_in_flight() == 1
        rows = dict(ledger.db.execute("SELECT event_key, possible_duplicate FROM events").fetchall())
        assert rows == {"crm|purchase|T1": 1, "crm|purchase|T2": 0}
        assert ledger.snapshot_pending() == 2


def test_pending_events_come_grouped_by_identity(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.plan(_events(["crm|purchase|A1"], client="9.9"), "r")
        ledger.plan(_events(["crm|purchase|B1"], client="1.1"), "r")
        ledger.plan(_events(["crm|purchase|A2"], client="9.9"), "r")
        ledger.snapshot_pending()
        clients = [e.client_id for e in ledger.iter_pending(page=1)]
        assert clients == ["1.1", "9.9", "9.9"]


def test_marking_while_paging_neither_skips_nor_repeats(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        keys = [f"crm|purchase|T{i:04d}" for i in range(250)]
        ledger.plan(_events(keys), "r")
        ledger.snapshot_pending()
        seen = []
        for event in ledger.iter_pending(page=7):
            ledger.mark([event.event_key], "sent", sent_run_id="r")
            seen.append(event.event_key)
        assert sorted(seen) == sorted(keys)
        assert ledger.run_outcome("r")["sent"] == 250


def test_a_second_run_on_the_same_ledger_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as first:
        first.lock()
        code = (
            "import sys; from etl.load import Ledger; from etl.errors import LedgerLockedError\n"
            f"l = Ledger(r'{path}')\n"
            "try:\n    l.lock()\nexcept LedgerLockedError:\n    sys.exit(5)\n"
        )
        assert subprocess.run([sys.executable, "-c", code]).returncode == 5
        with Ledger(path) as second, pytest.raises(LedgerLockedError):
            second.lock()
    with Ledger(path) as third:
        third.lock()  # released when the first closed
