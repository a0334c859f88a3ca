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

from etl.collector.server import CollectorServer

SECRET_ENV = "MP_API_SECRET"


def _parse_now(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m etl.collector", description="Local GA4 Measurement Protocol endpoint.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    p.add_argument("--data", type=Path, required=True, help="folder for events_YYYYMMDD.ndjson")
    p.add_argument("--measurement-id", required=True)
    p.add_argument("--timezone", default="UTC", help="reporting zone that decides each event's date")
    p.add_argument("--now", type=_parse_now, default=None, help="pin the clock (ISO-8601; naive = UTC)")
    p.add_argument("--api-secret-file", type=Path, default=None, help=f"used when {SECRET_ENV} is unset")
    for name in ("fail-rate", "throttle-rate", "drop-rate", "reset-rate"):
        p.add_argument(f"--{name}", type=float, default=0.0)
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--latency-jitter-ms", type=float, default=0)
    p.add_argument("--seed", type=int, default=0)
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
        )
    except (ValueError, KeyError) as exc:  # bad rate, unknown time zone
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
