"""A real local BigQuery API (bqemulator) for the BigQuery backend's tests.

Why a real emulator: the point is to run google-cloud-bigquery's own request/response path and the
exact SQL text against something that parses BigQuery SQL. The emulator embeds DuckDB, which wants
its `spatial` extension at start; with no network, the extension shipped on PyPI
(duckdb-extension-spatial) is copied into a temporary HOME's DuckDB extension folder, so the real
home directory is never touched. Ports are free ones on 127.0.0.1; the process is stopped after.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

EMULATOR_PROJECT = "demo"
START_TIMEOUT_S = 45.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_spatial_extension(home: Path) -> None:
    """Copy the PyPI-packaged spatial extension to where DuckDB looks for it under `home`."""
    spec = importlib.util.find_spec("duckdb_extension_spatial")
    assert spec is not None and spec.origin is not None, "duckdb-extension-spatial is not installed"
    version = f"v{duckdb.__version__}"
    source = Path(spec.origin).parent / "extensions" / version / "spatial.duckdb_extension"
    assert source.is_file(), f"no spatial extension for DuckDB {version} at {source}"
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    target = home / ".duckdb" / "extensions" / version / platform
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target / source.name)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The REST endpoint (http://127.0.0.1:PORT) of a running bqemulator, project `demo`."""
    home = tmp_path_factory.mktemp("bqemulator-home")
    _install_spatial_extension(home)
    rest, grpc = _free_port(), _free_port()
    log_path = home / "emulator.log"
    env = os.environ | {"HOME": str(home), "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"}
    command = [
        sys.executable,
        "-m",
        "bqemulator",
        "start",
        "--rest-port",
        str(rest),
        "--grpc-port",
        str(grpc),
        "--project",
        EMULATOR_PROJECT,
        "--log-format",
        "json",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
    endpoint = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"bqemulator exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if (
                    httpx.get(f"{endpoint}/bigquery/v2/projects/{EMULATOR_PROJECT}/datasets", timeout=1.0).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bqemulator not ready after {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
