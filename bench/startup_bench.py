"""Start-up: how long `mpetl run --help` takes, and which heavy modules a small dry run imports.

A cron run of a small file should pay for what it uses: reconciliation's duckdb, matplotlib and the
BigQuery client belong to `mpetl reconcile` only.

    .venv/bin/python bench/startup_bench.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as data  # noqa: E402
from measure import ROOT  # noqa: E402

HEAVY = ("duckdb", "matplotlib", "google.cloud", "rich", "jinja2", "httpx")
# Runs the CLI in this interpreter and prints the heavy modules it imported, however it exits.
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy
                                                          or any(m == h or m.startswith(h + ".") for h in heavy)))))
sys.argv = ["mpetl", *sys.argv[1:]]
from etl.cli import main
main()
"""


def heavy_imports(*args: str) -> list[str]:
    """Top-level heavy packages imported by `mpetl ARGS` (run in a fresh interpreter)."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT, capture_output=True,
                         text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("MODULES "))
    modules = json.loads(line.removeprefix("MODULES "))
    return sorted({h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")})


def main(argv: list[str] | None = None) -> dict:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "etl.cli", "run", "--help"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        config = data.write_config(Path(tmp), data.dataset(1000))
        dry = heavy_imports("-q", "run", "--config", str(config), "--out", str(Path(tmp) / "out"), "--dry-run")
    result = {"help_s": round(statistics.median(times), 3), "heavy_in_help": heavy_imports("run", "--help"),
              "heavy_in_dry_run": [m for m in dry if m in ("duckdb", "matplotlib", "google.cloud")],
              "imported_by_dry_run": dry}
    print(f"mpetl run --help: {result['help_s']} s (median of 3); a 1,000-row dry run imports "
          f"{', '.join(dry) or 'none'} of {', '.join(HEAVY)}", flush=True)
    return result


if __name__ == "__main__":
    main()
