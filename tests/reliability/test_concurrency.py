"""Two runs on one ledger at once: one refuses at once (exit 5, nothing sent), nothing is sent twice."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import time

import pytest

from tests.reliability.harness import (
    SECRET,
    assert_no_traceback,
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
from tests.support import SAMPLES_NOW


@pytest.mark.usefixtures("ledger_backend")
def test_second_run_on_a_held_ledger_exits_5_and_sends_nothing(run_mpetl, tmp_path, collector):
    server = collector(latency_ms=150)
    tids = write_orders(tmp_path / "orders.csv", prefix="C", clients=24, per_client=2)
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], endpoint=server.url, concurrency=2)
    first = start(*run_args(config, tmp_path / "out_a"))
    ledger = ledger_path(tmp_path)
    deadline = time.monotonic() + 20
    while not ledger_counts(ledger).get("in_flight"):
        assert time.monotonic() < deadline and first.poll() is None, "the first run never started sending"
        time.sleep(0.01)

    began = time.monotonic()
    # In process: its own file lock or database session, so a true second holder, without the 1-3 s a
    # new interpreter takes to start on a loaded machine (by then the first run may be done).
    second = run_mpetl(*run_args(config, tmp_path / "out_b"), env={"MP_API_SECRET": SECRET}, clock=SAMPLES_NOW)
    refused_in = time.monotonic() - began
    still_running = first.poll() is None
    out, err = first.communicate(timeout=60)

    assert_no_traceback(second.stdout, second.stderr)
    assert second.returncode == 5
    assert second.stderr.strip().splitlines() == [second.stderr.strip()], "one line, no traceback"
    assert "another run holds the ledger" in second.stderr
    assert still_running, "the refusal came after the first run ended: the test proved nothing"
    assert refused_in < 5
    assert not (tmp_path / "out_b" / "summary.json").exists()
    assert first.returncode == 0, err.decode()[-2000:]
    assert stored_events(server.data_dir) == {("purchase", tid): 1 for tid in tids}


@pytest.mark.usefixtures("ledger_backend")
def test_two_runs_started_together_never_double_send(tmp_path, collector):
    server = collector(latency_ms=100)
    for attempt in range(3):
        work = tmp_path / f"race{attempt}"
        work.mkdir()
        tids = write_orders(work / "orders.csv", prefix=f"R{attempt}", clients=12, per_client=2)
        config = config_for(work, [generic_source(work / "orders.csv")], endpoint=server.url, concurrency=2)
        racers = [start(*run_args(config, work / f"out{i}")) for i in range(2)]
        outcomes = [(p.returncode, p.communicate(timeout=60)[1].decode()) for p in racers]
        outcomes = [(p.returncode, err) for p, (_, err) in zip(racers, outcomes, strict=True)]
        codes = sorted(code for code, _ in outcomes)
        assert_no_traceback(*(text for _, text in outcomes))
        assert codes == [0, 5], outcomes
        assert stored_events(server.data_dir, f"R{attempt}") == {("purchase", tid): 1 for tid in tids}


def test_a_run_refuses_at_once_while_another_is_still_creating_the_ledger(tmp_path):
    """The first night: run A holds the run lock and is creating the SQLite file when run B starts.

    B must answer exit 5 at once from the run lock (an flock on the ledger file itself), not wait on (or
    trip over) A's SQLite locks.
    """
    write_orders(tmp_path / "orders.csv", prefix="F", clients=2, per_client=2)
    config = config_for(tmp_path, [generic_source(tmp_path / "orders.csv")], endpoint="http://127.0.0.1:9")
    ledger = ledger_path(tmp_path)
    ledger.parent.mkdir(parents=True)
    lock_fd = os.open(ledger, os.O_CREAT | os.O_RDONLY, 0o644)
    creating = sqlite3.connect(ledger, isolation_level=None)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what run A's Ledger.lock() holds
        creating.execute("BEGIN EXCLUSIVE")  # what run A holds while it sets WAL mode and creates tables
        creating.execute("CREATE TABLE IF NOT EXISTS events(event_key TEXT PRIMARY KEY)")
        try:
            second = cli(*run_args(config, tmp_path / "out_b"), timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("the second run waited on SQLite instead of refusing at once (exit 5)") from None
    finally:
        creating.close()
        os.close(lock_fd)
    assert_no_traceback(second.stdout, second.stderr)
    assert second.code == 5, second.stderr[-1500:]


@pytest.mark.parametrize("alias", ["symlink", "hard link"])
def test_a_ledger_reached_through_another_name_is_the_same_ledger(tmp_path, collector, alias):
    """Two configs, one naming the ledger through a symlink or a hard link: still one lock, nothing sent twice.

    A hard link cannot be resolved to the other name (both are the file's own names): the run lock is
    an flock on the file itself, which the kernel keys by its inode.
    """
    server = collector(latency_ms=100)
    tids = write_orders(tmp_path / "orders.csv", prefix="S", clients=12, per_client=2)
    (tmp_path / "a").mkdir()
    real = config_for(tmp_path / "a", [generic_source(tmp_path / "orders.csv")], endpoint=server.url, concurrency=2)
    ledger = ledger_path(tmp_path / "a")
    ledger.parent.mkdir(parents=True, exist_ok=True)
    alias_dir = tmp_path / "alias"
    (alias_dir / "state").mkdir(parents=True)
    if alias == "symlink":
        os.symlink(ledger, ledger_path(alias_dir))  # the ledger file itself, reached by another name
    else:
        ledger.touch()  # the first night: the file exists (empty) so that it can have a second name
        os.link(ledger, ledger_path(alias_dir))
    aliased = config_for(alias_dir, [generic_source(tmp_path / "orders.csv")], endpoint=server.url, concurrency=2)
    racers = [start(*run_args(real, tmp_path / "out_a")), start(*run_args(aliased, tmp_path / "out_b"))]
    outcomes = [(p.communicate(timeout=60)[1].decode(), p.returncode) for p in racers]
    outcomes = [(code, err) for err, code in outcomes]
    assert_no_traceback(*(err for _, err in outcomes))
    assert sorted(code for code, _ in outcomes) == [0, 5], outcomes
    assert stored_events(server.data_dir) == {("purchase", tid): 1 for tid in tids}
