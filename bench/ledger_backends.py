"""Ledger bookkeeping per event on both backends, against the rate one worker can send at.

What limits a worker first? Sending costs the ledger a claim (page read), an `in_flight` mark
committed before a window of requests leaves (the sender marks `concurrency` requests at once) and
`sent` marks committed in groups (the sender's `flush_events`). This bench times exactly those calls
(plan a night in chunks, then claim + mark as the sender groups them, no network) on SQLite and on a
real PostgreSQL started here,
and compares each with the floor in the same run: the MP send rate of one worker at the configured
concurrency and a measured endpoint latency (concurrency × 25 / latency). A ledger slower than
that floor would be the bottleneck; faster, and MP latency is.

    .venv/bin/python bench/ledger_backends.py [--events 100000] [--concurrency 32] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl.load.ledger import open_ledger  # noqa: E402
from tests.pgserver import PgServer, create_database  # noqa: E402

PER_REQUEST = 25


def _events(n: int, start: int) -> pd.DataFrame:
    ids = range(start, start + n)
    ts = 1_795_000_000_000_000
    return pd.DataFrame({
        "source": "crm",
        "row": list(ids),
        "event_key": [f"crm|purchase|B{i:09d}" for i in ids],
        "event_name": "purchase",
        "client_id": [f"{1_000_000 + i // PER_REQUEST}.1763000000" for i in ids],
        "user_id": pd.Series([pd.NA] * n, dtype="string"),
        "consent_json": pd.Series([pd.NA] * n, dtype="string"),
        "timestamp_micros": ts,
        "event_date": "20261120",
        "transaction_id": [f"B{i:09d}" for i in ids],
        "has_session": True,
        "event_json": [orjson.dumps({"name": "purchase", "timestamp_micros": ts,
                                     "params": {"transaction_id": f"B{i:09d}", "value": 10.5, "currency": "EUR"}}).decode()
                       for i in ids],
    })


def measure(location: str | Path, events: int, concurrency: int, flush_events: int = 2000,
            chunk: int = 20_000) -> tuple[float, float]:
    """(plan events/s, claim+in_flight+sent events/s) on the ledger at `location`."""
    with open_ledger(location, lock=True) as ledger:
        ledger.bind_property("G-BENCH", "local")
        ledger.begin_run("bench", "send")
        frames = [_events(min(chunk, events - s), s) for s in range(0, events, chunk)]
        began = time.perf_counter()
        for frame in frames:
            ledger.plan(frame, "bench", oldest_sendable_micros=0)
        plan_rate = events / (time.perf_counter() - began)
        began = time.perf_counter()
        ledger.snapshot_pending()
        window, answered = [], []

        def flush_sent() -> None:
            ledger.mark_sent(answered, "bench", attempts=[1] * len(answered), maybe_delivered=[False] * len(answered))
            answered.clear()

        for event in ledger.iter_pending():
            window.append(event.id)
            if len(window) == PER_REQUEST * concurrency:
                ledger.mark_in_flight(window)  # write-ahead for the window of requests about to leave
                answered.extend(window)
                window = []
                if len(answered) >= flush_events:
                    flush_sent()
        if window:
            ledger.mark_in_flight(window)
            answered.extend(window)
        flush_sent()
        send_rate = events / (time.perf_counter() - began)
    return plan_rate, send_rate


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    floor = args.concurrency * PER_REQUEST / (args.latency_ms / 1000)
    print(f"floor: one worker sends at most {floor:,.0f} events/s "
          f"({args.concurrency} in flight × {PER_REQUEST} events / {args.latency_ms:.0f} ms)")
    server = PgServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {"sqlite": measure(Path(tmp) / "ledger.sqlite", args.events, args.concurrency),
                       "postgresql": measure(create_database(server.url()), args.events, args.concurrency)}
    finally:
        server.stop()
    slow = False
    for name, (plan_rate, send_rate) in results.items():
        verdict = "ledger is not the limit" if send_rate >= floor else "LEDGER LIMITS the worker"
        slow |= send_rate < floor
        print(f"{name:<11} plan {plan_rate:>10,.0f} events/s   claim+in_flight+sent {send_rate:>10,.0f} events/s "
              f"= {send_rate / floor:5.1f}× the floor: {verdict}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
