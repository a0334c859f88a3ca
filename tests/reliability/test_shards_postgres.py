"""N shard processes on one PostgreSQL ledger, as N machines would run them: every event stored exactly
once; a shard killed -9 mid-send and rerun loses nothing and duplicates only what it had in flight; a
second round sends nothing. The processes are the real CLI, the endpoint is the project's collector."""

from __future__ import annotations

import csv
import datetime as dt
import signal
import time
from pathlib import Path

import orjson
import psycopg
import pytest

from etl.accounting import Buckets
from etl.shard import aggregate
from tests.reliability.harness import (
    GENERATED_COLUMNS,
    NOW,
    assert_no_traceback,
    cli,
    config_on_postgres,
    generic_source,
    run_args,
    start,
    stored_events,
    write_orders,
)

SHARDS = 4
CLIENTS, PER_CLIENT = 48, 25  # 1 200 events, 48 one-client requests of 25


def _config(tmp_path: Path, url: str, server_url: str, **destination) -> Path:
    """A shard fleet shares one PostgreSQL ledger."""
    return config_on_postgres(tmp_path, url, [generic_source(tmp_path / "orders.csv")], endpoint=server_url, **destination)


def _summaries(outs: list[Path]) -> list[dict]:
    return [orjson.loads((out / "summary.json").read_bytes()) for out in outs]


def _run_fleet(config: Path, outs: list[Path], shards: list[int]) -> list:
    procs = [start(*run_args(config, outs[k - 1], "--shard", f"{k}/{SHARDS}", "--chunk-rows", "1000")) for k in shards]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert_no_traceback(out.decode(), err.decode())
        results.append((proc.returncode, err.decode()[-2000:]))
    return results


@pytest.mark.slow
def test_four_shards_at_once_store_every_event_exactly_once_and_a_second_round_sends_nothing(tmp_path, collector, pg_url):
    server = collector(latency_ms=20)
    tids = write_orders(tmp_path / "orders.csv", prefix="S", clients=CLIENTS, per_client=PER_CLIENT)
    config = _config(tmp_path, pg_url, server.url, concurrency=4)
    outs = [tmp_path / f"shard{k}" for k in range(1, SHARDS + 1)]
    for code, err in _run_fleet(config, outs, list(range(1, SHARDS + 1))):
        assert code == 0, err
    assert stored_events(server.data_dir, "S") == {("purchase", tid): 1 for tid in tids}
    summaries = _summaries(outs)
    for s in summaries:
        assert s["rows_in"] == len(tids) and 0 < s["sent"] < len(tids)
        assert Buckets.from_summary(s, where="summary.json").balanced() and s["other_shard"] == len(tids) - s["sent"]
    night = aggregate(summaries)
    assert (night["rows_in"], night["sent"], night["failed"], night["balanced"]) == (len(tids), len(tids), 0, True)

    again = [tmp_path / f"again{k}" for k in range(1, SHARDS + 1)]
    for code, err in _run_fleet(config, again, list(range(1, SHARDS + 1))):
        assert code == 0, err
    second = aggregate(_summaries(again))
    assert (second["sent"], second["duplicate"]) == (0, len(tids))
    assert stored_events(server.data_dir, "S") == {("purchase", tid): 1 for tid in tids}

    # The aggregate command reads the shard folders and prints the same night.
    shown = cli(*_aggregate_args(outs))
    assert shown.code == 0, shown.stderr
    assert orjson.loads(shown.stdout)["sent"] == len(tids)


def _aggregate_args(outs: list[Path]) -> list[str]:
    return ["aggregate", *map(str, outs)]


def _shard_counts(url: str, shard: str) -> tuple[int, int]:
    """(sent, not yet sent) among the events a given shard's runs own."""
    with psycopg.connect(url, autocommit=True) as con:
        try:
            row = con.execute(
                "SELECT count(*) FILTER (WHERE e.state = 'sent'), count(*) FILTER (WHERE e.state <> 'sent') "
                "FROM mpetl_events e JOIN mpetl_runs r USING (run_id) WHERE r.shard = %s", (shard,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return (0, 0)
    return row[0], row[1]


@pytest.mark.slow
def test_a_shard_killed_mid_send_and_rerun_loses_nothing_and_duplicates_only_its_in_flight(tmp_path, collector, pg_url,
                                                                                           record_property):
    server = collector(latency_ms=60, latency_jitter_ms=40, seed=17)
    tids = write_orders(tmp_path / "orders.csv", prefix="K", clients=CLIENTS, per_client=PER_CLIENT)
    config = _config(tmp_path, pg_url, server.url, concurrency=2)
    outs = [tmp_path / f"shard{k}" for k in range(1, SHARDS + 1)]
    procs = {k: start(*run_args(config, outs[k - 1], "--shard", f"{k}/{SHARDS}")) for k in range(1, SHARDS + 1)}
    victim = procs[2]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and victim.poll() is None:
        sent, left = _shard_counts(pg_url, "2/4")
        if sent >= 25 and left > 0:
            break
        time.sleep(0.005)
    assert victim.poll() is None, "shard 2 finished before it could be killed: the test proved nothing"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    with psycopg.connect(pg_url, autocommit=True) as con:
        in_flight = {tid for (tid,) in con.execute(  # the killed shard's: the others are still sending
            "SELECT e.transaction_id FROM mpetl_events e JOIN mpetl_runs r USING (run_id) "
            "WHERE r.shard = '2/4' AND e.state = 'in_flight'")}
        # PostgreSQL ends a killed client's session once its backend sees the socket closed (after the
        # statement it was running: on a loaded machine, seconds); until then its lease is held and no
        # run may take its events. A retry comes after that (Airflow's retry_delay, the next night).
        workers = [w for (w,) in con.execute(
            "SELECT DISTINCT e.claimed_by FROM mpetl_events e JOIN mpetl_runs r USING (run_id) "
            "WHERE r.shard = '2/4' AND e.state = 'in_flight'")]
        until = time.monotonic() + 30
        while workers and time.monotonic() < until:
            free = [w for w in workers if con.execute("SELECT pg_try_advisory_lock(%s)", (w,)).fetchone()[0]]
            for w in free:
                con.execute("SELECT pg_advisory_unlock(%s)", (w,))
            workers = [w for w in workers if w not in free]
            time.sleep(0.05)
        assert not workers, "the killed shard's session outlived it by 30 s"
    for k, proc in procs.items():
        if k != 2:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()[-2000:]

    # Into the killed shard's own folder: it holds that run's outputs, so the rerun replaces them.
    rerun = cli(*run_args(config, outs[1], "--shard", "2/4", "--replace"), timeout=180)
    assert rerun.code == 0, rerun.stderr[-2000:]
    summary = orjson.loads((outs[1] / "summary.json").read_bytes())
    assert summary["recovered_in_flight"] == len(in_flight) > 0

    stored = stored_events(server.data_dir, "K")
    assert set(stored) == {("purchase", tid) for tid in tids}, "an event was lost"
    twice = {tid for (_, tid), n in stored.items() if n > 1}
    assert twice <= in_flight, "only events in flight at the kill may arrive twice"
    assert max(stored.values()) <= 2
    with psycopg.connect(pg_url, autocommit=True) as con:
        flagged = {tid for (tid,) in con.execute(
            "SELECT transaction_id FROM mpetl_events WHERE flags & 1 <> 0")}
        states = dict(con.execute("SELECT state, count(*) FROM mpetl_events GROUP BY state").fetchall())
    assert twice <= flagged and states == {"sent": len(tids)}
    record_property("in_flight_at_kill", len(in_flight))
    record_property("stored_twice", len(twice))

    again = [tmp_path / f"again{k}" for k in range(1, SHARDS + 1)]
    for code, err in _run_fleet(config, again, list(range(1, SHARDS + 1))):
        assert code == 0, err
    assert aggregate(_summaries(again))["sent"] == 0
    assert stored_events(server.data_dir, "K") == stored


COLLISIONS = 2_000


def _write_colliding_ids(path: Path) -> list[str]:
    """2,000 transaction ids, each on two rows with different `_ga` cookies (two customers, one order id)."""
    start_at = NOW - dt.timedelta(hours=30)
    tids = [f"X-{i:05d}" for i in range(COLLISIONS)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERATED_COLUMNS.values())
        for i, tid in enumerate(tids):
            moment = (start_at + dt.timedelta(seconds=20 * i)).strftime("%Y-%m-%d %H:%M:%S")
            for base in (1_000_000, 5_000_000):
                writer.writerow([f"GA1.1.{base + i}.{1_763_000_000 + i}", str(1_795_000_000 + i), moment, tid, "10.00", "EUR"])
    return tids


@pytest.mark.slow
def test_a_transaction_id_under_two_clients_is_sent_once_and_every_shard_balances(tmp_path, collector, pg_url):
    """The rule (docs/ARCHITECTURE.md): one event per `source|event|transaction_id`; the first client
    planned keeps it, the other row is a duplicate, decided in the plan's transaction. Two shards that
    meet the two rows at once agree, so each shard's summary balances and every id arrives once."""
    server = collector(latency_ms=5)
    tids = _write_colliding_ids(tmp_path / "orders.csv")
    config = _config(tmp_path, pg_url, server.url, concurrency=8)
    outs = [tmp_path / "shard1", tmp_path / "shard2"]
    procs = [start(*run_args(config, outs[k - 1], "--shard", f"{k}/2", "--chunk-rows", "1000")) for k in (1, 2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert_no_traceback(out.decode(), err.decode())
        assert proc.returncode == 0, err.decode()[-2000:]
    summaries = _summaries(outs)
    for s in summaries:
        assert s["rows_in"] == 2 * COLLISIONS and s["failed"] == 0
        assert s["rows_in"] == s["sent"] + s["duplicate"] + s["other_shard"] + s["rejected"] + s["deferred"]
    night = aggregate(summaries)
    assert (night["rows_in"], night["sent"], night["duplicate"], night["failed"]) == (
        2 * COLLISIONS, COLLISIONS, COLLISIONS, 0)
    assert stored_events(server.data_dir, "X") == {("purchase", tid): 1 for tid in tids}
