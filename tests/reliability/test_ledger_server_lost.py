"""The PostgreSQL ledger's server goes away while a run is sending: the run stops with one line and
exit 2 (no traceback), and once the server is back the next run loses nothing and sends again only
what was in flight, flagged. The server is a real one this test starts, stops and starts again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.pgserver import PgServer
from tests.reliability.harness import (
    assert_no_traceback,
    cli,
    config_on_postgres,
    generic_source,
    run_args,
    start,
    stored_events,
    write_orders,
)
from tests.support import cli_errors

CLIENTS, PER_CLIENT = 24, 50  # 1 200 events in 48 requests of 25


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


def _counts(url: str) -> dict[str, int]:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as con:
            return dict(con.execute("SELECT state, count(*) FROM mpetl_events GROUP BY state").fetchall())
    except psycopg.Error:
        return {}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["fast", "immediate"])  # a restart that ends sessions; a crash of the server
def test_the_server_lost_mid_send_is_one_line_and_the_rerun_loses_nothing(tmp_path, collector, own_server, how):
    server = collector(latency_ms=60)
    tids = write_orders(tmp_path / "orders.csv", prefix="L", clients=CLIENTS, per_client=PER_CLIENT)
    url = own_server.new_database()
    config = config_on_postgres(tmp_path, url, [generic_source(tmp_path / "orders.csv")], endpoint=server.url,
                                concurrency=2)
    run = start(*run_args(config, tmp_path / "night-1"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.poll() is None:
        counts = _counts(url)
        if counts.get("sent", 0) >= 100 and counts.get("planned", 0):
            break
        time.sleep(0.01)
    assert run.poll() is None, "the run finished before the server could be stopped: the test proved nothing"
    own_server.pause(how)
    out, err = run.communicate(timeout=120)
    stderr = err.decode()
    assert_no_traceback(out.decode(), stderr)
    assert run.returncode == 2, stderr[-2000:]
    (line,) = cli_errors(stderr)  # the one error line among the run's JSON log lines
    assert line.startswith(f"lost the connection to the PostgreSQL ledger at {url} (")
    assert "run again once the server is back" in line

    own_server.resume()
    again = cli(*run_args(config, tmp_path / "night-2"), timeout=180)
    assert again.code == 0, again.stderr[-2000:]
    stored = stored_events(server.data_dir, "L")
    assert set(stored) == {("purchase", tid) for tid in tids}, "an event was lost"
    with psycopg.connect(url, autocommit=True) as con:
        states = dict(con.execute("SELECT state, count(*) FROM mpetl_events GROUP BY state").fetchall())
        flagged = {tid for (tid,) in con.execute("SELECT transaction_id FROM mpetl_events WHERE flags & 1 <> 0")}
    assert states == {"sent": len(tids)}
    twice = {tid for (_, tid), n in stored.items() if n > 1}
    assert twice <= flagged, "an event arrived twice without the possible_duplicate flag"
    assert max(stored.values()) <= 2
