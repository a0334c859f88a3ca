"""The 1M-row dry run against its floor, peak RSS at several sizes, and ledger bytes per event.

The floor is what any Python tool must pay for the same file: pandas reading the CSV and writing
every row as a JSON line, in a fresh interpreter (its imports included, as the dry run's are).
Each `mpetl run --dry-run` runs as a child of this script, which samples its RSS with psutil.

    .venv/bin/python bench/pipeline_bench.py [--rows 100000 1000000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as data  # noqa: E402
from measure import MPETL, ROOT, run_child  # noqa: E402

FLOOR = """
import sys, pandas as pd
pd.read_csv(sys.argv[1]).to_json(sys.argv[2], orient="records", lines=True)
"""


def floor(csv: Path, tmp: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the floor (CPU is the steadier figure on a shared machine)."""
    out = tmp / "floor.jsonl"
    run = run_child([sys.executable, "-c", FLOOR, str(csv), str(out)])
    assert run.exit_code == 0, run.stderr_tail
    out.unlink()
    return run.wall_s, run.cpu_s


def dry_run(csv: Path, tmp: Path) -> dict:
    folder = tmp / f"dry-{csv.stem}"
    config = data.write_config(folder, csv)
    out = folder / "out"
    run = run_child([str(MPETL), "run", "--config", str(config), "--out", str(out), "--dry-run"],
                    mark_on=lambda line: "planned" if '"event":"source_planned"' in line else None)
    assert run.exit_code == 0, run.stderr_tail
    summary = json.loads((out / "summary.json").read_text())
    assert summary["balanced"] and summary["sent"] == summary["rows_in"], summary  # every row planned, none deferred
    ledger = sum(p.stat().st_size for p in out.glob("ledger.scratch.sqlite*"))
    events = summary["sent"]
    result = {"rows": summary["rows_in"], "events": events, "wall_s": round(run.wall_s, 2),
              "rows_per_s": round(summary["rows_in"] / run.wall_s), "peak_rss_mb": round(run.peak_rss_mb),
              "cpu_s": round(run.cpu_s, 2), "ledger_bytes": ledger,
              # Where the peak is reached: while extracting and planning, or while building the requests.
              "peak_rss_mb_until_planned": round(run.peak_rss_mb_at.get("planned", 0)),
              "cpu_s_until_planned": round(run.marks.get("planned", 0), 2),
              "ledger_bytes_per_event": round(ledger / max(events, 1), 1)}
    shutil.rmtree(folder)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--floor-rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict = {"dry_runs": []}
    with tempfile.TemporaryDirectory(dir=ROOT / "out" / "bench") as tmp_name:
        tmp = Path(tmp_name)
        csv = data.dataset(args.floor_rows)
        wall, cpu = floor(csv, tmp)
        results["floor"] = {"rows": args.floor_rows, "csv_mb": round(csv.stat().st_size / 1e6, 1),
                            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        print(f"floor: pandas read_csv + to_json(lines), {args.floor_rows:,} rows "
              f"({results['floor']['csv_mb']} MB): {results['floor']['wall_s']} s ({cpu:.2f} s CPU)", flush=True)
        for rows in args.rows:
            t0 = time.perf_counter()
            r = dry_run(data.dataset(rows), tmp)
            results["dry_runs"].append(r)
            print(f"dry run {rows:>9,} rows: {r['wall_s']:7.2f} s ({r['rows_per_s']:,} rows/s; CPU {r['cpu_s']} s, "
                  f"{r['cpu_s_until_planned']} s of it to the end of planning), peak RSS {r['peak_rss_mb']} MB "
                  f"({r['peak_rss_mb_until_planned']} MB by the end of planning), ledger {r['ledger_bytes_per_event']} B/event "
                  f"[{time.perf_counter() - t0:.0f} s incl. data]", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
