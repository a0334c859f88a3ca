"""`mpetl check`: send one marked canary event and wait (bounded) for it in the export.

Why: Google answers 2xx to a wrong api_secret or measurement id and records nothing, and the debug
endpoint does not check credentials either; an export that is not linked (or streams nothing)
looks the same from the sender's side. Only the export can tell, so the check sends one clearly
named, non-conversion event (`mpetl_canary`, carrying an `mpetl_run` marker unique to this check)
and looks for it in the intraday (streaming) or daily tables. Run it before a night's send.

The canary is not a conversion and never enters the ledger; reconciliation only asks the export
for the event names the ledger sent, so the canary is never counted as ours or as an extra.
Like the pipeline, this module wires stages together (the destination, reconcile's export backend)
through their public surfaces.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from etl.config import Config
from etl.errors import EXIT_CANARY_NOT_FOUND, EXIT_OK

CANARY_EVENT = "mpetl_canary"


@dataclass(frozen=True)
class CanaryResult:
    canary_id: str
    found: bool
    http_status: int | None
    waited_s: float
    export_rows_today: int
    message: str

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.found else EXIT_CANARY_NOT_FOUND


def canary_body(canary_id: str, now: datetime) -> bytes:
    """One request with one non-conversion event; the client id is random, never a real visitor's."""
    client_id = f"{secrets.randbelow(10**9)}.{int(now.timestamp())}"
    event = {"name": CANARY_EVENT, "params": {"mpetl_run": canary_id}}
    return orjson.dumps({"client_id": client_id, "events": [event]})


def run_check(config: Config, *, wait_s: float, poll_s: float = 1.0, backend=None) -> CanaryResult:
    """Send the canary and poll the export until it shows up or `wait_s` has passed."""
    from etl.destination import Credentials, open_transport, require_api_secret
    from etl.reconcile import find_export_backend

    # The canary is a Measurement Protocol request (its own body, not the ledger's): it needs the MP secret.
    secret = require_api_secret(config)
    export = backend or find_export_backend(config)
    now = datetime.now(UTC)
    canary_id = f"canary-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    with open_transport(config, Credentials(secret=secret), concurrency=1) as transport:
        answer = asyncio.run(_post(transport, canary_body(canary_id, now)))
    dates = _dates_around(now, config.property.timezone)
    started = time.monotonic()
    found = False
    if answer.ok:
        while True:
            events = export.events_for(dates, [CANARY_EVENT])
            if bool((events["run_marker"] == canary_id).fillna(False).any()):
                found = True
                break
            if time.monotonic() - started >= wait_s:
                break
            time.sleep(min(poll_s, max(0.0, wait_s - (time.monotonic() - started))))
    waited = round(time.monotonic() - started, 1)
    counts = export.table_counts(dates)
    today = dates[1]
    rows_today = counts.get(today, 0) + counts.get(f"intraday_{today}", 0)
    message = _explain(found, answer, waited, rows_today, today, canary_id)
    return CanaryResult(canary_id, found, answer.status, waited, rows_today, message)


def _explain(found: bool, answer, waited: float, rows_today: int, today: str, canary_id: str) -> str:
    if found:
        return f"canary {canary_id} found in the export after {waited:g} s: sending and export work."
    if not answer.ok:
        what = f"HTTP {answer.status}" if answer.status is not None else f"no answer ({answer.error})"
        return f"canary not sent: the endpoint answered {what}; check [destination] endpoint and the network."
    if rows_today:
        return (
            f"canary {canary_id} not found after {waited:g} s, although the export holds {rows_today} events for "
            f"{today}: likely a wrong api_secret or measurement_id (Google answers 2xx and records nothing), or a "
            "measurement id of another stream than the exported property's."
        )
    return (
        f"canary {canary_id} not found after {waited:g} s and the export has no table for {today}: likely the "
        "BigQuery export is not linked or its streaming (intraday) export is off (a daily-only export shows "
        "today's events tomorrow); a wrong api_secret or measurement_id looks the same until then."
    )


def _dates_around(now: datetime, timezone: str) -> list[str]:
    """Yesterday, today and tomorrow in the property's zone (today is the middle one)."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    return [(today + timedelta(days=k)).strftime("%Y%m%d") for k in (-1, 0, 1)]


async def _post(transport, body: bytes):
    try:
        return await transport.post(body)
    finally:
        await transport.aclose()
