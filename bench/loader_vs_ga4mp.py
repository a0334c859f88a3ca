"""Whole runs against ga4mp: `mpetl run` end to end vs the ga4mp library, same events, same endpoint.

A generated CSV of clients × per-client purchase rows; ga4mp posts the very bodies `mpetl run
--dry-run` builds for that file (same events, same grouping: one client per request, up to 25
events), one request after another (its only mode). mpetl's figure is a whole `mpetl run` (start-up,
extract, transform, plan, send with bounded concurrency over keep-alive connections, every state
change in its ledger). Both send to the project's collector in its own process with a fixed latency
per request (default 50 ms, like a far-away endpoint). ga4mp's rate is steady, so `--ga4mp-requests
N` times only its first N requests.

    .venv/bin/python bench/loader_vs_ga4mp.py [--clients 2000] [--per-client 3] [--latency-ms 50]
                                              [--concurrency 8 32 64] [--ga4mp-requests 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as data  # noqa: E402
from measure import MPETL, ROOT, run_child  # noqa: E402
from send_bench import SECRET, send_run  # noqa: E402

from etl.collector import FaultOptions, spawn_collector  # noqa: E402


def run_ga4mp_bodies(url: str, bodies: list[dict]) -> float:
    """ga4mp sending each request body's events for its client, sequentially (its only mode)."""
    from ga4mp import GtagMP

    # ga4mp logs a warning per purchase without affiliation/coupon/items/shipping/tax: quiet, and cheaper.
    for name in ("ga4mp", "ga4mp.ga4mp", "ga4mp.store"):  # it sets its module loggers to INFO itself
        logging.getLogger(name).setLevel(logging.ERROR)
    start = time.perf_counter()
    for body in bodies:
        ga = GtagMP(api_secret=SECRET, measurement_id=data.MEASUREMENT_ID, client_id=body["client_id"])
        ga._base_domain = f"{url}/mp/collect"
        ga.send([{"name": e["name"], "params": e["params"]} for e in body["events"]])
    return time.perf_counter() - start


def whole_run(clients: int = 2000, per_client: int = 3, latency_ms: float = 50, ga4mp_requests: int = 0,
              concurrency: list[int | None] | None = None) -> dict:
    """`mpetl run` end to end vs ga4mp on the same events at `latency_ms`; rates in events/s.

    `concurrency`: mpetl runs to make (None: the configured default); the result's top-level figures
    are the first one's.
    """
    rows = clients * per_client
    end_s = data.current_hour()
    csv = data.dataset(rows, clients=clients, end_s=end_s)
    (ROOT / "out" / "bench").mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(dir=ROOT / "out" / "bench") as tmp_name:
        tmp = Path(tmp_name)
        config = data.write_config(tmp / "dry", csv)
        dry = run_child([str(MPETL), "-q", "run", "--config", str(config), "--out", str(tmp / "dry" / "out"), "--dry-run"])
        assert dry.exit_code == 0, dry.stderr_tail
        bodies = [json.loads(line) for line in (tmp / "dry" / "out" / "requests.ndjson").read_text().splitlines()]
        sample = bodies[:ga4mp_requests] if ga4mp_requests else bodies
        with spawn_collector(tmp / "ga4mp-store", measurement_id=data.MEASUREMENT_ID, api_secret=SECRET,
                             faults=FaultOptions(latency_ms=latency_ms)) as server:
            took = run_ga4mp_bodies(server.url, sample)
            stored = server.stats().get("events_stored")
        sample_events = sum(len(b["events"]) for b in sample)
        assert stored == sample_events, (stored, sample_events)
        ga4mp_rate = sample_events / took
        print(f"ga4mp (sequential): {ga4mp_rate:.1f} events/s ({len(sample)} of {len(bodies)} requests timed, "
              f"{took:.1f} s)", flush=True)
        for i, c in enumerate(concurrency or [None]):
            r = send_run(csv, tmp / f"mpetl-{i}", latency_ms=latency_ms, concurrency=c)
            r["concurrency"] = c or "default"
            r["ratio"] = round(r["events_per_s"] / ga4mp_rate, 1)
            r["send_ratio"] = round(r["send_events_per_s"] / ga4mp_rate, 1)
            runs.append(r)
            print(f"mpetl run, concurrency {r['concurrency']}: whole process {r['events_per_s']:,} events/s "
                  f"({r['wall_s']} s exec to exit, {r['cpu_s']} s CPU) = {r['ratio']}x ga4mp; send alone "
                  f"{r['send_events_per_s']:,} events/s ({r['send_wall_s']} s) = {r['send_ratio']}x; first log line "
                  f"at {r['startup_s']} s, planned at {r['planned_at_s']} s", flush=True)
    first = runs[0]
    return {"rows": rows, "clients": clients, "requests": len(bodies), "latency_ms": latency_ms,
            "ga4mp_requests_timed": len(sample), "ga4mp_events_per_s": round(ga4mp_rate, 1),
            "mpetl_wall_s": first["wall_s"], "mpetl_cpu_s": first["cpu_s"], "mpetl_events_per_s": first["events_per_s"],
            "ratio": first["ratio"], "send_events_per_s": first["send_events_per_s"], "send_ratio": first["send_ratio"],
            "startup_s": first["startup_s"], "planned_at_s": first["planned_at_s"], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, nargs="+", help="mpetl runs at these concurrencies (default: "
                        "one run at the configured default)")
    parser.add_argument("--ga4mp-requests", type=int, default=0, help="time ga4mp on the first N requests only")
    args = parser.parse_args()
    print(f"{args.clients * args.per_client} rows, {args.clients} clients, latency {args.latency_ms:g} ms", flush=True)
    whole_run(args.clients, args.per_client, args.latency_ms, args.ga4mp_requests, args.concurrency)


if __name__ == "__main__":
    main()
