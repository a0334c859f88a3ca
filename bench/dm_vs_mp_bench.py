"""Issue 25's figures: 1,000,000 one-event clients to the local endpoint at 50 ms a request, MP vs Data Manager.

Both runs are the whole process, exec to exit (`mpetl run` with a fresh ledger), against one collector
process that adds 50 ms to every request of either API. Data Manager sends the full 1,000,000 rows:
500 requests of 2,000 events, paced by its own client-side limit (300 requests a minute, Google's), so the
last 200 requests wait for the first minute to pass. The Measurement Protocol takes one client a request:
1,000,000 requests at 50 ms and 32 in flight is ~26 minutes, too long for `make bench`, so it runs on
`--mp-clients` (default 20,000) and its 1M figure is **extrapolated**: start-up + (wall − start-up) ×
1,000,000 / N, labelled as such. CPU per event is the mpetl process's user+system time over events sent.

    .venv/bin/python bench/dm_vs_mp_bench.py [--clients 1000000] [--mp-clients 20000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdata import MEASUREMENT_ID, dataset, write_config  # noqa: E402
from measure import ROOT, run_child  # noqa: E402

from etl.collector import spawn_collector  # noqa: E402
from etl.collector.datamanager import make_service_account  # noqa: E402

OUT = ROOT / "out" / "bench" / "dm"
MPETL = str(ROOT / ".venv" / "bin" / "mpetl") if (ROOT / ".venv" / "bin" / "mpetl").exists() else "mpetl"
SECRET = "bench-secret-dm-vs-mp"
PROPERTY_ID = "123456789"
GOAL_SPEEDUP = 10
GOAL_FEWER_REQUESTS = 400


def _config(folder: Path, csv: Path, url: str, credentials: Path | None) -> Path:
    config = write_config(folder, csv, endpoint=url)
    if credentials is None:
        return config
    text = config.read_text().replace("[property]\n", f'[property]\nproperty_id = "{PROPERTY_ID}"\n', 1)
    text = text.replace("[destination]\n", '[destination]\napi = "data_manager"\n', 1)
    text += (f'\n[destination.data_manager]\ncredentials_file = "{credentials}"\n'
             f'quota_file = "{folder / "quota.json"}"\n')
    config.write_text(text)
    return config


def _run(name: str, config: Path, out: Path, server, env: dict[str, str], counter: str) -> dict:
    before = server.stats()[counter]
    child = run_child([MPETL, "run", "--config", str(config), "--out", str(out)], env=env)
    if child.exit_code != 0:
        raise SystemExit(f"{name}: mpetl exited {child.exit_code}: {child.stderr_tail[-2000:]}")
    summary = orjson.loads((out / "summary.json").read_bytes())
    requests = server.stats()[counter] - before
    sent = summary["sent"]
    return {"api": name, "events": sent, "requests": requests, "wall_s": round(child.wall_s, 1),
            "cpu_s": round(child.cpu_s, 1), "cpu_us_per_event": round(child.cpu_s / max(1, sent) * 1e6, 1),
            "events_per_s": round(sent / child.wall_s), "peak_rss_mb": round(child.peak_rss_mb)}


def _startup_s(env: dict[str, str]) -> float:
    started = time.perf_counter()
    run_child([MPETL, "run", "--help"], env=env)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1_000_000)
    p.add_argument("--mp-clients", type=int, default=20_000)
    p.add_argument("--latency-ms", type=float, default=50)
    args = p.parse_args(argv)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    dm_csv, mp_csv = dataset(args.clients), dataset(args.mp_clients)
    info, _ = make_service_account()
    credentials = OUT / "service-account.json"
    env = {k: v for k, v in os.environ.items() if k not in ("MP_API_SECRET", "GOOGLE_APPLICATION_CREDENTIALS")}
    env["MP_API_SECRET"] = SECRET
    credentials.write_bytes(orjson.dumps(info))
    with spawn_collector(OUT / "store", measurement_id=MEASUREMENT_ID, api_secret=SECRET, latency_ms=args.latency_ms,
                         dm_service_account=credentials, property_id=PROPERTY_ID) as server:
        info["token_uri"] = server.url + "/token"
        credentials.write_bytes(orjson.dumps(info))
        dm = _run("data_manager", _config(OUT / "dm", dm_csv, server.url, credentials), OUT / "dm" / "out", server,
                  env, "dm_requests")
        mp = _run("measurement_protocol", _config(OUT / "mp", mp_csv, server.url, None), OUT / "mp" / "out", server,
                  env, "requests")
    startup = _startup_s(env)
    factor = args.clients / max(1, mp["events"])
    mp_1m = {"events": args.clients, "requests": round(mp["requests"] * factor),
             "wall_s": round(startup + (mp["wall_s"] - startup) * factor), "extrapolated_from": mp["events"]}
    result = {"latency_ms": args.latency_ms, "data_manager": dm, "measurement_protocol_measured": mp,
              "measurement_protocol_1m_extrapolated": mp_1m, "startup_s": round(startup, 2),
              "speedup": round(mp_1m["wall_s"] / dm["wall_s"], 1),
              "fewer_requests": round(mp_1m["requests"] / max(1, dm["requests"])),
              "goals": {"speedup": GOAL_SPEEDUP, "fewer_requests": GOAL_FEWER_REQUESTS}}
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
