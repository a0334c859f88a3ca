"""Sending: CPU seconds per event spent by mpetl at zero latency, the collector's CPU apart.

`mpetl run` (send mode, default settings) sends a generated file to the project's collector running
in its own process with no added latency, so the sender is never waiting on the network and its CPU
per event is the figure. The CPU of the send phase is the child's CPU at exit (wait4) minus its CPU
when the log says planning ended (`source_planned`); the collector's CPU is read from its own process.

The data: ROWS rows from CLIENTS `_ga` cookies (3 events per client → 3 events per request, close to
the issue's baseline of 470 µs/event at ≈ 1.3 ms/request), timed in the hours before now (the
collector applies GA4's 72 h window on its wall clock).

    .venv/bin/python bench/send_bench.py [--rows 60000 --clients 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as data  # noqa: E402
from measure import MPETL, ROOT, cpu_seconds, run_child  # noqa: E402

from etl.collector import FaultOptions, spawn_collector  # noqa: E402

SECRET = "bench-secret"


_MARKS = {'"event":"run_started"': "started", '"event":"source_planned"': "planned", '"event":"run_finished"': "finished"}


def _mark(line: str) -> str | None:
    return next((name for text, name in _MARKS.items() if text in line), None)


def send_run(csv: Path, tmp: Path, *, latency_ms: float, concurrency: int | None = None) -> dict:
    """One `mpetl run` against a collector at `latency_ms`; wall time, CPU of the sender and the collector."""
    env = dict(os.environ, MP_API_SECRET=SECRET)
    with spawn_collector(tmp / "store", measurement_id=data.MEASUREMENT_ID, api_secret=SECRET,
                         faults=FaultOptions(latency_ms=latency_ms)) as server:
        config = data.write_config(tmp / "run", csv, endpoint=server.url, concurrency=concurrency)
        collector_before = cpu_seconds(server.pid)
        run = run_child([str(MPETL), "run", "--config", str(config), "--out", str(tmp / "run" / "out")], env=env,
                        mark_on=_mark)
        collector_cpu = cpu_seconds(server.pid) - collector_before
        stored = server.stats().get("events_stored")
    assert run.exit_code == 0, run.stderr_tail
    summary = json.loads((tmp / "run" / "out" / "summary.json").read_text())
    assert summary["sent"] == summary["rows_in"] == stored, (summary, stored)
    send_cpu = run.cpu_s - run.marks["planned"]
    at = run.wall_at
    send_wall = at["finished"] - at["planned"]
    return {"events": summary["sent"], "wall_s": round(run.wall_s, 2), "cpu_s": round(run.cpu_s, 2),
            # Seconds from exec: to the first log line (imports, config, ledger open), to the end of
            # planning, and the send alone (end of planning → run_finished) with its rate.
            "startup_s": round(at["started"], 2), "planned_at_s": round(at["planned"], 2),
            "send_wall_s": round(send_wall, 2), "send_events_per_s": round(summary["sent"] / send_wall),
            "send_cpu_s": round(send_cpu, 2), "send_cpu_us_per_event": round(send_cpu / summary["sent"] * 1e6, 1),
            "collector_cpu_s": round(collector_cpu, 2),
            "collector_cpu_us_per_event": round(collector_cpu / summary["sent"] * 1e6, 1),
            "events_per_s": round(summary["sent"] / run.wall_s), "peak_rss_mb": round(run.peak_rss_mb)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    end_s = data.current_hour()
    csv = data.dataset(args.rows, clients=args.clients, end_s=end_s)
    (ROOT / "out" / "bench").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "out" / "bench") as tmp:
        r = send_run(csv, Path(tmp), latency_ms=0)
    r.update(rows=args.rows, clients=args.clients)
    print(f"send at zero latency, {r['events']:,} events / {args.clients:,} clients: mpetl "
          f"{r['send_cpu_us_per_event']} µs CPU/event in the send phase ({r['send_cpu_s']} s; whole run "
          f"{r['cpu_s']} s CPU, {r['wall_s']} s wall); collector {r['collector_cpu_us_per_event']} µs/event", flush=True)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return r


if __name__ == "__main__":
    main()
