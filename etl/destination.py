"""Where requests go, set up once for every command that sends (run, validate, resend, nightly, check).

Why one module: the API-secret check, the send settings and the transport — for `endpoint = "local"`
the project's collector, started for the command and stopped after — were written out by each
command, and drifted. The second destination API (`[destination] api = "data_manager"`, Google's
Data Manager API: etl/data_manager.py) is one branch in each of `credentials`, `send_settings` and
`open_transport` here, not one per command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl import log
from etl.clock import wall_micros
from etl.config import API_DATA_MANAGER, Config, read_api_secret
from etl.errors import ConfigError
from etl.load import HttpTransport, OutboxTransport, RetryPolicy, SendSettings

if TYPE_CHECKING:
    from etl.load.transport import Transport

LOCAL_ENDPOINT = "local"


def require_api_secret(config: Config) -> str:
    """The API secret (MP_API_SECRET, else `api_secret_file`); a config error (exit 2) without one."""
    secret = read_api_secret(config.destination)
    if not secret:
        raise ConfigError(str(config.file), "destination.api_secret_file",
                          "no API secret: set MP_API_SECRET or point api_secret_file at a file holding it")
    return secret


@dataclass(frozen=True)
class Credentials:
    """What a command needs to reach its destination, loaded before any source is read."""

    secret: str | None = None  # the MP API secret (None in a dry run, and for the Data Manager API)
    data_manager: Any = None  # `etl.data_manager.Prepared` when `[destination] api = "data_manager"`


def credentials(config: Config, *, mode: str = "send", clock: Callable[[], int] = wall_micros) -> Credentials:
    """Credentials first, so a wrong one is one line (exit 2) before anything is planned: the MP API
    secret (not needed by a dry run), or the Data Manager API's OAuth credentials and first token."""
    if config.destination.api == API_DATA_MANAGER:
        from etl import data_manager

        return Credentials(data_manager=data_manager.prepare(config, mode, clock))
    return Credentials(secret=require_api_secret(config) if mode != "dry-run" else None)


def max_age_micros(config: Config) -> int:
    """How old an event may be when it leaves: the 72 h window minus its safety margin."""
    window = config.window
    return int((window.max_age_hours * 60 - window.safety_margin_minutes) * 60_000_000)


def send_settings(config: Config, run_id: str, *, concurrency: int | None = None,
                  clock: Callable[[], int] = wall_micros, validate: bool = False, sample_requests: int | None = None,
                  shard: tuple[int, int] | None = None, seed: int | None = None,
                  creds: Credentials | None = None, dry_run: bool = False) -> SendSettings:
    """The sender's settings from `[destination]` and `[window]`; `validate` asks Google's debug
    endpoint to enforce its recommendations and sends only `sample_requests` requests when given.
    With the Data Manager API's `creds`, its request builder, concurrency and daily request budget."""
    destination = config.destination
    settings = SendSettings(
        run_id=run_id,
        policy=RetryPolicy(destination.max_attempts, destination.backoff_base_s, destination.backoff_max_s),
        concurrency=concurrency or destination.concurrency,
        max_age_micros=max_age_micros(config),
        clock=clock,
        request_deadline_s=destination.request_deadline_s,
        validation_behavior="ENFORCE_RECOMMENDATIONS" if validate else None,
        max_requests=sample_requests if validate else None,
        shard=shard,
        seed=seed,
        extra_params=config.privacy_extra_params,
        identity_field=config.property.identity_field,
    )
    if creds is not None and creds.data_manager is not None:
        from etl import data_manager

        mode = "dry-run" if dry_run else "validate" if validate else "send"
        settings = data_manager.send_settings(settings, config, creds.data_manager, mode=mode, concurrency=concurrency)
    return settings


@contextlib.contextmanager
def endpoint_url(config: Config, secret: str) -> Iterator[str]:
    """The MP endpoint's base URL; for `endpoint = "local"`, the project's collector, serving until exit.

    The collector reads the same (process) clock as the sender, as Google reads its own; its store is
    `[reconcile] store` (default state/collector), where reconciliation looks.
    """
    endpoint = config.destination.endpoint
    if endpoint != LOCAL_ENDPOINT:
        yield endpoint
        return
    from etl.collector import CollectorServer

    store = config.reconcile.store or (config.base_dir / "state" / "collector")
    prop = config.property
    with CollectorServer(store, measurement_id=prop.measurement_id, firebase_app_id=prop.firebase_app_id,
                         api_secret=secret, timezone=prop.timezone) as server:
        log.emit("local_collector_started", url=server.url, store=str(store))
        yield server.url


@contextlib.contextmanager
def open_transport(config: Config, creds: Credentials, *, concurrency: int | None = None, debug: bool = False,
                   outbox: Path | None = None) -> Iterator[Transport]:
    """The transport a command sends through: the exact bodies to `outbox` (a dry run, no secret
    needed), else HTTP to the endpoint (`debug`: Google's /debug/mp/collect, which records nothing;
    for the Data Manager API, `validateOnly`)."""
    destination = config.destination
    if creds.data_manager is not None:
        from etl import data_manager

        workers = concurrency or min(destination.concurrency, destination.data_manager.concurrency)
        with data_manager.transport(config, creds.data_manager, outbox=outbox, concurrency=workers) as transport:
            yield transport
        return
    if outbox is not None:
        yield OutboxTransport(outbox)
        return
    secret = creds.secret
    if secret is None:
        raise ValueError("sending needs the API secret: call credentials() first")
    with endpoint_url(config, secret) as url:
        yield HttpTransport(url, config.property.mp_stream_id, secret, concurrency=concurrency or destination.concurrency,
                            timeout_s=destination.timeout_s, debug=debug, stream_param=config.property.stream_param)
