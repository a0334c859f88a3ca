"""Google's error model, as the Data Manager API answers it, read into what the sender acts on.

From "Understand API errors" (developers.google.com/data-manager/api/devguides/concepts/understand-errors):
a REST error is `{"error": {"code": <HTTP status>, "message", "status": <canonical code>, "details": [...]}}`;
`details` may hold `google.rpc.BadRequest` (`fieldViolations[] {field, description, reason}`, `field` a
path with list indices such as `events[3].eventTimestamp`), `google.rpc.ErrorInfo` (`reason`),
`google.rpc.RequestInfo` (`requestId`) and `google.rpc.RetryInfo` (`retryDelay`, "1.5s"). The API is
fast-fail: one bad record fails the whole request and nothing in it is processed. So a 400 whose
violations all name events is per-event (reject those, resend the rest); anything else is the request's.

Descriptions are Google's words, but a hostile or buggy endpoint could quote a value into them: they
are scrubbed (etl.protocol.scrub_message) and cut to 200 characters before anyone stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from etl.protocol import scrub_message

_EVENT_PATH = re.compile(r"^events\[(\d+)\](?:\.([A-Za-z0-9_.\[\]]{1,200}))?$")
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


@dataclass(frozen=True)
class EventError:
    """One violation of one event: the Data Manager field (`eventTimestamp`), Google's reason, its words."""

    field: str
    reason: str
    description: str


@dataclass(frozen=True)
class GoogleError:
    status: str  # canonical code: INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED, …
    reason: str | None  # ErrorInfo.reason (an ErrorReason such as NOT_ALLOWLISTED), when given
    message: str
    by_event: dict[int, list[EventError]] = field(default_factory=dict)  # index in the request → violations
    request_level: bool = True  # a violation not tied to one event, or no violation list at all
    retry_delay_s: float | None = None
    request_id: str | None = None

    def summary(self) -> str:
        """`INVALID_ARGUMENT NOT_ALLOWLISTED`: what a failed event's ledger reason says (never a value)."""
        return " ".join(dict.fromkeys(p for p in (self.status, self.reason) if p))


def _clean(text: Any, limit: int = 200) -> str:
    text = str(text or "")
    scrubbed = scrub_message({"fieldPath": "", "description": text, "validationCode": ""})["description"]
    return scrubbed[:limit]


_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _code(text: Any) -> str | None:
    """An enum name (INVALID_FORMAT) as it is, anything else dropped: codes are never free text."""
    return text if isinstance(text, str) and _CODE.match(text) else None


def request_id_of(text: Any) -> str | None:
    """A request id as Google writes them; anything that does not look like one is not kept."""
    return text if isinstance(text, str) and _ID.match(text) else None


def _camel(path: str) -> str:
    """`event_timestamp` → `eventTimestamp` (the errors page shows both spellings: we report camelCase)."""
    head, *rest = path.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def parse_error(status_code: int, content: bytes) -> GoogleError:
    """Read an error answer; a body that is not Google's shape still gives a request-level error."""
    try:
        error = orjson.loads(content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return GoogleError(status=f"HTTP_{status_code}", reason=None, message="answer is not Google's error shape")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    reason = retry = request_id = None
    by_event: dict[int, list[EventError]] = {}
    request_level = True
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = detail.get("@type")
        if kind == _ERROR_INFO:
            reason = _code(detail.get("reason"))
        elif kind == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            retry = float(match.group(1)) if match else None
        elif kind == _REQUEST_INFO:
            request_id = request_id_of(detail.get("requestId"))
        elif kind == _BAD_REQUEST:
            violations = [v for v in detail.get("fieldViolations") or [] if isinstance(v, dict)]
            tied = [(_EVENT_PATH.match(str(v.get("field", ""))), v) for v in violations]
            request_level = not violations or any(m is None for m, _ in tied)
            for match, v in tied:
                if match is None:
                    continue
                by_event.setdefault(int(match.group(1)), []).append(EventError(
                    field=_camel(match.group(2) or ""), reason=_code(v.get("reason")) or _code(error.get("status")) or "INVALID_ARGUMENT",
                    description=_clean(v.get("description"))))
    return GoogleError(status=_code(error.get("status")) or f"HTTP_{status_code}", reason=reason,
                       message=_clean(error.get("message")), by_event=by_event,
                       request_level=request_level or not by_event, retry_delay_s=retry, request_id=request_id)
