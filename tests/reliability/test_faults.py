"""A hostile endpoint (5xx, 429 with Retry-After, slow answers, connection resets): nothing is lost.

The collector runs as its own process with seeded faults. A reset stores the events and then cuts
the connection, so the answer is lost and not the request: the sender must retry (it cannot know)
and flag those events `possible_duplicate`. Every other event must arrive exactly once.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import APIS
from tests.reliability.harness import (
    assert_no_traceback,
    balanced,
    cli,
    ledger_path,
    ledger_rows,
    requested_events,
    run_args,
    stored_events,
)
from tests.support import samples_config

# The whole module runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")

FAULTS = {"fail_rate": 0.20, "throttle_rate": 0.10, "reset_rate": 0.05, "latency_ms": 0, "latency_jitter_ms": 2000}


@pytest.mark.slow
@pytest.mark.parametrize("api", APIS)
def test_faulty_endpoint_delivers_every_event_and_flags_only_reset_ones(tmp_path, collector, record_property, api):
    # Data Manager: one event a request, so its trial meets as many faults as MP's one-client requests do.
    server = collector(seed=20261121, dm_events_per_request=1, **FAULTS)
    # Retry-After (1 s) is honoured because backoff_max_s is not below it; 15 attempts make a
    # six-in-a-row fault streak (≈ 0.35^6 per request) survivable, as it must be at this fault rate.
    config = samples_config(tmp_path, endpoint=server.url, store=server.data_dir,
                            destination={**server.destination, "concurrency": 16, "max_attempts": 15, "backoff_base_s": 0.05,
                                         "backoff_max_s": 1.0, "timeout_s": 10.0})
    reference = cli(*run_args(config, tmp_path / "reference", "--dry-run"))
    assert reference.code == 0, reference.stderr[-2000:]
    expected = requested_events(tmp_path / "reference" / "requests.ndjson")

    started = time.monotonic()
    run = cli(*run_args(config, tmp_path / "out"))
    elapsed = time.monotonic() - started
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == 0, run.stderr[-2000:]
    summary = run.summary(tmp_path / "out")
    injected = server.stats()["injected"]

    # Every fault the endpoint injected was survived by exactly one retry (no timeouts at ≤ 2 s latency).
    fails = injected.get("fail_500", 0) + injected.get("fail_503", 0)
    assert fails > 0 and injected.get("throttle", 0) > 0 and injected.get("reset", 0) > 0
    assert summary["send"]["retries"] == sum(injected.values())
    assert balanced(summary) and summary["failed"] == 0
    assert summary["sent"] == sum(expected.values())

    stored = stored_events(server.data_dir)
    ledger = ledger_rows(ledger_path(tmp_path))
    assert set(stored) == set(expected), "lost or unexpected events in the store"
    assert all(row["status"] == "sent" for event, row in ledger.items() if event in expected)
    assert {row["status"] for event, row in ledger.items() if event not in expected} <= {"deferred"}  # too old
    duplicated = {event for event, n in stored.items() if n > 1}
    flagged = {event for event, row in ledger.items() if row["possible_duplicate"]}
    # A reset always stores, so an event is stored twice exactly when a reset hit one of its requests.
    assert duplicated == flagged
    assert summary["possible_duplicates"] == len(flagged) > 0

    for name, value in {"events": len(expected), "faults_injected": dict(injected),
                        "retries": summary["send"]["retries"], "duplicates_seen": sum(stored.values()) - len(stored),
                        "flagged": len(flagged), "seconds": round(elapsed, 1)}.items():
        record_property(name, value)
    print("faults figures:", {"events": len(expected), "injected": injected, "retries": summary["send"]["retries"],
                              "duplicate_copies": sum(stored.values()) - len(stored), "seconds": round(elapsed, 1)})
