"""Request diagnostics: `GET /v1/requestStatus:retrieve?requestId=…` for the requests a run made.

Why an early signal: the export proves arrival a day later; Google's diagnostics page
(developers.google.com/data-manager/api/devguides/diagnostics) says records can still fail during
asynchronous processing after a 200, and shows per destination `requestStatus` (SUCCESS, PROCESSING,
FAILED, PARTIAL_SUCCESS) and `errorInfo.errorCounts[] {recordCount, reason}` within minutes (a newer copy
says to wait 30 minutes, then poll with exponential backoff). So reconciliation can say "Google already
reports 2,000 events of this run as failed" before the export can show them missing. It never replaces
the export as the proof, and a diagnostics error never fails a reconciliation.

Reads have their own quota (limits page: 300/min, 100,000/day for IngestionService reads): we pace at
`per_minute` and check at most `max_requests` ids.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from etl.load.datamanager.auth import CredentialsError, TokenSource
from etl.load.datamanager.errors import parse_error

STATUS_PATH = "/v1/requestStatus:retrieve"


def request_statuses(endpoint: str, tokens: TokenSource, request_ids: Sequence[str], *, per_minute: int = 300,
                     max_requests: int = 1000, timeout_s: float = 10.0) -> dict[str, Any]:
    """Status counts over `request_ids` (requests, and the records Google counts as failed, by reason)."""
    import httpx

    statuses: Counter[str] = Counter()
    failed_records: Counter[str] = Counter()
    records = 0
    errors: Counter[str] = Counter()
    checked = 0
    started: list[float] = []
    ids = list(dict.fromkeys(r for r in request_ids if r))[:max_requests]
    with httpx.Client(timeout=timeout_s) as client:
        for request_id in ids:
            started = [t for t in started if time.monotonic() - t < 60.0]
            if len(started) >= per_minute:
                time.sleep(60.0 - (time.monotonic() - started[0]))
            started.append(time.monotonic())
            try:
                token = tokens.token()
                response = client.get(endpoint.rstrip("/") + STATUS_PATH, params={"requestId": request_id},
                                      headers={"authorization": f"Bearer {token}"})
            except CredentialsError:
                errors["UNAUTHENTICATED"] += 1
                break
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            checked += 1
            if response.status_code != 200:
                errors[parse_error(response.status_code, response.content).summary()] += 1
                continue
            try:
                per_destination = orjson.loads(response.content).get("requestStatusPerDestination") or []
            except (orjson.JSONDecodeError, AttributeError):
                errors["not JSON"] += 1
                continue
            for status in per_destination:
                statuses[str(status.get("requestStatus", "REQUEST_STATUS_UNKNOWN"))] += 1
                records += _int((status.get("eventsIngestionStatus") or {}).get("recordCount"))
                for count in (status.get("errorInfo") or {}).get("errorCounts") or []:
                    failed_records[str(count.get("reason", "UNKNOWN"))] += _int(count.get("recordCount"))
    return {"requests": len(ids), "checked": checked, "statuses": dict(statuses), "records": records,
            "failed_records": sum(failed_records.values()), "failed_by_reason": dict(failed_records),
            "errors": dict(errors)}


def _int(value: Any) -> int:
    """int64 counts arrive as JSON strings ("2000")."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
