"""Stopping early: SIGTERM (cron, Airflow, a person) or the run's deadline ends the run cleanly.

In-flight requests finish, everything is marked, the summary is written and balances, the exit code is
8 (documented), never 1 or click's "Aborted!"; the next run sends the rest, nothing lost or doubled.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.conftest import APIS
from tests.reliability.harness import (
    assert_no_traceback,
    balanced,
    cli,
    config_for,
    generic_source,
    ledger_counts,
    ledger_path,
    run_args,
    start,
    stored_events,
    write_orders,
)

EXIT_STOPPED = 8


def _finish_later(config, tmp_path, tids, server) -> None:
    rerun = cli(*run_args(config, tmp_path / "rerun"))
    assert rerun.code == 0, rerun.stderr[-2000:]
    assert stored_events(server.data_dir) == {("purchase", tid): 1 for tid in tids}  # nothing lost, nothing twice


@pytest.mark.parametrize("api", APIS)
def test_sigterm_mid_send_finishes_in_flight_writes_the_summary_and_exits_8(tmp_path, collector, api):
    server = collector(latency_ms=300, dm_events_per_request=2)  # as MP: one client (2 events) a request
    tids = write_orders(tmp_path / "orders.csv", prefix="TERM", clients=30, per_client=2)
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], **server.destination, concurrency=2)
    proc = start(*run_args(config, tmp_path / "out"))
    deadline = time.monotonic() + 30
    while not ledger_counts(ledger_path(tmp_path)).get("sent"):
        assert time.monotonic() < deadline and proc.poll() is None, "the run never started sending"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert_no_traceback(out.decode(), err.decode())
    assert "Aborted" not in err.decode()
    assert proc.returncode == EXIT_STOPPED, err.decode()[-2000:]
    summary = orjson_summary(tmp_path / "out")
    assert summary["stopped"] == "SIGTERM" and balanced(summary)
    assert 0 < summary["sent"] < len(tids) and summary["failed"] == len(tids) - summary["sent"]
    assert ledger_counts(ledger_path(tmp_path)).get("in_flight", 0) == 0  # every request was marked
    _finish_later(config, tmp_path, tids, server)


@pytest.mark.parametrize("api", APIS)
def test_the_run_deadline_stops_taking_requests_and_exits_8(tmp_path, collector, api):
    server = collector(latency_ms=300, dm_events_per_request=2)  # as MP: one client (2 events) a request
    tids = write_orders(tmp_path / "orders.csv", prefix="DEAD", clients=30, per_client=2)
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], **server.destination, concurrency=2,
                        deadline_s=1.5)
    started = time.monotonic()
    run = cli(*run_args(config, tmp_path / "out"))
    assert time.monotonic() - started < 30
    assert_no_traceback(run.stdout, run.stderr)
    assert run.code == EXIT_STOPPED, run.stderr[-2000:]
    summary = orjson_summary(tmp_path / "out")
    assert summary["stopped"] == "deadline" and balanced(summary) and summary["failed"] > 0
    # The next night has no such hurry: the same ledger and store, no deadline.
    relaxed = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], **server.destination, concurrency=2)
    _finish_later(relaxed, tmp_path, tids, server)


def orjson_summary(out):
    import orjson

    return orjson.loads((out / "summary.json").read_bytes())
