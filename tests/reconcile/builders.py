"""Builds ledgers and stores exactly in the documented formats (docs/ARCHITECTURE.md).

Why build them here: the ledger and the collector are written by other stages; these tests pin
reconciliation to the contracts, not to another stage's code. Client and user ids are distinctive
strings so a test can prove they never reach a report.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pandas as pd

from etl.config import (
    Config,
    DestinationConfig,
    PropertyConfig,
    ReconcileConfig,
    WindowConfig,
)
from etl.load import open_ledger

TIMEZONE = "Europe/London"
CLIENT_ID_PREFIX = "777000111."  # GA client ids look like "<random>.<seconds>"
USER_ID_PREFIX = "crm-user-"


def client_id_for(transaction_id: str) -> str:
    return f"{CLIENT_ID_PREFIX}{zlib.crc32(transaction_id.encode()):010d}"


def micros_for(event_date: str, hour: int = 12) -> int:
    day = datetime.strptime(event_date, "%Y%m%d").replace(hour=hour, tzinfo=UTC)
    return int(day.timestamp() * 1_000_000)


@dataclass
class SentEvent:
    transaction_id: str | None
    event_date: str
    event_name: str = "purchase"
    source: str = "shop"
    run_id: str = "run-1"
    sent_run_id: str | None = "run-1"
    status: str = "sent"
    possible_duplicate: int = 0
    has_session: bool = True
    sent_at: str | None = None  # ISO-8601 UTC; default: the builder clock (hours from 2026-11-18 11:06 UTC)
    value: float = 10.0
    currency: str = "EUR"

    @property
    def client_id(self) -> str:
        return client_id_for(self.transaction_id or self.event_date)


def create_ledger(path: Path, events: list[SentEvent]) -> Path:
    """A ledger holding `events`, written through the ledger's own interface (its states, its runs)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    moments = iter(range(1_795_000_000_000_000, 1_796_000_000_000_000, 3_600_000_000))
    pinned: list[int] = []  # set while marking an event whose sent_at the test chose

    def clock() -> int:
        return pinned[-1] if pinned else next(moments)

    with open_ledger(path, clock=clock) as ledger:
        ledger.bind_property("G-RECONCILE1", "local")
        runs = sorted({e.run_id for e in events} | {e.sent_run_id for e in events if e.sent_run_id})
        for run in runs:
            ledger.begin_run(run, "send")
        for i, e in enumerate(events):
            key = f"{e.source}|{e.event_name}|{e.transaction_id or f'row:{i}'}"
            params = {"transaction_id": e.transaction_id} if e.transaction_id is not None else {}
            event_json = orjson.dumps({"name": e.event_name, "timestamp_micros": micros_for(e.event_date),
                                       "params": {**params, "value": e.value, "currency": e.currency}}).decode()
            frame = pd.DataFrame([{
                "source": e.source, "row": i + 1, "event_key": key, "event_name": e.event_name, "client_id": e.client_id,
                "user_id": f"{USER_ID_PREFIX}{i}", "consent_json": pd.NA, "timestamp_micros": micros_for(e.event_date),
                "event_date": e.event_date, "transaction_id": e.transaction_id, "has_session": e.has_session,
                "event_json": event_json,
            }])
            ledger.plan(frame, e.run_id, oldest_sendable_micros=0)
            ledger.snapshot_pending()
            (pending,) = [p for p in ledger.iter_pending() if p.event_key == key]
            maybe = [bool(e.possible_duplicate)]
            if e.status in ("sent", "failed"):
                ledger.mark_in_flight([pending.id])  # the ledger's rule: only an event in flight is sent or failed
            if e.status == "sent":
                if e.sent_at is not None:
                    pinned.append(int(datetime.fromisoformat(e.sent_at).timestamp() * 1_000_000))
                ledger.mark_sent([pending.id], e.sent_run_id or e.run_id, attempts=[1], maybe_delivered=maybe)
                pinned.clear()
            elif e.status == "failed":
                ledger.mark_failed([pending.id], e.run_id, attempts=[1], maybe_delivered=maybe, reason="http 503")
    return path


def export_row(
    transaction_id: str | None,
    event_date: str,
    *,
    event_name: str = "purchase",
    run_marker: str | None = "run-1",
    session: bool = True,
    value: float = 10.0,
    currency: str = "EUR",
    resend_marker: str | None = None,
) -> dict:
    """One event as the collector stores it: BigQuery export column names and nesting."""

    def param(key: str, *, s: str | None = None, i: int | None = None, d: float | None = None) -> dict:
        return {"key": key, "value": {"string_value": s, "int_value": i, "float_value": None, "double_value": d}}

    params = [param("value", d=float(value)), param("currency", s=currency)]
    if run_marker is not None:
        params.append(param("mpetl_run", s=run_marker))
    if resend_marker is not None:
        params.append(param("mpetl_resend", s=resend_marker))
    if session:
        params.append(param("ga_session_id", i=1700000000))
    if transaction_id is not None and event_name != "purchase":
        params.append(param("transaction_id", s=transaction_id))
    client = client_id_for(transaction_id or event_date)
    return {
        "event_date": event_date,
        "event_timestamp": micros_for(event_date),  # as sent: MP keeps timestamp_micros
        "event_name": event_name,
        "event_params": params,
        "user_pseudo_id": client,
        "user_id": None,
        "privacy_info": {"ads_storage": "No", "analytics_storage": "Yes"},
        "ecommerce": {
            "transaction_id": transaction_id if event_name == "purchase" else None,
            "purchase_revenue": float(value),
            "refund_value": None,
            "tax_value": None,
            "shipping_value": None,
            "currency": "EUR",
        }
        if event_name == "purchase"
        else None,
        "items": [{"item_id": "SKU-1", "item_name": "thing", "price": float(value), "quantity": 1}],
        "stream_id": "1234",
        "platform": "WEB",
        "collected_traffic_source": None,
        "event_server_timestamp_offset": 0,
    }


def site_row(at: datetime, timezone: str = TIMEZONE) -> dict:
    """A page_view of the site's own tag (no marker) stamped `at`: live traffic, the export's watermark."""
    from zoneinfo import ZoneInfo

    micros = int(at.timestamp() * 1_000_000)
    return {
        "event_date": at.astimezone(ZoneInfo(timezone)).strftime("%Y%m%d"),
        "event_timestamp": micros,
        "event_name": "page_view",
        "event_params": [{"key": "page_location", "value": {"string_value": "https://www.example.com/",
                                                            "int_value": None, "float_value": None, "double_value": None}}],
        "user_pseudo_id": "555.1700000000",
        "user_id": None,
        "ecommerce": None,
        "items": [],
        "stream_id": "1234",
        "platform": "WEB",
        "event_server_timestamp_offset": 0,
    }


def write_store(folder: Path, rows: list[dict]) -> Path:
    """Append rows to `events_YYYYMMDD.ndjson` by their event_date, as the collector does."""
    folder.mkdir(parents=True, exist_ok=True)
    by_day: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_day[row["event_date"]].append(row)
    for day, day_rows in by_day.items():
        with (folder / f"events_{day}.ndjson").open("ab") as fh:
            for row in day_rows:
                fh.write(orjson.dumps(row) + b"\n")
    return folder


def make_config(tmp_path: Path, **reconcile: object) -> Config:
    settings = {"backend": "duckdb", "store": tmp_path / "store"} | reconcile
    return Config(
        file=tmp_path / "mpetl.toml",
        base_dir=tmp_path,
        property=PropertyConfig(measurement_id="G-TEST123", timezone=TIMEZONE),
        destination=DestinationConfig(),
        ledger_path=tmp_path / "ledger.sqlite",
        window=WindowConfig(),
        sources=(),
        reconcile=ReconcileConfig(**settings),  # type: ignore[arg-type]
    )


@dataclass
class Scenario:
    """Sent events in the ledger and what the export holds, built from one list of ids per date."""

    tmp_path: Path
    sent: list[SentEvent] = field(default_factory=list)
    exported: list[dict] = field(default_factory=list)

    def send(self, event_date: str, ids: list[str], **kwargs: object) -> list[SentEvent]:
        events = [SentEvent(transaction_id=t, event_date=event_date, **kwargs) for t in ids]  # type: ignore[arg-type]
        self.sent.extend(events)
        return events

    def arrive(self, events: list[SentEvent], *, drop: frozenset[str] = frozenset(), times: int = 1) -> None:
        """The events reach the export (all but `drop`), each `times` times, carrying their run marker."""
        for e in events:
            if e.transaction_id in drop:
                continue
            for _ in range(times):
                self.exported.append(
                    export_row(
                        e.transaction_id,
                        e.event_date,
                        event_name=e.event_name,
                        run_marker=e.sent_run_id,
                        session=e.has_session,
                        value=e.value,
                        currency=e.currency,
                    )
                )

    def build(self, **reconcile: object) -> Config:
        config = make_config(self.tmp_path, **reconcile)
        create_ledger(config.ledger_path, self.sent)
        write_store(self.tmp_path / "store", self.exported)
        return config


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(n)]
