"""Loader throughput: mpetl's sender vs the ga4mp library, same events, same local endpoint.

Both send the same purchase events, grouped the same way (one client per request, up to 25 events),
to the project's collector started in its own process with a fixed latency per request (default
50 ms, like a far-away endpoint). ga4mp posts sequentially with urllib; mpetl sends with bounded
concurrency over keep-alive connections and writes every state change to its ledger.

    .venv/bin/python bench/loader_vs_ga4mp.py [--clients 200] [--per-client 5] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson
import pandas as pd

from etl.collector import spawn_collector
from etl.load import HttpTransport, Ledger, RetryPolicy, send_pending

SECRET = "bench-secret"
MEASUREMENT_ID = "G-BENCH0001"


def make_events(clients: int, per_client: int, now_s: int) -> pd.DataFrame:
    rows = []
    for c in range(clients):
        client_id = f"{1_000_000_000 + c}.{now_s - 86_400}"
        for e in range(per_client):
            ts = (now_s - 3600 - e) * 1_000_000
            tid = f"T-{c:06d}-{e:02d}"
            event = {"name": "purchase", "timestamp_micros": ts,
                     "params": {"transaction_id": tid, "value": 19.99, "currency": "EUR", "session_id": str(now_s - 7200),
                                "engagement_time_msec": 1, "mpetl_run": "bench"}}
            rows.append({"source": "bench", "row": len(rows) + 1, "event_key": f"bench|purchase|{tid}",
                         "event_name": "purchase", "client_id": client_id, "user_id": None, "consent_json": None,
                         "timestamp_micros": ts, "event_date": "20261120", "transaction_id": tid, "has_session": True,
                         "event_json": orjson.dumps(event).decode()})
    return pd.DataFrame(rows)


def run_ga4mp(url: str, events: pd.DataFrame) -> float:
    from ga4mp import GtagMP

    start = time.perf_counter()
    for client_id, group in events.groupby("client_id", sort=True):
        ga = GtagMP(api_secret=SECRET, measurement_id=MEASUREMENT_ID, client_id=client_id)
        ga._base_domain = f"{url}/mp/collect"
        batch = []
        for text in group["event_json"]:
            event = orjson.loads(text)
            batch.append({"name": event["name"], "params": event["params"]})
        ga.send(batch)
    return time.perf_counter() - start


def run_mpetl(url: str, events: pd.DataFrame, concurrency: int, ledger_path: Path, now_micros: int) -> float:
    with Ledger(ledger_path) as ledger:
        ledger.plan(events, "bench")
        transport = HttpTransport(url, MEASUREMENT_ID, SECRET, concurrency=concurrency, timeout_s=10)
        start = time.perf_counter()
        stats = send_pending(ledger, transport, run_id="bench", now_micros=now_micros, policy=RetryPolicy(),
                             concurrency=concurrency)
        elapsed = time.perf_counter() - start
        assert stats.events_sent == len(events), stats.to_dict()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    args = parser.parse_args()
    now_s = int(time.time())
    events = make_events(args.clients, args.per_client, now_s)
    n = len(events)
    print(f"{n} events, {args.clients} clients, {args.per_client} events/request, latency {args.latency_ms} ms")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        import os

        os.environ["MP_API_SECRET"] = SECRET
        with spawn_collector(tmp_path / "ga4mp-store", measurement_id=MEASUREMENT_ID, api_secret=SECRET,
                             latency_ms=args.latency_ms) as server:
            base = run_ga4mp(server.url, events)
            stored = server.stats().get("events_stored")
        print(f"ga4mp (sequential)       : {n / base:10.1f} events/s  ({base:.2f} s, stored {stored})")
        for c in args.concurrency:
            with spawn_collector(tmp_path / f"mpetl-store-{c}", measurement_id=MEASUREMENT_ID, api_secret=SECRET,
                                 latency_ms=args.latency_ms) as server:
                took = run_mpetl(server.url, events, c, tmp_path / f"ledger-{c}.sqlite", now_s * 1_000_000)
                stored = server.stats().get("events_stored")
            print(f"mpetl concurrency {c:<3}    : {n / took:10.1f} events/s  ({took:.2f} s, stored {stored}) "
                  f"= {base / took:5.1f}x ga4mp")


if __name__ == "__main__":
    main()
