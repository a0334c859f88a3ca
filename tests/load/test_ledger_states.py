"""The sealed state machine, on both backends: every transition moves only events in its from-states,
a wrong one raises naming the transition and the states found, and changes nothing; one client per key;
transaction ids are opaque; driver errors leave the ledger as its own one-line errors."""

from __future__ import annotations

import itertools

import pytest

from etl.load import open_ledger
from etl.load.ledger import OUTPUT_TRANSITIONS, TRANSITIONS, is_postgres_url
from etl.load.ledger.errors import LedgerError, LedgerStateError, LedgerUnreachableError, OutputStateError
from tests.load.conftest import MID, T0, events_frame

HOUR = 3_600_000_000
WINDOW = 71 * HOUR
RUN = "run-states"

# The design (docs/ARCHITECTURE.md, "States and transitions"): which states each transition may start
# from. Written out here, not read from the code, so a change to the code's table must change this too.
ALLOWED = {
    "mark_in_flight": {"planned", "failed"},
    "mark_sent": {"in_flight"},
    "mark_failed": {"in_flight"},
    "mark_rejected": {"planned", "failed", "in_flight"},  # in_flight: refused by name by the Data Manager API
    "mark_expired": {"planned", "failed"},
    # Per kind of output: a deferred event no output of that kind holds is claimed (taken); released, it is free again.
    "claim_deferred": {"deferred"},
    "release_output": {"taken"},
}
TARGET = {"mark_in_flight": "in_flight", "mark_sent": "sent", "mark_failed": "failed", "mark_rejected": "rejected",
          "mark_expired": "deferred", "claim_deferred": "taken", "release_output": "deferred"}
# An output record's moves (OUTPUT_TRANSITIONS), written out the same way.
OUTPUT_ALLOWED = {"claim_deferred": {"absent"}, "output_written": {"claimed"}, "output_taken": {"claimed", "written"},
                  "release_output": {"claimed", "written", "taken"}}
OUTPUT_TARGET = {"claim_deferred": "claimed", "output_written": "written", "output_taken": "taken",
                 "release_output": "released"}
STATES = ("planned", "in_flight", "sent", "failed", "deferred", "rejected", "taken")
CALLS = {
    "mark_in_flight": lambda ledger, ids: ledger.mark_in_flight(ids),
    "mark_sent": lambda ledger, ids: ledger.mark_sent(ids, RUN, attempts=[1] * len(ids), maybe_delivered=[False] * len(ids)),
    "mark_failed": lambda ledger, ids: ledger.mark_failed(ids, RUN, attempts=[1] * len(ids),
                                                          maybe_delivered=[False] * len(ids), reason="http 503"),
    "mark_rejected": lambda ledger, ids: ledger.mark_rejected(ids, RUN, "event is too large"),
    "mark_expired": lambda ledger, ids: ledger.mark_expired(ids, RUN),
}
_serial = itertools.count()


def _event_in(ledger, state: str) -> int:
    """A new event driven into `state` by the legal transitions; its id."""
    key = f"crm|purchase|S{next(_serial):04d}"
    old = state in ("deferred", "taken")
    run = RUN
    if state == "taken":  # deferred by a run of its own, so that a claim can name it alone (deferred_by)
        run = f"defer-{next(_serial)}"
        ledger.begin_run(run, "send")
    ledger.plan(events_frame([key], f"1.{next(_serial)}", ts=T0 - (80 if old else 1) * HOUR), run,
                oldest_sendable_micros=ledger.clock() - WINDOW)
    if old:
        (eid,) = [e.id for e in ledger.deferred_events(unexported=True) if e.event_key == key]
        if state == "taken":  # by an `mpetl deferred` export
            export = f"export-{next(_serial)}"
            ledger.begin_run(export, "export")
            assert ledger.claim_deferred(export, "export", "/imports", deferred_by=run) == 1
        return eid
    ledger.snapshot_pending()
    (eid,) = [e.id for e in ledger.iter_pending() if e.event_key == key]
    if state in ("in_flight", "sent", "failed"):
        ledger.mark_in_flight([eid])
    if state in ("sent", "failed"):
        CALLS["mark_" + state](ledger, [eid])
    if state == "rejected":
        ledger.mark_rejected([eid], RUN, "event is too large")
    return eid


def test_the_transition_table_is_the_design():
    assert {name: set(t.sources) for name, t in TRANSITIONS.items() if name in ALLOWED} == ALLOWED
    assert {name: TRANSITIONS[name].target for name in TARGET} == TARGET
    assert {name: set(t.sources) for name, t in OUTPUT_TRANSITIONS.items()} == OUTPUT_ALLOWED
    assert {name: t.target for name, t in OUTPUT_TRANSITIONS.items()} == OUTPUT_TARGET


def test_every_transition_moves_only_its_from_states_and_refuses_the_rest(make_ledger):
    ledger = make_ledger()
    ledger.begin_run(RUN, "send")
    for transition, state in itertools.product(CALLS, STATES):
        eid = _event_in(ledger, state)
        before = ledger.inspect()
        if state in ALLOWED[transition]:
            CALLS[transition](ledger, [eid])
            after = _states(ledger)
            moved = {k: after.get(k, 0) - _count(before, k) for k in set(after) | set(before["status"])}
            assert _moved_one(moved, state, TARGET[transition]), (transition, state, moved)
        else:
            with pytest.raises(LedgerStateError) as refused:
                CALLS[transition](ledger, [eid])
            message = str(refused.value)
            assert message.startswith(f"ledger: {transition} moves ")
            assert f"refused for 1 of 1 events ({state}" in message and "nothing was changed" in message
            assert refused.value.exit_code == 2
            assert ledger.inspect().equals(before), f"{transition} on a {state} event changed the ledger"


def _count(frame, status: str) -> int:
    return int((frame["status"] == status).sum())


def _states(ledger) -> dict[str, int]:
    return {k: v for k, v in ledger.state_counts().items() if k != "runs"}


def _moved_one(moved: dict[str, int], source: str, target: str) -> bool:
    """One event left `source` for `target` (taken and deferred share the stored state `deferred`)."""
    stored = {"taken": "deferred"}
    source, target = stored.get(source, source), stored.get(target, target)
    if source == target:
        return all(v == 0 for v in moved.values())
    return moved.get(source) == -1 and moved.get(target) == 1 and all(
        v == 0 for k, v in moved.items() if k not in (source, target))


def test_a_batch_with_one_wrong_event_moves_none_and_says_which_states(make_ledger):
    ledger = make_ledger()
    ledger.begin_run(RUN, "send")
    in_flight, planned, sent = _event_in(ledger, "in_flight"), _event_in(ledger, "planned"), _event_in(ledger, "sent")
    before = _states(ledger)
    assert before == {"in_flight": 1, "planned": 1, "sent": 1}
    with pytest.raises(LedgerStateError, match=r"mark_sent moves in_flight → sent; refused for 2 of 3 events "
                                               r"\(planned 1, sent 1\); nothing was changed"):
        CALLS["mark_sent"](ledger, [in_flight, planned, sent])
    assert _states(ledger) == before  # the in-flight one was not marked sent either: one transaction
    with pytest.raises(LedgerStateError, match=r"refused for 1 of 1 events \(absent 1\)"):
        CALLS["mark_expired"](ledger, [10**9])
    CALLS["mark_sent"](ledger, [in_flight])
    assert _states(ledger) == {"planned": 1, "sent": 2}


def test_a_claim_takes_only_deferred_events_no_output_of_its_kind_holds_and_each_once(make_ledger):
    """The set-based transitions: a claim's SQL names the from-state (deferred, not taken by that kind),
    so no event in any other state is ever claimed, and a second claim of the same kind takes nothing."""
    ledger = make_ledger()
    ledger.begin_run(RUN, "send")
    ids = {state: _event_in(ledger, state) for state in STATES}
    before = ledger.inspect()
    ledger.begin_run("export-1", "export")
    assert ledger.claim_deferred("export-1", "export", "/imports") == 1
    assert [e.id for e in ledger.claimed_events("export-1", "export")] == [ids["deferred"]]
    ledger.begin_run("export-2", "export")
    assert ledger.claim_deferred("export-2", "export", "/imports") == 0  # exported once, ever
    assert [e.id for e in ledger.deferred_events(unexported=True)] == []
    # Another kind has its own claim: the deferred.csv takes both deferred events, whoever exported them.
    assert ledger.claim_deferred(RUN, "deferred_csv", "/out") == 2
    assert sorted(e.id for e in ledger.claimed_events(RUN, "deferred_csv")) == sorted([ids["deferred"], ids["taken"]])
    assert ledger.inspect().equals(before)  # claims never change an event's state
    # Released, the output's events are deferred (free) again for that kind only.
    assert ledger.release_output("export-1", "export") == 1
    assert [e.id for e in ledger.deferred_events(unexported=True)] == [ids["deferred"]]
    assert list(ledger.claimed_events("export-1", "export")) == []


def test_an_output_record_moves_only_from_its_from_states_and_a_wrong_move_changes_nothing(make_ledger):
    ledger = make_ledger()
    ledger.begin_run(RUN, "send")
    _event_in(ledger, "deferred")
    assert ledger.claim_deferred(RUN, "historical", "/hist") == 1
    with pytest.raises(OutputStateError, match=rf"ledger: claim_deferred moves absent → claimed; refused for run {RUN}'s "
                                               r"historical output \(claimed\); nothing was changed") as refused:
        ledger.claim_deferred(RUN, "historical", "/hist")  # one record per run and kind
    assert isinstance(refused.value, LedgerStateError) and refused.value.exit_code == 2
    ledger.output_taken(RUN, "historical")
    for move in (lambda: ledger.output_written(RUN, "historical", []), lambda: ledger.output_taken(RUN, "historical")):
        with pytest.raises(OutputStateError, match=r"\(taken\); nothing was changed"):
            move()
    assert ledger.output_claim(RUN, "historical").state == "taken"
    assert len(list(ledger.claimed_events(RUN, "historical"))) == 1
    with pytest.raises(OutputStateError, match=r"output_written moves claimed → written; refused for run nobody's "
                                               r"historical output \(absent\)"):
        ledger.output_written("nobody", "historical", [])
    assert "nobody" not in ledger.run_ids()  # a refused move records nothing, not even the run
    assert ledger.release_output(RUN, "historical") == 1
    before = ledger.inspect()
    with pytest.raises(OutputStateError, match=r"release_output moves claimed \| written \| taken → released; refused "
                                               rf"for run {RUN}'s historical output \(released\)"):
        ledger.release_output(RUN, "historical")
    assert ledger.inspect().equals(before) and ledger.output_claim(RUN, "historical").state == "released"


def _plan(ledger, keys, run, client):
    if run not in ledger.run_ids():
        ledger.begin_run(run, "send")
    return list(ledger.plan(events_frame(keys, client), run, oldest_sendable_micros=ledger.clock() - WINDOW))


def test_a_key_pending_under_another_client_is_a_duplicate_not_taken_over(make_ledger):
    """One client per key: a shard must never take over an event of another shard's client (it would
    never send it, and the first shard's accounting would lose it)."""
    ledger = make_ledger()
    assert _plan(ledger, ["crm|purchase|T1", "crm|purchase|T2"], "night-1", "111.1") == ["planned", "planned"]
    assert _plan(ledger, ["crm|purchase|T1"], "night-2", "999.9") == ["duplicate"]
    assert _plan(ledger, ["crm|purchase|T2"], "night-2", "111.1") == ["planned"]  # same client: taken over
    assert ledger.outcome("night-1").by_source == {"crm": {"failed": 1}}  # T1 still night-1's, pending
    assert ledger.outcome("night-2").by_source == {"crm": {"failed": 1}}  # T2 is night-2's now
    ledger.snapshot_pending()
    assert sorted((e.event_key, e.client_id) for e in ledger.iter_pending()) == [
        ("crm|purchase|T1", "111.1"), ("crm|purchase|T2", "111.1")]


def test_transaction_ids_are_opaque_and_row_digests_have_none(make_ledger):
    ledger = make_ledger()
    ledger.begin_run("r", "send")
    frame = events_frame(["crm|purchase|row:0123456789abcdef", "crm|generate_lead|row:feedfacecafebeef"])
    frame.loc[1, "transaction_id"] = None  # no id in the row: the transform keys it by a digest
    ledger.plan(frame, "r", oldest_sendable_micros=ledger.clock() - WINDOW)
    ledger.snapshot_pending()
    ids = [e.id for e in ledger.iter_pending()]
    ledger.mark_in_flight(ids)
    ledger.mark_sent(ids, "r", attempts=[1, 1], maybe_delivered=[False, False])
    sent = ledger.for_reconcile(run_id="r").set_index("event_name")["transaction_id"]
    assert sent["purchase"] == "row:0123456789abcdef" and sent.isna()["generate_lead"]
    assert ledger.inspect().set_index("event_name")["transaction_id"].to_dict() == {
        "purchase": "row:0123456789abcdef", "generate_lead": None}
    assert ledger.known_keys(["row:0123456789abcdef", "row:feedfacecafebeef"]).values.tolist() == [
        ["purchase", "row:0123456789abcdef"]]


def test_a_scratch_copy_sees_the_real_state_and_changes_nothing(ledger_location, make_ledger, tmp_path, clock):
    real = make_ledger()
    _plan(real, ["crm|purchase|T1", "crm|purchase|T2"], "run-a", "1.1")
    real.snapshot_pending()
    first = next(iter(real.iter_pending())).id
    real.mark_in_flight([first])
    real.mark_sent([first], "run-a", attempts=[1], maybe_delivered=[False])
    real.close()
    with open_ledger(ledger_location, scratch=True, scratch_dir=tmp_path / "out", clock=clock) as scratch:
        scratch.bind_property(MID, "http://127.0.0.1")
        assert _plan(scratch, ["crm|purchase|T1", "crm|purchase|T2", "crm|purchase|T3"], "dry", "1.1") == [
            "duplicate", "planned", "planned"]
        scratch.snapshot_pending()
        ids = [e.id for e in scratch.iter_pending()]
        scratch.mark_in_flight(ids)
        scratch.mark_sent(ids, "dry", attempts=[1, 1], maybe_delivered=[False, False])
        assert _states(scratch) == {"sent": 3}
    with open_ledger(ledger_location, read_only=True) as after:
        assert _states(after) == {"sent": 1, "planned": 1} and "dry" not in after.run_ids()
    assert (tmp_path / "out" / "ledger.scratch.sqlite").exists() != is_postgres_url(ledger_location)


def test_driver_errors_leave_as_the_ledgers_own_one_line_errors(make_ledger, ledger_location):
    ledger = make_ledger()
    _plan(ledger, ["crm|purchase|T1"], "r", "1.1")
    if is_postgres_url(ledger_location):
        # The server ends this session (as a restart or a failover would): the next call has no connection.
        import psycopg

        with psycopg.connect(ledger_location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'mpetl%' "
                          "AND datname = current_database()")
        expected = LedgerUnreachableError
    else:
        ledger.db.execute("PRAGMA query_only = 1")  # every write now fails inside SQLite
        expected = LedgerError
    with pytest.raises(expected) as caught:
        ledger.snapshot_pending()
        list(ledger.iter_pending())
        ledger.mark_in_flight([1])
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    assert type(caught.value).__module__.startswith("etl.")
    if is_postgres_url(ledger_location):
        assert "lost the connection to the PostgreSQL ledger at postgresql://" in message and "run again" in message
    else:
        assert f"ledger {ledger_location}: is read-only" in message
