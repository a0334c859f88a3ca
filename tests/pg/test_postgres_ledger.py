"""What only a shared PostgreSQL ledger must do: workers never hold the same event, a dead worker's
claims are recovered while a live worker's are left alone, one run per shard, shards in SQL = in Python."""

from __future__ import annotations

import time

import orjson
import pandas as pd
import pytest

from etl.errors import LedgerLockedError
from etl.load.ledger.errors import LedgerSchemaError, LedgerStateError
from etl.load.ledger.postgres import PostgresLedger
from etl.shard import Shard
from tests.load.conftest import events_frame

MID, ENDPOINT = "G-TEST123", "local"
OLDEST = 1_700_000_000_000_000


def _events(keys: list[str], clients: list[str] | None = None) -> pd.DataFrame:
    clients = clients or [f"{100 + i}.{1_763_000_000 + i}" for i in range(len(keys))]
    return pd.DataFrame({
        "source": "crm",
        "row": range(1, len(keys) + 1),
        "event_key": keys,
        "event_name": "purchase",
        "client_id": clients,
        "user_id": pd.Series([pd.NA] * len(keys), dtype="string"),
        "consent_json": pd.Series([pd.NA] * len(keys), dtype="string"),
        "timestamp_micros": 1_763_700_000_000_000,
        "event_date": "20251121",
        "transaction_id": [k.split("|")[-1] for k in keys],
        "has_session": True,
        "event_json": [orjson.dumps({"name": "purchase", "timestamp_micros": 1_763_700_000_000_000,
                                     "params": {"transaction_id": k.split("|")[-1]}}).decode() for k in keys],
    })


def _states(ledger: PostgresLedger) -> dict[str, int]:
    """Events per state (state_counts without its `runs`)."""
    return {k: v for k, v in ledger.state_counts().items() if k != "runs"}


def _open(url: str, **kw) -> PostgresLedger:
    ledger = PostgresLedger(url, **kw)
    ledger.bind_property(MID, ENDPOINT)
    return ledger


def test_two_workers_claiming_at_once_never_hold_the_same_event(pg_url):
    keys = [f"crm|purchase|T{i:04d}" for i in range(300)]
    with _open(pg_url) as a, _open(pg_url) as b:
        a.begin_run("run-a", "send")
        assert set(a.plan(_events(keys), "run-a", oldest_sendable_micros=OLDEST)) == {"planned"}
        a.snapshot_pending()
        b.snapshot_pending()
        got_a, got_b = [], []
        pages_a, pages_b = a.iter_pending(page=40), b.iter_pending(page=40)
        # Interleave: each takes a page while the other holds its own.
        for _ in range(10):
            for it, got in ((pages_a, got_a), (pages_b, got_b)):
                for _ in range(40):
                    event = next(it, None)
                    if event is None:
                        break
                    got.append(event.id)
        got_a += [e.id for e in pages_a]
        got_b += [e.id for e in pages_b]
        assert not set(got_a) & set(got_b)
        assert len(got_a) + len(got_b) == 300 and got_a and got_b
        a.mark_in_flight(got_a)
        with pytest.raises(LedgerStateError, match=r"refused for 1 of 1 events \(in_flight, not claimed by this worker 1\)"):
            b.mark_in_flight(got_a[:1])


def test_a_dead_workers_in_flight_is_recovered_a_live_workers_is_not(pg_url):
    keys = [f"crm|purchase|T{i}" for i in range(4)]
    dead = _open(pg_url)
    dead.begin_run("run-dead", "send")
    dead.plan(_events(keys[:2], ["1.1", "1.1"]), "run-dead", oldest_sendable_micros=OLDEST)
    dead.snapshot_pending()
    ids = [e.id for e in dead.iter_pending()]
    dead.mark_in_flight(ids)
    with _open(pg_url) as live:
        live.plan(_events(keys[2:], ["2.2", "2.2"]), "run-live", oldest_sendable_micros=OLDEST)
        live.snapshot_pending()
        live_ids = [e.id for e in live.iter_pending()]
        assert len(live_ids) == 2, "the dead worker's claims are not offered to another worker"
        live.mark_in_flight(live_ids)
        dead.db.close()  # the process died: its session (and its lease lock) ends
        with _open(pg_url) as rerun:
            assert rerun.recover_in_flight() == 2
            states = _states(rerun)
            assert states == {"failed": 2, "in_flight": 2}, states
            assert rerun.snapshot_pending() == 2
            again = list(rerun.iter_pending())
            assert sorted(e.id for e in again) == sorted(ids)
            rerun.mark_in_flight([e.id for e in again])
            rerun.mark_sent([e.id for e in again], "run-rerun", attempts=[1, 1], maybe_delivered=[False, False])
            frame = rerun.for_reconcile(run_id="run-rerun")
            assert frame["possible_duplicate"].all() and len(frame) == 2
        live.mark_sent(live_ids, "run-live", attempts=[1, 1], maybe_delivered=[False, False])
        assert _states(live) == {"sent": 4}


def test_one_run_per_shard_other_shards_run_at_once(pg_url):
    with PostgresLedger(pg_url, lock=True, shard=(1, 2)):
        with pytest.raises(LedgerLockedError, match="shard 1/2"):
            PostgresLedger(pg_url, lock=True, shard=(1, 2))
        with PostgresLedger(pg_url, lock=True, shard=(2, 2)):
            pass
    with PostgresLedger(pg_url, lock=True, shard=(1, 2)):
        pass  # released with the session


def test_shard_selection_in_sql_is_the_python_ownership(pg_url):
    clients = [f"{7 + i * 13}.{1_760_000_000 + i}" for i in range(200)]
    keys = [f"crm|purchase|S{i}" for i in range(200)]
    with _open(pg_url) as ledger:
        ledger.plan(_events(keys, clients), "run-s", oldest_sendable_micros=OLDEST)
        by_client = dict(zip(keys, clients, strict=True))
        seen = []
        for k in (1, 2, 3):
            ledger.snapshot_pending(shard=(k, 3))
            mine = [e.event_key for e in ledger.iter_pending()]
            owned = Shard(k, 3).owns(pd.Series([by_client[key] for key in mine]))
            assert owned.all() and mine
            seen += mine
        assert sorted(seen) == sorted(keys)


def test_plan_buckets_take_over_and_withdraw(pg_url):
    with _open(pg_url) as ledger:
        ledger.begin_run("run-a", "send")
        first = ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T1"]), "run-a",
                            oldest_sendable_micros=OLDEST)
        assert list(first) == ["planned", "planned", "duplicate"]
        old = _events(["crm|purchase|OLD"])
        assert list(ledger.plan(old, "run-a", oldest_sendable_micros=1_800_000_000_000_000)) == ["deferred"]
        ledger.snapshot_pending()
        (t1,) = [e.id for e in ledger.iter_pending() if e.event_key.endswith("T1")]
        ledger.mark_in_flight([t1])
        ledger.mark_sent([t1], "run-a", attempts=[1], maybe_delivered=[False])
        ledger.close()
    with _open(pg_url) as ledger:
        again = ledger.plan(_events(["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T3", "crm|purchase|OLD"]),
                            "run-b", oldest_sendable_micros=OLDEST)
        assert list(again) == ["duplicate", "planned", "planned", "duplicate"]
        assert ledger.outcome("run-b").by_source == {"crm": {"failed": 2}}  # both pending: not delivered by run-b
        assert ledger.withdraw("run-b", "crm") == 1  # T3 created by run-b; T2 goes back to run-a
        assert ledger.outcome("run-a").by_source["crm"] == {"sent": 1, "failed": 1, "deferred": 1}
        deferred = list(ledger.deferred_events(unexported=True))
        assert [d.reason for d in deferred] == ["too_old"]
        assert ledger.claim_deferred("run-b", "export", "/imports") == 1
        assert [e.id for e in ledger.claimed_events("run-b", "export")] == [deferred[0].id]
        assert not list(ledger.deferred_events(unexported=True))


def test_a_scratch_ledger_sees_the_real_state_and_changes_nothing(pg_url):
    with _open(pg_url) as real:
        real.plan(_events(["crm|purchase|T1", "crm|purchase|T2"]), "run-a", oldest_sendable_micros=OLDEST)
        real.snapshot_pending()
        (first, *_) = [e.id for e in real.iter_pending()]
        real.mark_in_flight([first])
        real.mark_sent([first], "run-a", attempts=[1], maybe_delivered=[False])
    with PostgresLedger(pg_url, scratch=True) as scratch:
        scratch.bind_property(MID, ENDPOINT)
        buckets = scratch.plan(_events(["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T3"]), "dry",
                               oldest_sendable_micros=OLDEST)
        assert list(buckets) == ["duplicate", "planned", "planned"]
        scratch.snapshot_pending()
        ids = [e.id for e in scratch.iter_pending()]
        scratch.mark_in_flight(ids)
        scratch.mark_sent(ids, "dry", attempts=[1, 1], maybe_delivered=[False, False])
        assert _states(scratch) == {"sent": 3}
    with _open(pg_url) as real:
        assert _states(real) == {"sent": 1, "planned": 1}
        assert "dry" not in real.run_ids()


def test_a_ledger_of_the_first_postgresql_schema_is_upgraded_in_place(pg_url):
    import psycopg

    from etl.load.ledger.postgres import SCHEMA, SCHEMA_VERSION

    with psycopg.connect(pg_url, autocommit=True) as con:  # what mpetl wrote before the schema row (schema 1)
        con.execute(SCHEMA)
        con.execute("INSERT INTO mpetl_runs(run_id, mode) VALUES ('night-1', 'send')")
        for key, tid in (("crm|purchase|row:0123456789abcdef", "row:0123456789abcdef"),
                         ("crm|generate_lead|row:feedfacecafebeef", None)):
            con.execute(
                "INSERT INTO mpetl_events (event_key, property, source, event_name, transaction_id, client_id, client_hash, "
                "timestamp_micros, event_date, params, state, run_id, created_run_id, fate_run_id, fate_us) VALUES "
                "(%s, %s, 'crm', %s, %s, '1.1', 0, 1763700000000000, 20251121, '{}', 'sent', 'night-1', 'night-1', "
                "'night-1', 1)", (key, MID, key.split("|")[1], tid))
    def schema_row() -> dict[str, str]:
        with psycopg.connect(pg_url, autocommit=True) as con:
            return dict(con.execute("SELECT key, value FROM mpetl_meta WHERE key IN ('schema', 'written_by')").fetchall())

    upgraded = {"schema": str(SCHEMA_VERSION), "written_by": "mpetl 0.1.0"}
    for read_only, row in ((True, {}), (False, upgraded)):  # a reader changes nothing; a writer upgrades
        with PostgresLedger(pg_url, read_only=read_only) as ledger:
            tids = ledger.for_reconcile(run_id="night-1").set_index("event_name")["transaction_id"]
            assert tids["purchase"] == "row:0123456789abcdef" and tids.isna()["generate_lead"]  # ids are opaque
        assert schema_row() == row
    # Schema 3 (issue 26): the upgraded ledger keeps each event's place (store location, device).
    with PostgresLedger(pg_url, lock=True) as ledger:
        ledger.bind_property(MID, "http://127.0.0.1")
        ledger.begin_run("night-2", "send")
        place = '"user_location":{"city":"Manchester","region_id":"GB-MAN","country_id":"GB"}'
        frame = events_frame(["crm|purchase|T-9"], ts=ledger.clock() - 3_600_000_000, places=[place])
        assert list(ledger.plan(frame, "night-2", oldest_sendable_micros=0)) == ["planned"]
        ledger.snapshot_pending()
        assert [e.place for e in ledger.iter_pending()] == [place.encode()]
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("UPDATE mpetl_meta SET value = '9' WHERE key = 'schema'")
    with pytest.raises(LedgerSchemaError, match=rf"written by mpetl 0.1.0 \(schema 9\); this is mpetl 0.1.0 \(schema {SCHEMA_VERSION}\)"):
        _open(pg_url)


def test_a_live_shards_unsettled_output_is_its_own_a_dead_ones_is_settled_by_others(pg_url):
    # Shard 1 claims the night's deferred events for its deferred.csv and is still writing it: shard 2
    # must not touch that claim (nor take the events). Once shard 1's session is gone (killed), it may.
    old = _events(["crm|purchase|OLD1", "crm|purchase|OLD2"])
    with _open(pg_url) as one, _open(pg_url) as two:
        one.begin_run("run-1", "send")
        two.begin_run("run-2", "send")
        assert list(one.plan(old, "run-1", oldest_sendable_micros=1_800_000_000_000_000)) == ["deferred"] * 2
        assert one.claim_deferred("run-1", "deferred_csv", "/out/1") == 2
        assert two.unsettled_outputs("deferred_csv") == []  # alive: its claim is its own
        assert two.claim_deferred("run-2", "deferred_csv", "/out/2") == 0
        one.close()  # killed: the server ends its session and frees its lease (a moment later)
        deadline = time.monotonic() + 10
        while not two.unsettled_outputs("deferred_csv") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(c.run_id, c.state, c.rows) for c in two.unsettled_outputs("deferred_csv")] == [("run-1", "claimed", 2)]


def test_a_scratch_session_settles_outputs_in_its_copy_only(pg_url):
    with _open(pg_url) as real:
        real.begin_run("run-a", "send")
        real.plan(_events(["crm|purchase|OLD1"]), "run-a", oldest_sendable_micros=1_800_000_000_000_000)
        real.claim_deferred("run-a", "deferred_csv", "/out/a")
    with PostgresLedger(pg_url, scratch=True) as scratch:
        scratch.bind_property(MID, ENDPOINT)
        assert scratch.release_output("run-a", "deferred_csv") == 1
        scratch.begin_run("dry", "dry-run")
        assert scratch.claim_deferred("dry", "deferred_csv", "/out/dry") == 1
    with _open(pg_url) as real:
        assert real.output_claim("run-a", "deferred_csv").state == "claimed"
        assert real.output_claim("dry", "deferred_csv") is None
        assert real.deferred_claims("run-a", "deferred_csv") == {"this_run": 1, "other_runs": 0, "unclaimed": 0}
