"""Several nights against Google's clock: every row sent or deferred exactly once, none sent stale.

Each night is one in-process run with an injected wall clock (the way a test pins time; users pin
the process clock with libfaketime, never with --now). The endpoint is down for three nights and up
on the fourth, as in the reproduction of issue 12: failures that age out must not vanish, a sent
row is never deferred, no deferred row is written twice, and a broken night erases nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from pathlib import Path

import orjson
import pytest

from etl.accounting import Buckets
from etl.collector import spawn_collector
from etl.config import load_config
from etl.errors import EXIT_OK, EXIT_SEND_FAILURES
from etl.load import open_ledger
from etl.pipeline import RunOptions, run_pipeline
from tests.reliability.harness import MEASUREMENT_ID, SECRET, config_for, generic_source, stored_events, write_orders
from tests.support import ledger_location

# The whole module runs once per ledger backend: SQLite, then PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("ledger_backend")

HOUR = 3_600_000_000
NIGHT_1 = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)
DOWN = "http://127.0.0.1:9"  # nothing listens there: connection refused, nothing delivered
WINDOW_US = 71 * HOUR  # 72 h minus the default 60 min safety margin


def micros(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def night(config: Path, out: Path, at: dt.datetime, **options) -> dict:
    result = run_pipeline(load_config(config), RunOptions(out_dir=out, clock=lambda: micros(at), seed=1, **options))
    summary = result.summary
    assert summary["exit_code"] == result.exit_code
    return summary


def deferred_ids(out: Path) -> list[str]:
    path = out / "deferred.csv"
    if not path.exists():
        return []
    return [row["event_param.transaction_id"] for row in csv.DictReader(path.open())]


def balanced(s: dict) -> bool:
    return Buckets.from_summary(s, where="summary.json").balanced()


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("MP_API_SECRET", SECRET)


def _config(tmp_path: Path, csv_path: Path, endpoint: str) -> Path:
    return config_for(tmp_path, [generic_source(csv_path)], endpoint=endpoint, max_attempts=2,
                      backoff_base_s=0.01, backoff_max_s=0.02)


@pytest.mark.slow
def test_four_nights_down_then_up_every_row_sent_or_deferred_once_none_stale(tmp_path, secret):
    nights = [NIGHT_1 + dt.timedelta(days=d) for d in range(4)]
    files, tids_by_night = [], []
    for n, at in enumerate(nights):
        path = tmp_path / f"night{n + 1}.csv"  # each night's export holds only that night's orders
        tids_by_night.append(write_orders_at(path, prefix=f"N{n + 1}", at=at))
        files.append(path)
    all_tids = [t for tids in tids_by_night for t in tids]
    deferred_by_night: list[list[str]] = []
    summaries = []
    for n, at in enumerate(nights[:3]):
        (tmp_path / "orders.csv").write_bytes(files[n].read_bytes())
        s = night(_config(tmp_path, tmp_path / "orders.csv", DOWN), tmp_path / f"out{n + 1}", at)
        assert s["exit_code"] == EXIT_SEND_FAILURES and balanced(s)
        summaries.append(s)
        deferred_by_night.append(deferred_ids(tmp_path / f"out{n + 1}"))
    # Night 3 expired the first night's oldest failures: reported, in deferred.csv, exit 4 — not silence.
    assert summaries[2]["earlier_runs"]["expired"] > 0
    assert set(deferred_by_night[2]) <= set(tids_by_night[0])

    (tmp_path / "orders.csv").write_bytes(files[3].read_bytes())
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret=SECRET,
                         now=nights[3]) as server:
        s4 = night(_config(tmp_path, tmp_path / "orders.csv", server.url), tmp_path / "out4", nights[3])
        deferred_by_night.append(deferred_ids(tmp_path / "out4"))
        stored = stored_events(server.data_dir)
        times = _stored_times(server.data_dir)
        # Three reruns of the last night: nothing new is sent or deferred.
        for k in range(3):
            again = night(_config(tmp_path, tmp_path / "orders.csv", server.url), tmp_path / f"rerun{k}",
                          nights[3] + dt.timedelta(hours=1 + k))
            assert again["sent"] == 0 and again["deferred"] == 0 and deferred_ids(tmp_path / f"rerun{k}") == []
            assert again["duplicate"] == again["rows_in"] and again["exit_code"] == EXIT_OK
        assert stored_events(server.data_dir) == stored

    assert balanced(s4) and s4["failed"] == 0
    deferred_all = [t for ids in deferred_by_night for t in ids]
    assert len(deferred_all) == len(set(deferred_all)), "a row was deferred twice"
    sent = {tid for (_, tid), n in stored.items()}
    assert all(n == 1 for n in stored.values()), "a row was sent twice"
    assert not (sent & set(deferred_all)), "a row was both sent and deferred"
    assert sent | set(deferred_all) == set(all_tids), "a row vanished"
    # None sent stale: every stored event was inside the window when night 4 sent it.
    assert min(times.values()) >= micros(nights[3]) - WINDOW_US
    with open_ledger(ledger_location(tmp_path), read_only=True) as ledger:
        states = Counter(ledger.inspect()["status"])
    assert states == {"sent": len(sent), "deferred": len(deferred_all)}


def test_now_in_the_past_selects_rows_but_sends_nothing_stale(tmp_path, secret):
    # Re-running the night of four days ago: its rows are selected, but by the wall clock they are
    # too old for MP. They are deferred (Data Import), never sent as if fresh.
    wall = NIGHT_1 + dt.timedelta(days=4)
    tids = write_orders_at(tmp_path / "orders.csv", prefix="PAST", at=NIGHT_1)
    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret=SECRET, now=wall) as server:
        s = night(_config(tmp_path, tmp_path / "orders.csv", server.url), tmp_path / "out", wall, now=NIGHT_1)
        assert server.stats()["requests"] == 0
    assert s["sent"] == 0 and s["deferred"] == len(tids) and balanced(s)
    assert sorted(deferred_ids(tmp_path / "out")) == sorted(tids)


def test_a_broken_night_erases_no_earlier_failure(tmp_path, secret):
    orders = tmp_path / "orders.csv"
    first = write_orders_at(orders, prefix="A", at=NIGHT_1, clients=5, per_client=4)
    s1 = night(_config(tmp_path, orders, DOWN), tmp_path / "out1", NIGHT_1)
    assert s1["failed"] == len(first)

    # Night 2: the export repeats night 1's rows, adds 1 200 more, then breaks (a row with extra fields).
    broken = tmp_path / "broken.csv"
    write_orders_at(broken, prefix="B", at=NIGHT_1 + dt.timedelta(hours=12), clients=60, per_client=20)
    lines = orders.read_text().splitlines()[1:] + broken.read_text().splitlines()[1:]
    broken.write_text("\n".join([orders.read_text().splitlines()[0], *lines, "x,y,z,1,2,3,4,5,6,7"]) + "\n")
    s2 = night(_config(tmp_path, broken, DOWN), tmp_path / "out2", NIGHT_1 + dt.timedelta(hours=12),
               chunk_rows=1000)
    assert s2["source_errors"] and s2["rows_in"] == 0

    with spawn_collector(tmp_path / "store", measurement_id=MEASUREMENT_ID, api_secret=SECRET,
                         now=NIGHT_1 + dt.timedelta(hours=24)) as server:
        fresh = tmp_path / "fresh.csv"
        write_orders_at(fresh, prefix="C", at=NIGHT_1 + dt.timedelta(hours=24), clients=1, per_client=1)
        s3 = night(_config(tmp_path, fresh, server.url), tmp_path / "out3", NIGHT_1 + dt.timedelta(hours=24))
        stored = stored_events(server.data_dir)
    assert s3["earlier_runs"]["sent"] == len(first) and s3["exit_code"] == EXIT_OK
    assert {tid for (_, tid) in stored} >= set(first)
    assert not any(tid.startswith("B") for (_, tid) in stored), "the broken night's rows were sent"


def write_orders_at(path: Path, *, prefix: str, at: dt.datetime, clients: int = 6, per_client: int = 5) -> list[str]:
    """Orders timed 2–30 h before `at`: each night's export."""
    return write_orders(path, prefix=prefix, clients=clients, per_client=per_client, hours_ago=30.0, now=at)


def _stored_times(data_dir: Path) -> dict[str, int]:
    times = {}
    for file in sorted(data_dir.glob("events_*.ndjson")):
        for line in file.read_bytes().splitlines():
            row = orjson.loads(line)
            params = {p["key"]: p["value"] for p in row.get("event_params") or []}
            tid = (params.get("transaction_id") or {}).get("string_value")
            times[tid] = row["event_timestamp"]
    return times
