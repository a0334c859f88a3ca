"""Shared machinery for the reliability suite: generated inputs, the CLI as a real process, ledger reads.

Why the CLI in a subprocess: the promises under test ("nothing lost after kill -9", "two runs never
double-send", "the secret never reaches a file") are about the process a scheduler starts, so the
tests start exactly that process (the suite's `MpetlRunner` with `process=True`, on the samples'
night) and read back what it left on disk. `run_args`/`reconcile_args` are mpetl's arguments.
"""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from etl.errors import MpetlError
from etl.load import open_ledger
from tests.support import SAMPLES_NOW, MpetlRunner, ledger_location, samples_config

MEASUREMENT_ID = "G-K7QW2ZP9LM"  # the samples config's property
NOW = dt.datetime.fromisoformat(SAMPLES_NOW.replace("Z", "+00:00"))
SECRET = "test-secret-reliability-51c2"

GENERATED_COLUMNS = {
    "client_id": "GA Cookie",
    "session_id": "GA Session",
    "timestamp": "Closed At",
    "transaction_id": "Order ID",
    "value": "Amount",
    "currency": "Currency",
}


def write_orders(path: Path, *, prefix: str, clients: int, per_client: int, hours_ago: float = 30.0,
                 now: dt.datetime = NOW) -> list[str]:
    """A valid generic CSV: `clients` × `per_client` purchases inside the 72 h window; returns the tids.

    Rows of one client share a cookie, so the sender packs them into ⌈per_client / 25⌉ requests.
    """
    start = now - dt.timedelta(hours=hours_ago)
    step_s = min(7.0, hours_ago * 3600 / 2 / max(1, clients * per_client))
    tids: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERATED_COLUMNS.values())
        for c in range(clients):
            cookie = f"GA1.1.{1_000_000 + c}.{1_763_000_000 + c}"
            for k in range(per_client):
                i = c * per_client + k
                tid = f"{prefix}-{i:05d}"
                tids.append(tid)
                moment = start + dt.timedelta(seconds=step_s * i)
                writer.writerow([cookie, str(1_795_000_000 + c), moment.strftime("%Y-%m-%d %H:%M:%S"), tid,
                                 f"{10 + i % 90}.{i % 100:02d}", "EUR"])
    return tids


def generic_source(path: Path, *, name: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "csv", "path": str(path), "event": "purchase", "timezone": "UTC",
            "consent_default": "grant", "columns": dict(GENERATED_COLUMNS), **extra}


def config_for(tmp_path: Path, sources: list[dict[str, Any]], *, endpoint: str = "local",
               **destination: Any) -> Path:
    """The samples config with only the given sources, state under tmp_path, fast backoff."""
    dest = {"backoff_base_s": 0.02, "backoff_max_s": 0.2, **destination}
    return samples_config(tmp_path, endpoint=endpoint, sources=sources, destination=dest)


def config_on_postgres(tmp_path: Path, url: str, sources: list[dict[str, Any]], *, endpoint: str,
                       **destination: Any) -> Path:
    """`config_for` with `[ledger] url = url`: one PostgreSQL ledger (a shard fleet's, or a server the test
    stops and starts itself) instead of the samples config's SQLite path."""
    config = config_for(tmp_path, sources, endpoint=endpoint, **destination)
    text = config.read_text()
    start_at = text.index("[ledger]")
    end_at = text.find("\n[", start_at + 1)
    config.write_text(text[:start_at] + f'[ledger]\nurl = "{url}"\n' + (text[end_at:] if end_at != -1 else ""))
    return config


RUNNER = MpetlRunner(clock=SAMPLES_NOW)  # the samples' night, on the child's wall clock


def run_args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--config", str(config), "--out", str(out), "--now", SAMPLES_NOW, *extra]


def reconcile_args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["reconcile", "--config", str(config), "--out", str(out), "--now", SAMPLES_NOW, *extra]


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    def summary(self, out: Path) -> dict[str, Any]:
        return orjson.loads((out / "summary.json").read_bytes())


def cli(*args: str, secret: str = SECRET, timeout: float = 120) -> Finished:
    done = RUNNER(*args, env={"MP_API_SECRET": secret}, process=True, timeout=timeout)
    return Finished(done.returncode, done.stdout, done.stderr)


def start(*args: str, secret: str = SECRET) -> subprocess.Popen[bytes]:
    return RUNNER.popen(*args, env={"MP_API_SECRET": secret})


def ledger_path(tmp_path: Path) -> Path | str:
    """The ledger of the config written for tmp_path: a SQLite file, or a PostgreSQL URL (ledger_backend)."""
    return ledger_location(tmp_path)


def ledger_exists(path: Path | str) -> bool:
    """The SQLite file exists, or the PostgreSQL database holds the ledger's tables (a run killed at
    start-up may have left neither)."""
    if isinstance(path, Path):
        return path.exists()
    import psycopg

    with psycopg.connect(path, autocommit=True) as con:
        return bool(con.execute("SELECT to_regclass('mpetl_meta') IS NOT NULL").fetchone()[0])


def ledger_counts(path: Path | str) -> dict[str, int]:
    """Events per state and `runs`, read through the ledger's interface while another process writes
    it ({} until the ledger exists: a reader is refused until then)."""
    if isinstance(path, Path) and not path.exists():
        return {}
    try:
        with open_ledger(path, read_only=True) as ledger:
            return ledger.state_counts()
    except MpetlError:  # the ledger maps its driver's errors: no sqlite3/psycopg error leaves it
        return {}


def in_flight_events(path: Path | str) -> set[EventId]:
    if not ledger_exists(path):
        return set()
    with open_ledger(path, read_only=True) as ledger:
        rows = ledger.inspect()
    rows = rows[rows["status"] == "in_flight"]
    return set(zip(rows["event_name"], rows["transaction_id"], strict=True))


EventId = tuple[str, str]  # (event_name, transaction_id): how the store and the ledger name one event


def ledger_rows(path: Path) -> dict[EventId, dict[str, Any]]:
    """(event_name, transaction_id) → its ledger row (status, possible_duplicate, run ids, attempts)."""
    with open_ledger(path, read_only=True) as ledger:
        rows = ledger.inspect().to_dict("records")
    by_id = {(r["event_name"], r["transaction_id"]): r for r in rows}
    assert len(by_id) == len(rows), "two ledger rows share (event_name, transaction_id): the harness cannot tell them apart"
    return by_id


def integrity(path: Path) -> str:
    with open_ledger(path, read_only=True) as ledger:
        return "ok" if ledger.integrity_ok() else "corrupt"


def stored_events(data_dir: Path, prefix: str = "") -> Counter[EventId]:
    """How many times each (event_name, transaction_id) reached the collector's store."""
    counts: Counter[EventId] = Counter()
    for file in sorted(data_dir.glob("events_*.ndjson")):
        for line in file.read_bytes().splitlines():
            row = orjson.loads(line)
            params = {p["key"]: p["value"] for p in row.get("event_params") or []}
            tid = (params.get("transaction_id") or {}).get("string_value")
            if tid is not None and tid.startswith(prefix):
                counts[(row["event_name"], tid)] += 1
    return counts


def requested_events(requests_ndjson: Path) -> Counter[EventId]:
    """(event_name, transaction_id) of every event in a dry-run's exact request bodies."""
    counts: Counter[EventId] = Counter()
    for line in requests_ndjson.read_bytes().splitlines():
        body = orjson.loads(line)
        for event in body["events"]:
            if "destinations" in body:  # a Data Manager request (docs/data-manager.md)
                counts[(event["eventName"], event["transactionId"])] += 1
            else:
                counts[(event["name"], event["params"]["transaction_id"])] += 1
    return counts


def balanced(summary: dict[str, Any]) -> bool:
    """rows_in is the sum of the buckets (etl.accounting.Buckets), in total and for every source."""
    from etl.accounting import Buckets

    return all(Buckets.from_summary(s, where="summary").balanced() for s in (summary, *summary["sources"].values()))


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback (most recent call last)" not in text, text[-3000:]
