"""`make bench`: every issue-16 figure measured in one run and printed beside its goal.

Writes out/bench/results.json (bench/README.md's Results come from it). The 5M-row dry run is slow and
only runs with BENCH_BIG=1; BENCH_GA4MP_REQUESTS=0 times ga4mp on every request instead of a sample.

    .venv/bin/python bench/run_all.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dm_vs_mp_bench  # noqa: E402
import loader_vs_ga4mp  # noqa: E402
import pipeline_bench  # noqa: E402
import send_bench  # noqa: E402
import startup_bench  # noqa: E402
import validator_bench  # noqa: E402
from measure import ROOT  # noqa: E402

from etl.config import DestinationConfig  # noqa: E402

OUT = ROOT / "out" / "bench"
# Issue 16's baseline (same machine, before the work): 470 µs of sender CPU per event at zero latency.
BASELINE_SEND_CPU_US = 470.0
RSS_GOAL_MB = 400
DEFAULT_CONCURRENCY = DestinationConfig.concurrency
FLAT_TOLERANCE = 0.25   # "flat": the largest size's peak within 25 % of the smallest's


def _section(title: str) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n== {title} == (load average {load} on {psutil.cpu_count()} CPUs)", flush=True)


def main() -> int:
    big = os.environ.get("BENCH_BIG") == "1"
    ga4mp_requests = int(os.environ.get("BENCH_GA4MP_REQUESTS", "1000"))
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(),
                     "cpus": psutil.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results["commit"] = commit

    _section("start-up")
    results["startup"] = startup_bench.main([])
    _section("validator vs the floor")
    results["validator"] = validator_bench.main([])
    _section("transform alone")
    transform_json = OUT / "transform.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "transform_bench.py"), "--json", str(transform_json)],
                   cwd=ROOT, check=True)
    results["transform"] = json.loads(transform_json.read_text())
    _section("dry runs vs the floor")
    sizes = ["100000", "1000000"] + (["5000000"] if big else [])
    results["pipeline"] = pipeline_bench.main(["--rows", *sizes])
    _section("sending at zero latency")
    results["send"] = send_bench.main([])
    _section("whole run vs ga4mp at 50 ms")
    results["whole_run"] = loader_vs_ga4mp.whole_run(2000, 3, 50, ga4mp_requests=ga4mp_requests)
    results["whole_run"]["default_concurrency"] = DEFAULT_CONCURRENCY
    _section("1M one-event clients at 50 ms: Measurement Protocol vs Data Manager API (issue 25)")
    results["dm_vs_mp"] = dm_vs_mp_bench.main([])
    results["bench_seconds"] = round(time.perf_counter() - started)
    results["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    table = _table(results)
    results["table"] = table
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    _print_table(table)
    print(f"\n{results['bench_seconds']} s in all; results in {OUT / 'results.json'}")
    return 0


def _table(r: dict) -> list[dict]:
    floor = r["pipeline"]["floor"]["wall_s"]
    floor_cpu = r["pipeline"]["floor"]["cpu_s"]
    runs = {d["rows"]: d for d in r["pipeline"]["dry_runs"]}
    one_m = runs[1_000_000]
    peaks = [runs[n]["peak_rss_mb"] for n in sorted(runs)]
    rows = [
        ("floor: pandas read_csv + JSON lines, 1M rows", f"{floor:.1f} s ({floor_cpu:.1f} s CPU)", "-", None),
        ("dry run 1M rows, wall", f"{one_m['wall_s']:.1f} s = {one_m['wall_s'] / floor:.1f}x floor "
         f"(CPU {one_m['cpu_s']:.0f} s = {one_m['cpu_s'] / floor_cpu:.1f}x)", "<= 5x floor",
         one_m["wall_s"] / floor <= 5),
    ]
    for n in sorted(runs):
        rows.append((f"dry run {n:,} rows, peak RSS", f"{runs[n]['peak_rss_mb']} MB", f"<= {RSS_GOAL_MB} MB",
                     runs[n]["peak_rss_mb"] <= RSS_GOAL_MB))
    spread = (max(peaks) - min(peaks)) / min(peaks)
    rows.append((f"peak RSS flat {min(runs):,} -> {max(runs):,} rows", f"+{spread * 100:.0f} %",
                 f"<= +{FLAT_TOLERANCE * 100:.0f} %", spread <= FLAT_TOLERANCE))
    rows.append(("ledger bytes/event (1M dry run)", f"{one_m['ledger_bytes_per_event']:.0f} B", "<= 250 B",
                 one_m["ledger_bytes_per_event"] <= 250))
    s = r["send"]
    goal_us = BASELINE_SEND_CPU_US / 10
    rows.append(("send CPU/event, mpetl, zero latency", f"{s['send_cpu_us_per_event']:.0f} us "
                 f"({BASELINE_SEND_CPU_US / s['send_cpu_us_per_event']:.1f}x fewer than 470)", f"<= {goal_us:.0f} us",
                 s["send_cpu_us_per_event"] <= goal_us))
    rows.append(("  collector's own CPU/event (apart)", f"{s['collector_cpu_us_per_event']:.0f} us", "-", None))
    w = r["whole_run"]
    rows.append((f"whole process (exec to exit) vs ga4mp, {w['rows']} rows/{w['clients']} clients, 50 ms, "
                 f"concurrency {DEFAULT_CONCURRENCY}",
                 f"{w['ratio']:.1f}x ({w['mpetl_events_per_s']:,} vs {w['ga4mp_events_per_s']:.0f} ev/s; "
                 f"{w['mpetl_wall_s']} s, planned at {w['planned_at_s']} s)", ">= 20x", w["ratio"] >= 20))
    rows.append(("  the send alone (end of planning to the run's end) vs ga4mp",
                 f"{w['send_ratio']:.1f}x ({w['send_events_per_s']:,} ev/s)", "-", None))
    d = r["dm_vs_mp"]
    dm, mp, mp_1m = d["data_manager"], d["measurement_protocol_measured"], d["measurement_protocol_1m_extrapolated"]
    rows.append((f"1M one-event clients at {d['latency_ms']:g} ms: Data Manager whole run",
                 f"{dm['wall_s']:.0f} s, {dm['requests']} requests, {dm['cpu_us_per_event']:.0f} us CPU/event", "-", None))
    rows.append((f"  MP measured on {mp['events']:,} clients",
                 f"{mp['wall_s']:.0f} s, {mp['requests']:,} requests, {mp['cpu_us_per_event']:.0f} us CPU/event", "-", None))
    rows.append(("  MP at 1M, extrapolated (start-up + rest x N)", f"{mp_1m['wall_s']:,} s, {mp_1m['requests']:,} requests",
                 "-", None))
    rows.append(("  Data Manager vs MP, whole run", f"{d['speedup']:.1f}x faster", f">= {d['goals']['speedup']}x",
                 d["speedup"] >= d["goals"]["speedup"]))
    rows.append(("  Data Manager vs MP, requests", f"{d['fewer_requests']:,}x fewer", f">= {d['goals']['fewer_requests']}x",
                 d["fewer_requests"] >= d["goals"]["fewer_requests"]))
    t = r["transform"]
    per_cpu = round(t["rows"] / t["cpu_s"]) if t.get("cpu_s") else 0
    rows.append(("transform alone", f"{t['rows_per_s']:,} rows/s ({per_cpu:,} per CPU-second)", ">= 500,000 rows/s",
                 t["rows_per_s"] >= 500_000))
    v = r["validator"]
    rows.append(("local MP validator", f"{v['events_per_s']:,} events/s (floor: orjson round trip "
                 f"{v['floor_ratio']:.1f}x faster)", f">= {v['goal_events_per_s']:,} events/s",
                 v["events_per_s"] >= v["goal_events_per_s"]))
    st = r["startup"]
    rows.append(("start-up: mpetl run --help", f"{st['help_s']:.2f} s", "-", None))
    rows.append(("heavy imports in a dry run", ", ".join(st["heavy_in_dry_run"]) or "none", "none",
                 not st["heavy_in_dry_run"]))
    return [{"figure": a, "measured": b, "goal": c, "ok": d} for a, b, c, d in rows]


def _print_table(table: list[dict]) -> None:
    widths = [max(len(str(row[k])) for row in table) for k in ("figure", "measured", "goal")]
    header = ("figure", "measured", "goal")
    print()
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " | ok?")
    print("-+-".join("-" * w for w in widths) + "-+----")
    for row in table:
        ok = "-" if row["ok"] is None else ("yes" if row["ok"] else "NO")
        print(" | ".join(str(row[k]).ljust(w) for k, w in zip(header, widths, strict=True)) + f" | {ok}")


if __name__ == "__main__":
    sys.exit(main())
