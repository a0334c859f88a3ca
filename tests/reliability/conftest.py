"""Fixtures: collectors as separate processes (killing the job never kills the endpoint), free ports.

`api` runs a test once per destination API where the test asks for it: the collector then serves
that API (for the Data Manager API, with a test service account it trusts) and `server.destination`
holds the `[destination]` options a config needs to send to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from etl.collector import FaultOptions, SpawnedCollector, spawn_collector
from tests.datamanager.support import PROPERTY_ID, dm_destination, point_at, service_account
from tests.reconcile.conftest import bigquery_emulator  # noqa: F401 - the BigQuery API for the output crash trials
from tests.reliability.harness import MEASUREMENT_ID, NOW, SECRET
from tests.support import LedgerBackend

APIS = ["measurement_protocol", pytest.param("data_manager", marks=pytest.mark.slow)]


@pytest.fixture
def api() -> str:
    """The destination API: MP unless a test is parametrized over `APIS` (indirectly, by name)."""
    return "measurement_protocol"


@pytest.fixture
def collector(tmp_path: Path, api: str) -> Iterator[Callable[..., SpawnedCollector]]:
    """Start collector processes on 127.0.0.1 (store under tmp_path/state/collector by default)."""
    with ExitStack() as stack:

        def start(data_dir: Path | None = None, *, secret: str = SECRET, dm_events_per_request: int = 25,
                  **faults: Any) -> SpawnedCollector:
            dm: dict[str, Any] = {}
            credentials = None
            if api == "data_manager" and LedgerBackend.admin_url is not None:
                # The suite's time: the Data Manager copies run on SQLite; both ledgers run the MP copies.
                pytest.skip("Data Manager trials run on the SQLite ledger (PostgreSQL is covered by the MP copy)")
            if api == "data_manager":
                credentials = service_account(tmp_path / "dm" / "service-account.json")
                dm = {"dm_service_account": credentials, "property_id": PROPERTY_ID}
            server = stack.enter_context(spawn_collector(
                data_dir or tmp_path / "state" / "collector", measurement_id=MEASUREMENT_ID, api_secret=secret,
                timezone="Europe/London", now=NOW, **dm, faults=FaultOptions(**faults)))
            if credentials is None:
                server.destination = {"endpoint": server.url}
            else:
                point_at(credentials, server.url)
                # Few events a request (MP's 25 by default; a test sets its own MP request size): the same
                # request structure as the MP copy of the trial, so kills and stops land mid-send alike.
                server.destination = dm_destination(server.url, credentials, tmp_path / "dm" / "quota.json",
                                                    max_events_per_request=dm_events_per_request)
            return server

        yield start
