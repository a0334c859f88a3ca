"""Run the collector as a separate process, for tests that kill the sender (or the collector).

Why a process and not a thread: a test that ``kill -9``s the sender must not take the endpoint down
with it, and a store written by another process proves the 204-after-flush contract for real.
The secret travels in the child's environment, never on its command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import etl
from etl.collector.faults import NO_FAULTS, FaultOptions

_REPO_ROOT = Path(etl.__file__).resolve().parent.parent


class SpawnedCollector:
    """A running ``python -m etl.collector`` child: its URL, store folder, pid and log."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, data_dir: Path, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.data_dir = data_dir
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        import httpx  # only tests read the stats: `mpetl` itself never pays for importing httpx here

        return httpx.get(f"{self.url}/__stats", timeout=5).json()

    def _control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        answer = httpx.post(f"{self.url}{path}", json=body or {}, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def live_traffic(self, events: int = 1) -> int:
        """The site's own tag records `events` page_views now: the export's watermark moves to now."""
        return int(self._control("/__live", {"events": events})["event_timestamp"])

    def withhold(self, transaction_ids: list[str]) -> int:
        """Our rows with these ids leave the export until `release` (a late update); returns how many."""
        return int(self._control("/__withhold", {"transaction_ids": transaction_ids})["withheld"])

    def release(self) -> int:
        return int(self._control("/__release")["released"])

    def read_log(self) -> str:
        """The child's stderr so far (access lines and errors)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        return self.process.returncode


def _command(data_dir: Path, options: dict[str, Any], faults: FaultOptions) -> list[str]:
    cmd = [sys.executable, "-m", "etl.collector", "--data", str(data_dir)]
    for name, value in {**options, **dataclasses.asdict(faults)}.items():
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd


def _pump(stream: IO[bytes], lines: queue.Queue[str]) -> None:
    for raw in stream:
        lines.put(raw.decode("utf-8", errors="replace"))
    stream.close()


@contextlib.contextmanager
def spawn_collector(
    data_dir: Path | str,
    *,
    measurement_id: str | None = None,
    api_secret: str,
    firebase_app_id: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timezone: str = "UTC",
    now: dt.datetime | None = None,
    faults: FaultOptions = NO_FAULTS,
    stream_id: str | None = None,
    daily_lag_s: float | None = None,
    dm_service_account: Path | None = None,
    property_id: str | None = None,
    dm_token_ttl_s: float | None = None,
    dm_requests_per_minute: int | None = None,
    startup_timeout_s: float = 20.0,
) -> Iterator[SpawnedCollector]:
    """Start a collector process on a free port, wait until it answers, stop it on exit."""
    data_dir = Path(data_dir)
    options = {
        "host": host,
        "port": port,
        "measurement_id": measurement_id,
        "firebase_app_id": firebase_app_id,
        "timezone": timezone,
        "now": now,
        "stream_id": stream_id,
        "daily_lag_s": daily_lag_s,
        "dm_service_account": dm_service_account,
        "property_id": property_id,
        "dm_token_ttl_s": dm_token_ttl_s,
        "dm_requests_per_minute": dm_requests_per_minute,
    }
    env = dict(os.environ, MP_API_SECRET=api_secret, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    log_fd, log_name = tempfile.mkstemp(prefix="mpetl-collector-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "wb") as log_file:
        process = subprocess.Popen(
            _command(data_dir, options, faults), stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, env=env
        )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    handle: SpawnedCollector | None = None
    try:
        url = _wait_started(process, lines, startup_timeout_s, log_path)
        handle = SpawnedCollector(process, url, data_dir, log_path)
        _wait_answering(handle, startup_timeout_s)
        yield handle
    finally:
        if handle is not None:
            handle.stop()
        elif process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        with contextlib.suppress(OSError):
            log_path.unlink()


def _wait_started(process: subprocess.Popen[bytes], lines: queue.Queue[str], timeout_s: float, log: Path) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"collector exited with code {process.returncode} before listening: {tail}") from None
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "collector_started":
                return str(event["url"])
    raise RuntimeError(f"collector did not start within {timeout_s:g} s")


def _wait_answering(handle: SpawnedCollector, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            handle.stats()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or handle.process.poll() is not None:
                raise RuntimeError("collector is not answering") from None
            time.sleep(0.05)
