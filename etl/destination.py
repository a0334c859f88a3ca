"""Where requests go, set up once for every command that sends (run, validate, resend, nightly, check).

Why one module: the API-secret check, the send settings and the transport — for `endpoint = "local"`
the project's collector, started for the command and stopped after — were written out by each
command, and drifted. A second destination API adds a branch to `open_transport` and
`send_settings` here, not one per command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from etl import log
from etl.clock import wall_micros
from etl.config import Config, read_api_secret
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


def max_age_micros(config: Config) -> int:
    """How old an event may be when it leaves: the 72 h window minus its safety margin."""
    window = config.window
    return int((window.max_age_hours * 60 - window.safety_margin_minutes) * 60_000_000)


def send_settings(config: Config, run_id: str, *, concurrency: int | None = None,
                  clock: Callable[[], int] = wall_micros, validate: bool = False, sample_requests: int | None = None,
                  shard: tuple[int, int] | None = None, seed: int | None = None) -> SendSettings:
    """The sender's settings from `[destination]` and `[window]`; `validate` asks Google's debug
    endpoint to enforce its recommendations and sends only `sample_requests` requests when given."""
    destination = config.destination
    return SendSettings(
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
def open_transport(config: Config, secret: str | None, *, concurrency: int | None = None, debug: bool = False,
                   outbox: Path | None = None) -> Iterator[Transport]:
    """The transport a command sends through: the exact bodies to `outbox` (a dry run, no secret
    needed), else HTTP to the endpoint (`debug`: Google's /debug/mp/collect, which records nothing)."""
    if outbox is not None:
        yield OutboxTransport(outbox)
        return
    if secret is None:
        raise ValueError("sending needs the API secret: call require_api_secret first")
    destination = config.destination
    with endpoint_url(config, secret) as url:
        yield HttpTransport(url, config.property.stream_id, secret, concurrency=concurrency or destination.concurrency,
                            timeout_s=destination.timeout_s, debug=debug, stream_param=config.property.stream_param)
