"""The run's side of `[destination] api = "data_manager"`: credentials first, then the transport and its limits.

Why a module of its own: `pipeline.py` stays one flow for both APIs; what differs for Google's Data
Manager API (docs/data-manager.md) is decided here, in four calls the pipeline makes:

- `prepare()` before any source is read: loads the credentials (service-account file or ADC) and gets
  the first access token, so bad credentials are one line (exit 2) and nothing is planned or sent; reads
  how much of today's request quota is left.
- `send_settings()` swaps the MP request builder for the Data Manager one (2,000 events of any clients,
  `max_request_bytes`), lowers concurrency to the API's (`[destination.data_manager] concurrency`, ≤ 10, and
  never above `[destination] concurrency`), and turns the quota into a request budget:
  what does not fit stays `planned`, and the run stops with `stopped: "daily_quota"` (exit 8).
- `transport()` yields the HTTP transport; for `endpoint = "local"` it starts the project's collector with
  a throwaway service account whose `token_uri` is the collector's `/token`, so even `make run` goes
  through google-auth's real refresh path.
- `summary()` is the run's `data_manager` section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl import log
from etl.config import Config
from etl.load import OutboxTransport, SendSettings, SendStats
from etl.load.datamanager import (
    DailyQuota,
    DataManagerTransport,
    Destination,
    MinuteLimiter,
    TokenSource,
    build_dm_requests,
    load_credentials,
)

LOCAL_ENDPOINT = "local"
BUDGET_REASON = "daily_quota"


@dataclass
class Prepared:
    destination: Destination
    quota: DailyQuota
    tokens: TokenSource | None  # None: dry-run, or the local endpoint (its account is made at start-up)
    remaining_at_start: int
    transport: DataManagerTransport | None = None


def _quota_path(config: Config) -> Path:
    path = Path(config.destination.data_manager.quota_file)
    return path if path.is_absolute() else config.base_dir / path


def prepare(config: Config, mode: str, clock: Any) -> Prepared:
    dm = config.destination.data_manager
    destination = Destination(str(config.property.property_id),
                              dm.product_destination_id or config.property.mp_stream_id)
    quota = DailyQuota(_quota_path(config), dm.daily_request_quota, wall_micros=clock)
    tokens = None
    if mode != "dry-run" and config.destination.endpoint != LOCAL_ENDPOINT:
        label = str(dm.credentials_file) if dm.credentials_file else "Application Default Credentials"
        tokens = TokenSource(load_credentials(dm.credentials_file), label=label)
        tokens.token()  # fails here, in one line, before anything is planned
    remaining = quota.remaining() if mode != "dry-run" else dm.daily_request_quota
    return Prepared(destination, quota, tokens, remaining)


def send_settings(settings: SendSettings, config: Config, prepared: Prepared, *, mode: str,
                  concurrency: int | None) -> SendSettings:
    dm = config.destination.data_manager
    builder = functools.partial(build_dm_requests, destination=prepared.destination, validate_only=mode == "validate",
                                max_events=dm.max_events_per_request, max_bytes=dm.max_request_bytes,
                                app=config.property.is_app)
    budget, reason = settings.max_requests, None
    if mode != "dry-run" and (budget is None or prepared.remaining_at_start < budget):
        budget, reason = prepared.remaining_at_start, BUDGET_REASON
    return dataclasses.replace(settings, request_builder=builder, validation_behavior=None,
                               concurrency=concurrency or min(config.destination.concurrency, dm.concurrency),
                               max_requests=budget, budget_reason=reason)


@contextlib.contextmanager
def transport(config: Config, prepared: Prepared, *, outbox: Path | None, concurrency: int) -> Iterator[Any]:
    dm = config.destination.data_manager
    if outbox is not None:  # a dry run: the exact bodies, sent nowhere
        yield OutboxTransport(outbox)
        return
    limiter = MinuteLimiter(dm.requests_per_minute)
    endpoint = config.destination.endpoint
    if endpoint == LOCAL_ENDPOINT:
        import secrets

        from etl.collector import CollectorServer
        from etl.collector.datamanager import make_service_account

        store = config.reconcile.store or (config.base_dir / "state" / "collector")
        info, trust = make_service_account()
        with CollectorServer(store, measurement_id=config.property.measurement_id,
                             firebase_app_id=config.property.firebase_app_id, api_secret=secrets.token_hex(16),
                             timezone=config.property.timezone, dm_trust=trust,
                             property_id=str(config.property.property_id)) as server:
            from google.oauth2 import service_account

            from etl.load.datamanager import SCOPE

            info["token_uri"] = server.url + "/token"
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            prepared.tokens = TokenSource(credentials, label="the local endpoint's service account")
            prepared.tokens.token()
            log.emit("local_collector_started", url=server.url, store=str(store), api="data_manager")
            prepared.transport = DataManagerTransport(server.url, prepared.tokens, concurrency=concurrency,
                                                      timeout_s=config.destination.timeout_s, limiter=limiter,
                                                      quota=prepared.quota)
            yield prepared.transport
        return
    assert prepared.tokens is not None
    prepared.transport = DataManagerTransport(endpoint, prepared.tokens, concurrency=concurrency,
                                              timeout_s=config.destination.timeout_s, limiter=limiter,
                                              quota=prepared.quota)
    yield prepared.transport


def summary(prepared: Prepared, stats: SendStats, *, mode: str) -> dict[str, Any]:
    """The run's `data_manager` section: requests, quota, what the budget left planned, token refreshes."""
    processed = stats.events_sent + stats.events_failed + stats.expired + stats.rejected_at_send
    out = {
        "requests": prepared.transport.attempts if prepared.transport else stats.requests_sent,
        "unauthorized": prepared.transport.unauthorized if prepared.transport else 0,
        "token_refreshes": prepared.tokens.refreshes if prepared.tokens else 0,
        "quota_day_requests_left_at_start": prepared.remaining_at_start,
        "quota_taken_by_run": prepared.quota.taken,
        "left_planned": max(0, stats.total_events - processed),
        "left_planned_reason": stats.stopped if stats.stopped == BUDGET_REASON else None,
        "validate_only": mode == "validate",
    }
    return out
