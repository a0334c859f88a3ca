"""Loader throughput: mpetl's sender vs the ga4mp library, same events, same local endpoint.

Both send the same purchase events, grouped the same way (one client per request, up to 25 events),
to the project's collector started in its own process with a fixed latency per request (default
50 ms, like a far-away endpoint). ga4mp posts sequentially with urllib; mpetl sends with bounded
concurrency over keep-alive connections and writes every state change to its ledger.

    .venv/bin/python bench/loader_vs_ga4mp.py [--clients 200] [--per-client 5] [--latency-ms 50]

`--whole-run` compares whole runs instead: `mpetl run` end to end (start-up, extract, transform, plan,
send; default settings) on a generated CSV of clients × per-client rows, against ga4mp posting the very
bodies `mpetl run --dry-run` builds for that file (same events, same grouping), one after another.
ga4mp is sequential, so its rate is steady: `--ga4mp-requests N` times only its first N requests.

    .venv/bin/python bench/loader_vs_ga4mp.py --whole-run [--clients 2000] [--per-client 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pandas as pd

from etl.collector import spawn_collector

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
    from etl.load import HttpTransport, Ledger, RetryPolicy, send_pending

    with Ledger(ledger_path) as ledger:
        ledger.plan(events, "bench")
        transport = HttpTransport(url, MEASUREMENT_ID, SECRET, concurrency=concurrency, timeout_s=10)
        start = time.perf_counter()
        stats = send_pending(ledger, transport, run_id="bench", now_micros=now_micros, policy=RetryPolicy(),
                             concurrency=concurrency)
        elapsed = time.perf_counter() - start
        assert stats.events_sent == len(events), stats.to_dict()
    return elapsed


def run_ga4mp_bodies(url: str, bodies: list[dict]) -> float:
    """ga4mp sending each request body's events for its client, sequentially (its only mode)."""
    import logging

    from ga4mp import GtagMP

    # ga4mp logs a warning per purchase without affiliation/coupon/items/shipping/tax: quiet, and cheaper.
    logging.getLogger("ga4mp").setLevel(logging.ERROR)

    start = time.perf_counter()
    for body in bodies:
        ga = GtagMP(api_secret=SECRET, measurement_id=MEASUREMENT_ID, client_id=body["client_id"])
        ga._base_domain = f"{url}/mp/collect"
        ga.send([{"name": e["name"], "params": e["params"]} for e in body["events"]])
    return time.perf_counter() - start


def whole_run(clients: int = 2000, per_client: int = 3, latency_ms: float = 50, ga4mp_requests: int = 0) -> dict:
    """`mpetl run` end to end vs ga4mp on the same events at `latency_ms`; rates in events/s."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchdata as data
    from measure import MPETL, ROOT, run_child
    from send_bench import send_run

    rows = clients * per_client
    end_s = int(time.time()) // 3600 * 3600
    csv = data.dataset(rows, clients=clients, end_s=end_s)
    (ROOT / "out" / "bench").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "out" / "bench") as tmp_name:
        tmp = Path(tmp_name)
        config = data.write_config(tmp / "dry", csv)
        dry = run_child([str(MPETL), "-q", "run", "--config", str(config), "--out", str(tmp / "dry" / "out"), "--dry-run"])
        assert dry.exit_code == 0, dry.stderr_tail
        bodies = [json.loads(line) for line in (tmp / "dry" / "out" / "requests.ndjson").read_text().splitlines()]
        sample = bodies[:ga4mp_requests] if ga4mp_requests else bodies
        with spawn_collector(tmp / "ga4mp-store", measurement_id=MEASUREMENT_ID, api_secret=SECRET,
                             latency_ms=latency_ms) as server:
            took = run_ga4mp_bodies(server.url, sample)
            stored = server.stats().get("events_stored")
        sample_events = sum(len(b["events"]) for b in sample)
        assert stored == sample_events, (stored, sample_events)
        mpetl = send_run(csv, tmp / "mpetl", latency_ms=latency_ms)
    ga4mp_rate = sample_events / took
    result = {"rows": rows, "clients": clients, "requests": len(bodies), "latency_ms": latency_ms,
              "ga4mp_requests_timed": len(sample), "ga4mp_events_per_s": round(ga4mp_rate, 1),
              "mpetl_wall_s": mpetl["wall_s"], "mpetl_events_per_s": mpetl["events_per_s"],
              "ratio": round(mpetl["events_per_s"] / ga4mp_rate, 1)}
    print(f"whole run, {rows:,} rows / {clients:,} clients at {latency_ms:g} ms: ga4mp {ga4mp_rate:.1f} events/s "
          f"({len(sample)} of {len(bodies)} requests timed); mpetl run {mpetl['events_per_s']:,} events/s "
          f"({mpetl['wall_s']} s end to end, default concurrency) = {result['ratio']}x ga4mp", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--whole-run", action="store_true", help="mpetl run end to end vs ga4mp (see above)")
    parser.add_argument("--ga4mp-requests", type=int, default=0, help="with --whole-run: time ga4mp on the first N requests")
    args = parser.parse_args()
    if args.whole_run:
        whole_run(args.clients, args.per_client, args.latency_ms, args.ga4mp_requests)
        return
    now_s = int(time.time())
    events = make_events(args.clients, args.per_client, now_s)
    n = len(events)
    print(f"{n} events, {args.clients} clients, {args.per_client} events/request, latency {args.latency_ms} ms")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
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
