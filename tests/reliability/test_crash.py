"""kill -9 at seeded random points, then rerun: nothing lost, duplicates only where the ledger says so.

Each trial sends a fresh generated input (its own transaction-id prefix) to one collector process
with a little latency, so a send lasts about a second. The job is killed with SIGKILL at a point
chosen by a seeded generator, in one of four ways that together cover start-up, extract, planning
(ledger writes), and sending (requests in flight, `in_flight`/`sent` marks being written):

* ``started``: once the run has taken the ledger (its `runs` row exists), after 0–120 ms;
* ``planning``: as soon as the first chunk's events are planned;
* ``sending``: when a seeded share (0–90 %) of the events is marked `sent` (amid `in_flight`/`sent` writes);
* ``anytime``: 0–0.7 s after the process starts.

A job that finished before its kill point is not a crash trial; five in six trials must be kills (20 of
the 24 MP trials; the Data Manager copy runs 12, on the SQLite ledger, for the suite's time).

After each kill: the ledger passes `PRAGMA integrity_check`; a rerun exits 0; the store holds every
event; an event stored twice was in flight at the kill and is flagged `possible_duplicate`; the extra
copies are at most the events the ledger shows in flight at the kill (the group-commit bound: the
in-flight window, the queue, and answers not yet flushed); the rerun's summary reports the recovery.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.conftest import APIS
from tests.reliability.harness import (
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    generic_source,
    in_flight_events,
    integrity,
    ledger_counts,
    ledger_exists,
    ledger_path,
    ledger_rows,
    requested_events,
    run_args,
    start,
    stored_events,
    write_orders,
)

# The whole module runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")

TRIALS = 24
SEED = 8_2026
CLIENTS, PER_CLIENT = 24, 50  # 1 200 events in 48 requests of 25
KILL_MODES = ("started", "planning", "sending", "anytime", "sending")
POLL_S = 0.003


def _wait_for(ledger: Path, ready, deadline: float, proc: subprocess.Popen[bytes]) -> bool:
    while time.monotonic() < deadline and proc.poll() is None:
        if ready(ledger_counts(ledger)):
            return True
        time.sleep(POLL_S)
    return False


def _kill_at_seeded_point(proc: subprocess.Popen[bytes], ledger: Path, mode: str, rng: random.Random) -> None:
    deadline = time.monotonic() + 20
    if mode == "started":
        _wait_for(ledger, lambda c: c.get("runs"), deadline, proc)
        time.sleep(rng.uniform(0, 0.12))
    elif mode == "planning":
        _wait_for(ledger, lambda c: sum(v for k, v in c.items() if k != "runs"), deadline, proc)
    elif mode == "sending":
        target = max(1, int(rng.uniform(0, 0.9) * CLIENTS * PER_CLIENT))
        _wait_for(ledger, lambda c: c.get("sent", 0) >= target and sum(v for k, v in c.items() if k not in ("runs", "sent")),
                  deadline, proc)
    else:
        time.sleep(rng.uniform(0, 0.7))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def _phase(ledger: Path, total: int) -> str:
    """Where the kill landed, read from what the dead run left in the ledger."""
    counts = ledger_counts(ledger)
    if not counts.get("runs"):
        return "start-up"
    if counts.get("sent", 0) == total:
        return "after sending"
    if counts.get("in_flight", 0) or counts.get("sent", 0):
        return "sending"
    return "extract/planning"


@pytest.mark.slow
@pytest.mark.parametrize("api", APIS)
def test_kill_minus_nine_then_rerun_loses_nothing(tmp_path, collector, record_property, api):
    server = collector(latency_ms=80, latency_jitter_ms=120, seed=SEED)
    phases: Counter[str] = Counter()
    figures: Counter[str] = Counter()
    started = time.monotonic()
    # The Data Manager copy runs half the trials (the suite's time): the kill points cover the same phases.
    trials = TRIALS if api == "measurement_protocol" else TRIALS // 2
    for trial in range(trials):
        rng = random.Random(SEED + trial)
        mode = KILL_MODES[trial % len(KILL_MODES)]
        work = tmp_path / f"trial{trial:02d}"
        work.mkdir()
        prefix = f"K{trial:02d}-"
        tids = write_orders(work / "orders.csv", prefix=prefix.rstrip("-"), clients=CLIENTS, per_client=PER_CLIENT)
        expected = {("purchase", tid) for tid in tids}
        config = config_for(work, [generic_source(work / "orders.csv")], **server.destination, concurrency=8)
        if trial == 0:  # the clean reference: a dry run plans exactly the generated events
            reference = cli(*run_args(config, work / "reference", "--dry-run", "--chunk-rows", "1000"))
            assert reference.code == 0 and set(requested_events(work / "reference" / "requests.ndjson")) == expected

        ledger = ledger_path(work)
        proc = start(*run_args(config, work / "killed", "--chunk-rows", "1000"))
        _kill_at_seeded_point(proc, ledger, mode, rng)
        if proc.returncode == 0:
            phases["finished before the kill"] += 1
        else:
            assert proc.returncode == -signal.SIGKILL, f"trial {trial}: the job failed on its own ({proc.returncode})"
            figures["kills"] += 1
            phases[_phase(ledger, len(tids))] += 1

        if ledger_exists(ledger):
            assert integrity(ledger) == "ok", f"trial {trial} ({mode}): ledger corrupt after kill -9"
        at_kill = in_flight_events(ledger)

        rerun = cli(*run_args(config, work / "rerun", "--chunk-rows", "1000"))
        assert_no_traceback(rerun.stdout, rerun.stderr)
        assert rerun.code == 0, f"trial {trial} ({mode}): rerun exit {rerun.code}: {rerun.stderr[-1500:]}"
        summary = rerun.summary(work / "rerun")
        assert balanced(summary) and summary["failed"] == 0 and summary["rejected"] == 0
        assert summary["sent"] + summary["duplicate"] == len(tids)  # resent now, or delivered before the kill

        stored = stored_events(server.data_dir, prefix)
        assert set(stored) == expected, f"trial {trial} ({mode}): {len(expected - set(stored))} events lost"
        rows = ledger_rows(ledger)
        assert {row["status"] for row in rows.values()} == {"sent"}
        duplicated = {event for event, n in stored.items() if n > 1}
        extra_copies = sum(n - 1 for n in stored.values())
        assert duplicated <= at_kill, f"trial {trial} ({mode}): duplicates of events that were not in flight"
        assert all(rows[event]["possible_duplicate"] for event in duplicated)
        assert extra_copies <= len(at_kill)
        assert summary["recovered_in_flight"] == len(at_kill)
        assert summary["possible_duplicates"] == len(at_kill)

        figures["events"] += len(expected)
        figures["in_flight_at_kill"] += len(at_kill)
        figures["duplicate_copies"] += extra_copies
    elapsed = time.monotonic() - started
    assert figures["kills"] >= trials * 5 // 6, phases
    # The seeded kill points must have landed both before any request and in the middle of sending.
    assert phases["extract/planning"] + phases["start-up"] > 0 and phases["sending"] > 0, phases
    record_property("crash_figures", {"api": api, "trials": trials, **figures, "phases": dict(phases), "seconds": round(elapsed, 1)})
    print("crash figures:", {"api": api, "trials": trials, **figures, "phases": dict(phases), "seconds": round(elapsed, 1)})
