"""Extract throughput and peak memory on generated generic-CSV sources.

Usage: .venv/bin/python bench/extract_bench.py [ROWS ...]   (default: 1000000 5000000)

Each size is generated into a temporary folder, then read in a *fresh* subprocess so its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is that read's alone: with bounded-memory streaming
the peak must stay flat as the row count grows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 250_000
HEADER = ["Order ID", "Closed At", "Amount", "Currency", "GA Client", "GA Session", "Rep", "Notes"]
COLUMNS = {"transaction_id": "Order ID", "timestamp": "Closed At", "value": "Amount", "currency": "Currency",
           "client_id": "GA Client", "session_id": "GA Session"}


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A realistic-looking export: quoted amounts with thousands separators, commas inside notes."""
    rng = np.random.default_rng(seed)
    with pacsv.CSVWriter(path, pa.schema([(h, pa.string()) for h in HEADER])) as writer:
        for start in range(0, rows, BLOCK):
            n = min(BLOCK, rows - start)
            ids = np.arange(start, start + n)
            ts = 1795000000 + rng.integers(0, 250_000, n)
            cents = rng.integers(100, 5_000_000, n)
            amount = [f"{c / 100:,.2f}" for c in cents]
            client = [f"GA1.1.{a}.{b}" for a, b in zip(rng.integers(10**8, 10**10, n), ts - 86400 * 30, strict=True)]
            session = [f"GS2.1.s{t - 300}$o3$g1$t{t}$j0$l0$h0" for t in ts]
            closed = np.datetime_as_string(ts.astype("datetime64[s]"), unit="s")
            table = pa.table({
                "Order ID": [f"T{i}" for i in ids], "Closed At": closed.tolist(), "Amount": amount,
                "Currency": ["EUR"] * n, "GA Client": client, "GA Session": session,
                "Rep": [f"Rep {i % 40}" for i in ids], "Notes": [f"call back, ref {i}" for i in ids],
            })
            writer.write_table(table)


def measure(path: str) -> None:
    """Child process: read the whole source, print one JSON line."""
    import resource

    from etl.config import SourceConfig
    from etl.extract import iter_source_chunks

    src = SourceConfig(name="bench", kind="csv", path=Path(path), columns=COLUMNS)
    start = time.perf_counter()
    rows = 0
    for chunk in iter_source_chunks(src):
        rows += len(chunk.frame)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": round(seconds, 2), "rows_per_s": int(rows / seconds), "peak_rss_mib": round(peak_mib)}))


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            path = Path(tmp) / f"bench_{rows}.csv"
            generate(path, rows)
            size_mb = path.stat().st_size / 1e6
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert result["rows"] == rows, result
            print(f"{rows:>10,} rows  {size_mb:8.1f} MB  {result['seconds']:7.2f} s  "
                  f"{result['rows_per_s']:>10,} rows/s  peak RSS {result['peak_rss_mib']:>5} MiB")
            path.unlink()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        sys.path.insert(0, str(ROOT))
        measure(sys.argv[2])
    else:
        main([int(a) for a in sys.argv[1:]] or [1_000_000, 5_000_000])
