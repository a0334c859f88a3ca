"""``python -m etl.collector``: run the local MP endpoint as its own process.

Prints one JSON line ``{"event": "collector_started", "url": ...}`` on stdout once listening (so a
parent can use ``--port 0`` and read the port), access lines on stderr, and a
``collector_stopped`` line with the final counters on SIGTERM / Ctrl-C. The API secret comes from
``MP_API_SECRET`` or ``--api-secret-file``, never from the command line (visible in ``ps``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
from pathlib import Path

from etl.collector.datamanager import Trust
from etl.collector.endpoint import DEFAULT_STREAM_ID
from etl.collector.server import CollectorServer

SECRET_ENV = "MP_API_SECRET"


def _parse_now(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mpetl collector",
        description="The local GA4 Measurement Protocol endpoint: POST /mp/collect (GA's semantics: 204 even "
        "for what it drops), POST /debug/mp/collect (validation messages, records nothing), GET /__stats. "
        "Accepted events land in DATA/events_intraday_YYYYMMDD.ndjson, then DATA/events_YYYYMMDD.ndjson, "
        "shaped like the GA4 BigQuery export.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (printed on stdout)")
    p.add_argument("--data", type=Path, required=True, help="folder of the GA4-shaped store (events_YYYYMMDD.ndjson)")
    p.add_argument("--measurement-id", required=True, help="the measurement id requests must carry (G-…)")
    p.add_argument("--stream-id", default=DEFAULT_STREAM_ID,
                   help=f"numeric data-stream id written as stream_id (default: {DEFAULT_STREAM_ID})")
    p.add_argument("--daily-lag-s", type=float, default=0.0,
                   help="seconds after a date's first event before events_intraday_D becomes events_D "
                   "(default 0: straight into the daily file)")
    p.add_argument("--timezone", default="UTC", help="reporting zone that decides each event's event_date")
    p.add_argument("--now", type=_parse_now, default=None, help="pin the clock for the 72 h check (ISO-8601; naive = UTC)")
    p.add_argument("--api-secret-file", type=Path, default=None, help=f"file holding the API secret, used when {SECRET_ENV} is unset")
    faults = {
        "fail-rate": "share of requests answered 500/503",
        "throttle-rate": "share of requests answered 429 with Retry-After: 1",
        "drop-rate": "share of requests answered 204 but not recorded (what GA does to bad events)",
        "reset-rate": "share of requests recorded, then the connection cut before the answer",
    }
    for name, text in faults.items():
        p.add_argument(f"--{name}", type=float, default=0.0, help=text + " (default 0)")
    p.add_argument("--latency-ms", type=float, default=0, help="latency added to every /mp/collect request")
    p.add_argument("--latency-jitter-ms", type=float, default=0, help="extra random latency, up to this")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault injection: same seed, same outcomes")
    dm = p.add_argument_group("Data Manager API", "POST /v1/events:ingest, GET /v1/requestStatus:retrieve, POST /token")
    dm.add_argument("--dm-service-account", type=Path, default=None,
                    help="a test service-account JSON whose assertions /token accepts (only its public half is used); "
                    "without it the Data Manager endpoints answer 404")
    dm.add_argument("--property-id", default="123456789", help="the GA4 property id the destination must name")
    dm.add_argument("--dm-token-ttl-s", type=float, default=3600.0, help="lifetime of issued access tokens")
    dm.add_argument("--dm-requests-per-minute", type=int, default=None, help="answer 429 beyond this many requests a minute")
    dm.add_argument("--dm-status-delay-s", type=float, default=0.0, help="request status stays PROCESSING this long")
    return p


def _secret(args: argparse.Namespace) -> str | None:
    secret = os.environ.get(SECRET_ENV, "").strip()
    if secret:
        return secret
    if args.api_secret_file is not None and args.api_secret_file.exists():
        return args.api_secret_file.read_text().strip() or None
    return None


def _print(event: dict) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    secret = _secret(args)
    if secret is None:
        print(f"collector: set {SECRET_ENV} or --api-secret-file", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        server = CollectorServer(
            args.data,
            host=args.host,
            port=args.port,
            measurement_id=args.measurement_id,
            api_secret=secret,
            timezone=args.timezone,
            now=args.now,
            fail_rate=args.fail_rate,
            throttle_rate=args.throttle_rate,
            drop_rate=args.drop_rate,
            reset_rate=args.reset_rate,
            latency_ms=args.latency_ms,
            latency_jitter_ms=args.latency_jitter_ms,
            seed=args.seed,
            stream_id=args.stream_id,
            daily_lag_s=args.daily_lag_s,
            dm_trust=Trust.from_service_account_file(args.dm_service_account) if args.dm_service_account else None,
            property_id=args.property_id,
            dm_token_ttl_s=args.dm_token_ttl_s,
            dm_requests_per_minute=args.dm_requests_per_minute,
            dm_status_delay_s=args.dm_status_delay_s,
        )
    except (ValueError, KeyError, OSError) as exc:  # bad rate, unknown time zone, non-numeric stream id, bad key file
        print(f"collector: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(ready=lambda url: _print({"event": "collector_started", "url": url, "pid": os.getpid()}))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # cannot listen (port taken, bad host)
        print(f"collector: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    _print({"event": "collector_stopped", "stats": server.stats()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
