"""`mpetl collector` and `python -m etl.collector`: one click command runs the local MP endpoint.

Prints one JSON line ``{"event": "collector_started", "url": ...}`` on stdout once listening (so a
parent can use ``--port 0`` and read the port), access lines on stderr, and a ``collector_stopped``
line with the final counters on SIGTERM / Ctrl-C. The API secret comes from ``MP_API_SECRET`` or
``--api-secret-file``, never from the command line (visible in ``ps``). The fault options are made
from `FaultOptions`' fields, so the CLI, the server and `spawn_collector` take the same seven.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import zoneinfo
from pathlib import Path
from typing import Any

import click

from etl.collector.faults import FaultOptions
from etl.commandline import INSTANT, CliError, Command, Finite

SECRET_ENV = "MP_API_SECRET"
FAULTS = [f.name for f in dataclasses.fields(FaultOptions)]


def _fault_options(command: Any) -> Any:
    """One click option per FaultOptions field (`fail_rate` → `--fail-rate`), its help from the field."""
    for spec in reversed(dataclasses.fields(FaultOptions)):
        kind = (click.IntRange(0, 2**32 - 1) if isinstance(spec.default, int) else
                Finite(0, 1) if spec.name.endswith("_rate") else Finite(0))
        text = spec.metadata["help"]
        command = click.option(f"--{spec.name.replace('_', '-')}", type=kind, default=spec.default, show_default=True,
                               help=text[0].upper() + text[1:] + ".")(command)
    return command


def _zone(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise click.BadParameter(f"unknown time zone {value!r} (an IANA name such as Europe/London)") from None
    return value


def _digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not value.isdigit() or len(value) > 20):
        raise click.BadParameter("must be the numeric data-stream id (digits only)")
    return value


@click.command("collector", cls=Command, context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Serve the local MP endpoint with a GA4-export-shaped store.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port; 0 picks a free one (printed on stdout).")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the GA4-shaped store (events_YYYYMMDD.ndjson).")
@click.option("--measurement-id", default=None, help="The web stream's measurement id requests carry (G-…).")
@click.option("--firebase-app-id", default=None,
              help="The app stream's Firebase App ID requests carry instead (1:…:android:…); one of the two is required.")
@click.option("--stream-id", default=None, callback=_digits,
              help="Numeric data-stream id written as stream_id (default: the endpoint's DEFAULT_STREAM_ID).")
@click.option("--daily-lag-s", type=Finite(0), default=0.0, show_default=True,
              help="Seconds after a date's first event before events_intraday_D becomes events_D "
                   "(0: straight into the daily file).")
@click.option("--timezone", default="UTC", show_default=True, callback=_zone,
              help="Reporting zone that decides each event's event_date.")
@click.option("--now", type=INSTANT, default=None, help="Pin the clock for the 72 h check (ISO-8601; naive = UTC).")
@click.option("--api-secret-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"File holding the API secret, used when {SECRET_ENV} is unset.")
@_fault_options
@click.option("--dm-service-account", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Data Manager API (POST /v1/events:ingest, GET /v1/requestStatus:retrieve, POST /token): a test "
                   "service-account JSON whose assertions /token accepts (only its public half is used); without it "
                   "the Data Manager endpoints answer 404.")
@click.option("--property-id", default="123456789", show_default=True,
              help="Data Manager: the GA4 property id the destination must name.")
@click.option("--dm-token-ttl-s", type=Finite(1), default=3600.0, show_default=True,
              help="Data Manager: lifetime of issued access tokens.")
@click.option("--dm-requests-per-minute", type=click.IntRange(1, 1_000_000), default=None,
              help="Data Manager: answer 429 beyond this many requests a minute.")
@click.option("--dm-status-delay-s", type=Finite(0), default=0.0, show_default=True,
              help="Data Manager: a request's status stays PROCESSING this long.")
def collector(data_dir: Path, api_secret_file: Path | None, dm_service_account: Path | None, **options: Any) -> int:
    """The local GA4 Measurement Protocol endpoint: POST /mp/collect (GA's semantics: 204 even for what
    it drops), POST /debug/mp/collect (validation messages, records nothing), GET /__stats; for tests
    POST /__live (the site's own page_views, stamped now), /__withhold and /__release (a late update).

    Accepted events land in DATA/events_intraday_YYYYMMDD.ndjson, then DATA/events_YYYYMMDD.ndjson,
    shaped like the GA4 BigQuery export.
    """
    import logging

    from etl.collector.datamanager import Trust
    from etl.collector.server import CollectorServer

    secret = _secret(api_secret_file)
    try:
        faults = FaultOptions(**{name: options.pop(name) for name in FAULTS})
    except ValueError as exc:  # rates that add up to more than 1
        raise CliError(f"collector: {exc}") from None
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    if options["stream_id"] is None:
        del options["stream_id"]
    host, port = options["host"], options["port"]
    if not (options["measurement_id"] or options["firebase_app_id"]):
        raise CliError("collector: give --measurement-id (a web stream) or --firebase-app-id (an app stream)")
    try:
        dm_trust = Trust.from_service_account_file(dm_service_account) if dm_service_account else None
        server = CollectorServer(data_dir, api_secret=secret, faults=faults, dm_trust=dm_trust, **options)
    except (ValueError, KeyError) as exc:  # a time zone, measurement id or key file the endpoint refuses
        raise CliError(f"collector: {exc}") from None
    except OSError as exc:  # the store folder cannot be created
        raise CliError(f"collector: cannot use {exc.filename or data_dir}: {exc.strerror or exc}") from None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(ready=lambda url: _print({"event": "collector_started", "url": url, "pid": os.getpid()}))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # cannot listen (port taken, bad host)
        raise CliError(f"collector: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    _print({"event": "collector_stopped", "stats": server.stats()})
    return 0


def _secret(path: Path | None) -> str:
    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret and path is not None and path.is_file():
        try:
            secret = path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            raise CliError(f"collector: cannot read {path}") from None
    if not secret:
        raise CliError(f"collector: set {SECRET_ENV} or --api-secret-file")
    return secret


def _print(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
