"""The ledger's output claims: each deferred event taken by one output of each kind, transitions sealed.

Every test runs on SQLite and on PostgreSQL (the `ledger_url` fixture, tests/conftest.py).
"""

from __future__ import annotations

import time

import pytest

from etl.load.ledger.errors import LedgerError, OutputStateError
from tests.load.conftest import T0, events_frame

HOUR = 3_600_000_000
WINDOW = 71 * HOUR


def _defer(ledger, keys, run):
    if run not in ledger.run_ids():
        ledger.begin_run(run, "send")
    buckets = ledger.plan(events_frame(keys, ts=T0 - 90 * HOUR), run, oldest_sendable_micros=ledger.clock() - WINDOW)
    assert list(buckets) == ["deferred"] * len(keys)


def _keys(events):
    return sorted(e.event_key for e in events)


def test_a_claim_takes_every_deferred_event_no_output_of_its_kind_holds(make_ledger):
    ledger = make_ledger()
    _defer(ledger, ["crm|purchase|OLD1", "crm|purchase|OLD2"], "run-a")  # run-a was killed: no output took them
    _defer(ledger, ["crm|purchase|OLD3"], "run-b")
    assert ledger.claim_deferred("run-b", "deferred_csv", "/out/b") == 3
    assert _keys(ledger.claimed_events("run-b", "deferred_csv")) == ["crm|purchase|OLD1", "crm|purchase|OLD2",
                                                                      "crm|purchase|OLD3"]
    # Who deferred them is kept (the historical rows' marker), and who holds them is counted.
    assert {e.run_id for e in ledger.claimed_events("run-b", "deferred_csv")} == {"run-a", "run-b"}
    assert ledger.deferred_claims("run-a", "deferred_csv") == {"this_run": 0, "other_runs": 2, "unclaimed": 0}
    assert ledger.deferred_claims("run-b", "deferred_csv") == {"this_run": 1, "other_runs": 0, "unclaimed": 0}
    # Nothing is left for another deferred.csv; the historical table and `mpetl deferred` have their own claims.
    ledger.begin_run("run-c", "send")
    assert ledger.claim_deferred("run-c", "deferred_csv", "/out/c") == 0
    assert ledger.claim_deferred("run-c", "historical", "/hist") == 3
    ledger.begin_run("export-1", "export")
    assert ledger.claim_deferred("export-1", "export", "/imports", since_date="20261121") == 3
    claim = ledger.output_claim("run-b", "deferred_csv")
    assert (claim.state, claim.rows, claim.target, claim.files) == ("claimed", 3, "/out/b", [])


def test_output_transitions_name_their_from_states(make_ledger):
    ledger = make_ledger()
    _defer(ledger, ["crm|purchase|OLD1", "crm|purchase|OLD2"], "run-a")
    ledger.claim_deferred("run-a", "deferred_csv", "/out/a")
    with pytest.raises(OutputStateError, match=r"output_written moves claimed → written; refused for run run-zz's "
                                               r"deferred_csv output \(absent\)"):
        ledger.output_written("run-zz", "deferred_csv", [])  # no such output
    files = [{"path": "/out/a/deferred.csv", "tmp": "/out/a/.deferred.csv.run-a.partial", "bytes": 10, "sha256": "ab"}]
    ledger.output_written("run-a", "deferred_csv", files)
    with pytest.raises(OutputStateError, match=r"output_written moves claimed → written; refused for run run-a's "
                                               r"deferred_csv output \(written\); nothing was changed"):
        ledger.output_written("run-a", "deferred_csv", files)
    assert ledger.output_claim("run-a", "deferred_csv").files == files
    ledger.output_taken("run-a", "deferred_csv")
    with pytest.raises(OutputStateError, match=r"output_taken moves claimed \| written → taken; refused .* \(taken\)"):
        ledger.output_taken("run-a", "deferred_csv")
    assert ledger.unsettled_outputs("deferred_csv") == []
    # A taken file that is removed (--replace) gives its events back: the next claim takes them.
    assert ledger.release_output("run-a", "deferred_csv") == 2
    assert ledger.output_claim("run-a", "deferred_csv").state == "released"
    with pytest.raises(OutputStateError, match=r"\(released\); nothing was changed"):
        ledger.release_output("run-a", "deferred_csv")
    ledger.begin_run("run-b", "send")
    assert ledger.claim_deferred("run-b", "deferred_csv", "/out/b") == 2


def _unsettled(ledger, kind):
    """As the next run sees them; PostgreSQL frees a closed session's lease a moment after it ends."""
    deadline = time.monotonic() + 10
    while not (found := [(c.run_id, c.state, c.rows) for c in ledger.unsettled_outputs(kind)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_unsettled_outputs_are_those_dead_runs_left_claimed_or_written(make_ledger):
    killed = make_ledger()
    _defer(killed, ["crm|purchase|OLD1"], "run-a")
    _defer(killed, ["crm|purchase|OLD2"], "run-b")
    killed.claim_deferred("run-a", "deferred_csv", "/out/a")
    killed.claim_deferred("run-b", "historical", "/hist")
    killed.output_written("run-b", "historical", [])
    killed.close()
    ledger = make_ledger()
    assert _unsettled(ledger, "deferred_csv") == [("run-a", "claimed", 2)]
    assert _unsettled(ledger, "historical") == [("run-b", "written", 2)]
    ledger.output_taken("run-b", "historical")
    assert ledger.unsettled_outputs("historical") == []


def test_deferred_events_carry_their_consent_code(make_ledger):
    ledger = make_ledger()
    frame = events_frame(["crm|purchase|OLD1", "crm|purchase|OLD2"], ts=T0 - 90 * HOUR)
    frame["consent_json"] = frame["consent_json"].astype("object")
    frame.loc[0, "consent_json"] = '{"ad_user_data":"GRANTED","ad_personalization":"DENIED"}'
    frame["consent_json"] = frame["consent_json"].astype("string")
    ledger.begin_run("run-a", "send")
    ledger.plan(frame, "run-a", oldest_sendable_micros=ledger.clock() - WINDOW)
    ledger.claim_deferred("run-a", "historical", "/hist")
    assert {e.event_key: e.consent for e in ledger.claimed_events("run-a", "historical")} == {
        "crm|purchase|OLD1": 1 * 3 + 2, "crm|purchase|OLD2": 0}


def _as_before_output_claims(location: str) -> None:
    """Turn the ledger back into what mpetl wrote before output claims existed (schema 4 on SQLite, 3 on
    PostgreSQL: the version the upgrade starts from)."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as db:
            db.execute("DROP TABLE mpetl_outputs")
            db.execute("ALTER TABLE mpetl_events DROP COLUMN csv_run_id, DROP COLUMN historical_run_id")
            db.execute("UPDATE mpetl_meta SET value = '3' WHERE key = 'schema'")
        return
    import sqlite3

    db = sqlite3.connect(location)
    for index in ("events_csv_free", "events_csv_run", "events_historical_free", "events_historical_run"):
        db.execute(f"DROP INDEX {index}")
    db.execute("DROP TABLE outputs")
    db.execute("ALTER TABLE events DROP COLUMN csv_run")
    db.execute("ALTER TABLE events DROP COLUMN historical_run")
    db.execute("UPDATE meta SET v = '4' WHERE k = 'schema'")
    db.commit()
    db.close()


def test_a_ledger_from_before_claims_counts_old_deferred_events_as_in_their_runs_files(make_ledger, ledger_location):
    # Before claims, each run wrote what it deferred into its own deferred.csv and historical files:
    # a new run must not write those events a second time, and new ones are claimed as usual.
    ledger = make_ledger()
    _defer(ledger, ["crm|purchase|OLD1", "crm|purchase|OLD2"], "run-a")
    ledger.close()
    _as_before_output_claims(ledger_location)
    upgraded = make_ledger(lock=True)
    _defer(upgraded, ["crm|purchase|NEW1"], "run-b")
    assert upgraded.claim_deferred("run-b", "deferred_csv", "/out/b") == 1
    assert _keys(upgraded.claimed_events("run-b", "deferred_csv")) == ["crm|purchase|NEW1"]
    assert upgraded.claim_deferred("run-b", "historical", "/hist") == 1
    assert upgraded.deferred_claims("run-a", "deferred_csv") == {"this_run": 2, "other_runs": 0, "unclaimed": 0}
    assert upgraded.output_claim("run-a", "deferred_csv") is None  # taken before records existed
    # `mpetl deferred` marked its own exports all along: the old events are still free for it.
    assert upgraded.claim_deferred("run-b", "export", "/imports") == 3


def test_reading_an_outputs_events_maps_driver_errors_too(make_ledger, ledger_location):
    """The events are read page by page while the output is written: an error on a later page (a lost
    connection) must leave the ledger as its own one-line error, like every other ledger call."""
    ledger = make_ledger()
    _defer(ledger, ["crm|purchase|OLD1"], "run-a")
    ledger.claim_deferred("run-a", "deferred_csv", "/out/a")
    pages = ledger.claimed_events("run-a", "deferred_csv")
    if ledger_location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(ledger_location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'mpetl%' "
                          "AND datname = current_database()")
    else:
        ledger.db.close()
    with pytest.raises(LedgerError) as caught:
        list(pages)
    assert type(caught.value).__module__.startswith("etl.") and "\n" not in str(caught.value)
