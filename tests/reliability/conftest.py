"""Fixtures: collectors as separate processes (killing the job never kills the endpoint), free ports."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from etl.collector import SpawnedCollector, spawn_collector
from tests.reconcile.conftest import bigquery_emulator  # noqa: F401 - the BigQuery API for the output crash trials
from tests.reliability.harness import MEASUREMENT_ID, NOW, SECRET


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Callable[..., SpawnedCollector]]:
    """Start collector processes on 127.0.0.1 (store under tmp_path/state/collector by default)."""
    with ExitStack() as stack:

        def start(data_dir: Path | None = None, *, secret: str = SECRET, **faults: Any) -> SpawnedCollector:
            return stack.enter_context(spawn_collector(
                data_dir or tmp_path / "state" / "collector", measurement_id=MEASUREMENT_ID, api_secret=secret,
                timezone="Europe/London", now=NOW, **faults))

        yield start


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
