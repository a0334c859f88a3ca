"""The ledger is the state: every fate recorded once, dedupe across runs, write-ahead, locking."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etl.errors import ConfigError, LedgerError, LedgerLockedError
from etl.load import SqliteLedger
from etl.load.ledger.errors import LedgerDamagedError
from tests.load.conftest import T0, events_frame

HOUR = 3_600_000_000
WINDOW = 71 * HOUR  # 72 h minus the 60 min margin


def _plan(ledger, keys, run, *, ts=T0 - HOUR, client="111.222"):
    ledger.begin_run(run, "send") if run not in ledger.run_ids() else None
    return list(ledger.plan(events_frame(keys, client, ts=ts), run, oldest_sendable_micros=ledger.clock() - WINDOW))


def _pending(ledger):
    ledger.snapshot_pending()
    return list(ledger.iter_pending())


def _send(ledger, ids, run, *, maybe=None):
    """What the sender does for a delivered request: in flight first (write-ahead), then sent."""
    ledger.mark_in_flight(ids)
    ledger.mark_sent(ids, run, attempts=[1] * len(ids), maybe_delivered=maybe or [False] * len(ids))


def _fail(ledger, ids, run, *, attempts, maybe, reason):
    ledger.mark_in_flight(ids)
    ledger.mark_failed(ids, run, attempts=attempts, maybe_delivered=maybe, reason=reason)


def test_plan_marks_in_run_repeats_as_duplicates(make_ledger):
    ledger = make_ledger()
    assert _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T1"], "run-a") == ["planned", "planned", "duplicate"]
    # The same key in a later chunk of the same run is a duplicate too.
    assert _plan(ledger, ["crm|purchase|T2"], "run-a") == ["duplicate"]


def test_sent_events_are_duplicates_later_and_unsent_ones_are_taken_over(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "run-a")
    sent = [e.id for e in _pending(ledger) if e.event_key.endswith("T1")]
    _send(ledger, sent, "run-a")
    assert _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "run-b") == ["duplicate", "planned"]
    assert ledger.outcome("run-b").by_source == {"crm": {"failed": 1}}  # T2 is run-b's now, still pending
    assert ledger.outcome("run-a").by_source == {"crm": {"sent": 1}}


def test_too_old_by_the_wall_clock_is_deferred_once_and_never_again(make_ledger, clock):
    ledger = make_ledger()
    old = T0 - 80 * HOUR
    assert _plan(ledger, ["crm|purchase|OLD"], "run-a", ts=old) == ["deferred"]
    assert [e.event_key for e in ledger.deferred_events(run_id="run-a")] == ["crm|purchase|OLD"]
    # Three more nights: the same row is a duplicate, never deferred again.
    for night in ("run-b", "run-c", "run-d"):
        clock.advance_hours(24)
        assert _plan(ledger, ["crm|purchase|OLD"], night, ts=old) == ["duplicate"]
        assert list(ledger.deferred_events(run_id=night)) == []


def test_a_sent_row_is_never_deferred_when_it_ages(make_ledger, clock):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1"], "run-a")
    ids = [e.id for e in _pending(ledger)]
    _send(ledger, ids, "run-a")
    clock.advance_hours(100)
    assert _plan(ledger, ["crm|purchase|T1"], "run-b") == ["duplicate"]
    assert list(ledger.deferred_events()) == []


def test_failed_events_that_age_out_expire_into_deferred_once(make_ledger, clock):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "run-a")
    ids = [e.id for e in _pending(ledger)]
    _fail(ledger, ids, "run-a", attempts=[3, 3], maybe=[True, False], reason="http 503")
    clock.advance_hours(96)
    ledger.begin_run("run-b", "send")
    ledger.mark_expired(ids, "run-b")
    deferred = list(ledger.deferred_events(run_id="run-b"))
    assert {(e.event_key, e.reason) for e in deferred} == {("crm|purchase|T1", "expired"), ("crm|purchase|T2", "expired")}
    assert ledger.outcome("run-b").earlier_runs == {"expired": 2}
    assert _pending(ledger) == []


def test_in_flight_at_a_crash_becomes_failed_and_maybe_delivered(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "run-a")
    first = _pending(ledger)[0]
    ledger.mark_in_flight([first.id])
    assert ledger.recover_in_flight() == 1
    assert len(_pending(ledger)) == 2
    _send(ledger, [first.id], "run-a")
    frame = ledger.for_reconcile(run_id="run-a")
    assert frame.set_index("transaction_id")["possible_duplicate"].to_dict() == {"T1": True}


def test_the_maybe_delivered_flag_survives_a_final_failure_and_a_later_success(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1"], "run-a")
    (event,) = _pending(ledger)
    _fail(ledger, [event.id], "run-a", attempts=[6], maybe=[True], reason="no answer")
    ledger.begin_run("run-b", "send")
    _send(ledger, [event.id], "run-b")
    (row,) = ledger.for_reconcile(run_id="run-b").itertuples()
    assert row.possible_duplicate and row.sent_run_id == "run-b" and row.run_id == "run-a"


def test_withdraw_removes_only_what_this_run_created(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|OLD1", "crm|purchase|OLD2"], "night-1")
    ids = [e.id for e in _pending(ledger)]
    _fail(ledger, ids, "night-1", attempts=[6, 6], maybe=[True, False], reason="no answer")
    # Night 2 re-reads the two failures, adds a new row, then its file breaks: withdraw.
    _plan(ledger, ["crm|purchase|OLD1", "crm|purchase|OLD2", "crm|purchase|NEW"], "night-2")
    assert ledger.withdraw("night-2", "crm") == 1
    pending = _pending(ledger)
    assert sorted(e.event_key for e in pending) == ["crm|purchase|OLD1", "crm|purchase|OLD2"]
    assert ledger.outcome("night-1").by_source == {"crm": {"failed": 2}}
    ledger.begin_run("night-3", "send")
    _send(ledger, [e.id for e in pending], "night-3")
    flags = ledger.for_reconcile(run_id="night-3").set_index("transaction_id")["possible_duplicate"].to_dict()
    assert flags == {"OLD1": True, "OLD2": False}


def test_pending_events_come_grouped_by_identity(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|A1"], "r", client="9.9")
    _plan(ledger, ["crm|purchase|B1"], "r", client="1.1")
    _plan(ledger, ["crm|purchase|A2"], "r", client="9.9")
    ledger.snapshot_pending()
    assert [e.client_id for e in ledger.iter_pending(page=1)] == ["1.1", "9.9", "9.9"]


def test_marking_while_paging_neither_skips_nor_repeats(make_ledger):
    ledger = make_ledger()
    keys = [f"crm|purchase|T{i:04d}" for i in range(250)]
    _plan(ledger, keys, "r")
    ledger.snapshot_pending()
    seen = []
    for event in ledger.iter_pending(page=7):
        _send(ledger, [event.id], "r")
        seen.append(event.event_key)
    assert sorted(seen) == sorted(keys)
    assert ledger.outcome("r").by_source["crm"] == {"sent": 250}


def test_resend_requeues_only_sent_events_and_flags_them(make_ledger):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "r")
    ids = [e.id for e in _pending(ledger)]
    _send(ledger, ids, "r")
    ledger.begin_run("resend-1", "resend")
    assert ledger.requeue_for_resend(["crm|purchase|T1", "crm|purchase|NOPE"], "resend-1") == 1
    (again,) = _pending(ledger)
    _send(ledger, [again.id], "resend-1")
    assert ledger.outcome("resend-1").resent == 1


def test_a_foreign_property_is_refused(make_ledger):
    ledger = make_ledger(measurement_id="G-AAAA")
    _plan(ledger, ["crm|purchase|T1"], "r")
    ledger.close()
    with pytest.raises(ConfigError, match="G-AAAA") as caught:
        make_ledger(measurement_id="G-BBBB")
    assert caught.value.exit_code == 2


def test_a_directory_or_a_corrupt_file_is_a_one_line_error(tmp_path):
    with pytest.raises(LedgerError, match="directory"):
        SqliteLedger(tmp_path)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerDamagedError, match=f"ledger {bad}: is not a SQLite database") as caught:
        SqliteLedger(bad)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_a_second_run_on_the_same_ledger_is_refused_even_through_a_symlink(tmp_path):
    path = tmp_path / "l.sqlite"
    link = tmp_path / "alias.sqlite"
    with SqliteLedger(path) as first:
        first.lock()
        os.symlink(path, link)
        code = (
            "import sys; from etl.load import SqliteLedger; from etl.errors import LedgerLockedError\n"
            f"l = SqliteLedger(r'{link}')\n"
            "try:\n    l.lock()\nexcept LedgerLockedError:\n    sys.exit(5)\n"
        )
        assert subprocess.run([sys.executable, "-c", code]).returncode == 5
        with SqliteLedger(link) as second, pytest.raises(LedgerLockedError):
            second.lock()
    with SqliteLedger(link) as third:
        third.lock()  # released when the first closed
