"""Ledger fixtures shared by the load tests: a fresh ledger bound to one property, and event frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pandas as pd
import pytest

from etl.load import Ledger, open_ledger

MID = "G-TESTSEND1"
ENDPOINT = "http://127.0.0.1"
T0 = 1_795_240_800_000_000  # 2026-11-21T06:00:00Z in µs


class Clock:
    """An injected wall clock (µs) that a test moves by hand."""

    def __init__(self, micros: int = T0) -> None:
        self.micros = micros

    def __call__(self) -> int:
        return self.micros

    def advance_hours(self, hours: float) -> None:
        self.micros += int(hours * 3_600_000_000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger_location(ledger_url) -> str:
    """Where the ledger lives: each test runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return ledger_url


@pytest.fixture
def make_ledger(ledger_location, clock) -> Iterator[Callable[..., Ledger]]:
    opened: list[Ledger] = []

    def make(*, lock: bool = False, measurement_id: str = MID, endpoint: str = ENDPOINT) -> Ledger:
        ledger = open_ledger(ledger_location, lock=lock, clock=clock)
        ledger.bind_property(measurement_id, endpoint)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def events_frame(keys: list[str], client: str = "111.222", *, ts: int = T0 - 3_600_000_000,
                 value: float = 10.5, places: list[str | None] | None = None) -> pd.DataFrame:
    """Planned-event rows as the transform makes them (event_key = source|event_name|transaction_id)."""
    rows = []
    for i, key in enumerate(keys):
        source, name, tid = key.split("|", 2)
        event = {"name": name, "timestamp_micros": ts, "params": {"transaction_id": tid, "value": value, "currency": "EUR"}}
        rows.append({"source": source, "row": i + 1, "event_key": key, "event_name": name, "client_id": client,
                     "user_id": None, "consent_json": None, "timestamp_micros": ts, "event_date": "20261121",
                     "transaction_id": tid, "has_session": False, "event_json": orjson.dumps(event).decode()})
    frame = pd.DataFrame(rows)
    frame["user_id"] = frame["user_id"].astype("string")
    frame["consent_json"] = frame["consent_json"].astype("string")
    if places is not None:  # the request members "user_location":{…} of each event (issue 26)
        frame["place_json"] = pd.Series(places, dtype="string")
    return frame
