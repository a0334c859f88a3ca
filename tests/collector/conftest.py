"""Fixtures for the local MP endpoint: real servers on 127.0.0.1, random free ports, stopped after."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from etl.collector import CollectorServer

MEASUREMENT_ID = "G-TEST123"
API_SECRET = "s3cr3t-Collector-Key-42"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
NOW_MICROS = 1_795_348_800_000_000
HOUR = 3_600_000_000


class MPClient:
    """A real HTTP client pointed at one collector, with MP-shaped helpers."""

    def __init__(self, server: CollectorServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def collect(
        self, body: Any = None, *, raw: bytes | None = None, mid: str = MEASUREMENT_ID, secret: str = API_SECRET
    ) -> httpx.Response:
        return self.http.post("/mp/collect", params={"measurement_id": mid, "api_secret": secret}, json=body if raw is None else None, content=raw)

    def debug(self, body: Any, *, mid: str = MEASUREMENT_ID, secret: str = API_SECRET) -> httpx.Response:
        return self.http.post("/debug/mp/collect", params={"measurement_id": mid, "api_secret": secret}, json=body)

    def stats(self) -> dict[str, Any]:
        return self.http.get("/__stats").json()

    def close(self) -> None:
        self.http.close()


def purchase(tid: str, *, ts: int = NOW_MICROS - HOUR, value: float = 49.99, **params: Any) -> dict[str, Any]:
    return {
        "name": "purchase",
        "timestamp_micros": ts,
        "params": {"transaction_id": tid, "currency": "GBP", "value": value, **params},
    }


def request(*events: dict[str, Any], client_id: str = "1162820436.1749482504", **fields: Any) -> dict[str, Any]:
    return {"client_id": client_id, **fields, "events": list(events)}


@pytest.fixture
def make_collector(tmp_path: Path) -> Iterator[Callable[..., MPClient]]:
    """Start collectors with any options (defaults: test id/secret, clock pinned at NOW)."""
    clients: list[MPClient] = []

    def make(**options: Any) -> MPClient:
        options.setdefault("measurement_id", MEASUREMENT_ID)
        options.setdefault("api_secret", API_SECRET)
        options.setdefault("now", NOW)
        data_dir = options.pop("data_dir", tmp_path / f"store{len(clients)}")
        client = MPClient(CollectorServer(data_dir, **options).start())
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
        client.server.stop()


@pytest.fixture
def mp(make_collector: Callable[..., MPClient]) -> MPClient:
    return make_collector()


@pytest.fixture
def build() -> SimpleNamespace:
    """Body builders and test constants for test modules (conftest is not importable by name)."""
    return SimpleNamespace(
        purchase=purchase,
        request=request,
        MEASUREMENT_ID=MEASUREMENT_ID,
        API_SECRET=API_SECRET,
        NOW=NOW,
        NOW_MICROS=NOW_MICROS,
        HOUR=HOUR,
    )
