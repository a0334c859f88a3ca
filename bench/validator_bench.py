"""The local MP validator's throughput against a floor measured in the same run (goal: ≥ 50k events/s).

Why a bench and not a test: the sender validates every request before it leaves, so the validator
must keep up with sending; a timed assertion in the suite failed on a loaded 2-core machine
(45,959 vs 50,000 events/s) while nothing was wrong. Here the figure is printed beside a floor
taken on the same machine at the same moment: one orjson round trip of the same 25-event body
(the least any check of a request must do: touch every field once). The ratio says whether the
validator got slower; the absolute rate whether it keeps up with sending (~250k/s measured on the
2-core CI machine when idle).

    .venv/bin/python bench/validator_bench.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import copy
import time

import orjson

from etl.protocol import validate_request

NOW = 1_795_348_800_000_000  # 2026-11-22T12:00:00Z in µs
HOUR = 3_600_000_000
GOAL_EVENTS_PER_S = 50_000


def body() -> dict:
    """One full request: 25 purchases of one client, every kind of field the sender writes."""
    event = {"name": "purchase", "timestamp_micros": NOW - 2 * HOUR, "params": {
        "transaction_id": "T-0", "currency": "GBP", "value": 49.99, "session_id": "1746825440",
        "engagement_time_msec": 1, "mpetl_run": "run-1",
        "items": [{"item_id": "SKU1", "item_name": "Shirt", "price": 49.99, "quantity": 1}]}}
    events = [copy.deepcopy(event) for _ in range(25)]
    for i, e in enumerate(events):
        e["params"]["transaction_id"] = f"T-{i}"
    return {"client_id": "1162820436.1749482504", "timestamp_micros": NOW - HOUR,
            "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}, "events": events}


def _rate(work, rounds: int, events: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        work()
    return rounds * events / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args(argv)
    request = body()
    assert validate_request(request, now_micros=NOW, strict=True) == [], "the bench body must be valid"
    n = len(request["events"])
    floor = _rate(lambda: orjson.loads(orjson.dumps(request)), args.rounds, n)
    rate = _rate(lambda: validate_request(request, now_micros=NOW, strict=True), args.rounds, n)
    result = {"events_per_s": round(rate), "floor_events_per_s": round(floor), "floor_ratio": round(floor / rate, 1),
              "goal_events_per_s": GOAL_EVENTS_PER_S}
    print(f"validator: {rate:,.0f} events/s; floor (orjson round trip): {floor:,.0f} events/s "
          f"= {floor / rate:.1f}x the validator; goal >= {GOAL_EVENTS_PER_S:,}", flush=True)
    return result


if __name__ == "__main__":
    main()
