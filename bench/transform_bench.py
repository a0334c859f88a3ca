"""Transform + validate throughput on generated rows (goal: ≥ 500k rows/s on 2 cores, issue 16).

Rows look like a CRM export after extraction: `_ga` cookies, GS1/GS2 session cookies, naive local
times in a DST zone, transaction ids, amounts and currencies, a coupon param scanned for personal
data. Chunks of 100k rows, as the pipeline reads them.

    .venv/bin/python bench/transform_bench.py [--rows 1000000] [--json FILE] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from etl.config import PropertyConfig, SourceConfig, WindowConfig
from etl.transform import TransformOptions, transform_chunk

NOW = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


@dataclass
class Chunk:
    frame: pd.DataFrame
    source: str = "bench"
    path: str = "generated"
    columns: dict[str, str] = field(default_factory=dict)


def generate(n: int, start_row: int, rng: np.random.Generator) -> pd.DataFrame:
    randoms = rng.integers(100_000_000, 9_999_999_999, n)
    first_seen = rng.integers(1_700_000_000, 1_763_000_000, n)
    session = rng.integers(1_763_400_000, 1_763_690_000, n)
    seconds = rng.integers(0, 60 * 60 * 60, n)
    local = pd.Timestamp("2026-11-18 10:00:00") + pd.to_timedelta(seconds, unit="s")
    gs1 = rng.random(n) < 0.5
    s = pd.Series(session).astype(str)
    session_cookie = np.where(gs1, "GS1.1." + s + ".3.1." + s + ".0.0.0", "GS2.1.s" + s + "$o3$g1$t" + s + "$j0$l0$h0")
    return pd.DataFrame({
        "row": np.arange(start_row, start_row + n, dtype="int64"),
        "client_id": pd.Series("GA1.1." + pd.Series(randoms).astype(str) + "." + pd.Series(first_seen).astype(str), dtype="string"),
        "session_id": pd.Series(session_cookie, dtype="string"),
        "timestamp": pd.Series(local.strftime("%Y-%m-%d %H:%M:%S"), dtype="string"),
        "transaction_id": pd.Series("T-" + pd.Series(np.arange(start_row, start_row + n)).astype(str), dtype="string"),
        "value": pd.Series((rng.integers(100, 500_000, n) / 100).astype(str), dtype="string"),
        "currency": pd.Series(rng.choice(["EUR", "GBP", "USD"], n), dtype="string"),
        "param.coupon": pd.Series(rng.choice(["SUMMER10", "WELCOME", None], n), dtype="string"),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="cProfile the timed loop into this file")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    source = SourceConfig(name="bench", kind="csv", path="generated", timezone="America/New_York", consent_default="grant")
    prop = PropertyConfig(measurement_id="G-BENCH0001", timezone="Europe/London")
    now_micros = int(NOW.timestamp()) * 1_000_000
    chunks = [generate(min(args.chunk, args.rows - i), i + 1, rng) for i in range(0, args.rows, args.chunk)]
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start, cpu_start = time.perf_counter(), time.process_time()
    sent = rejected = 0
    options = TransformOptions(source=source, prop=prop, window=WindowConfig(), wall_micros=now_micros)
    for frame in chunks:
        result = transform_chunk(Chunk(frame), options)
        sent += len(result.events)
        rejected += len(result.rejects)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    assert sent + rejected == args.rows  # age is the ledger's call now (the wall clock's window)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.rows} rows in {took:.2f} s = {args.rows / took:,.0f} rows/s ({cpu:.2f} s CPU) "
          f"(to plan {sent}, rejected {rejected}; peak RSS {rss_mb:.0f} MB incl. generated input)")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "seconds": round(took, 3), "cpu_s": round(cpu, 3), "rows_per_s": round(args.rows / took),
                                         "to_plan": sent, "rejected": rejected}, indent=2))


if __name__ == "__main__":
    main()
