"""What the local MP endpoint does with a request, independent of HTTP.

GA4's semantics, which the sender must survive: ``/mp/collect`` answers 204 even for invalid bodies
and drops what is invalid (an invalid event alone; a bad request-level field, the whole request);
a wrong measurement_id or api_secret also gets 204 and records nothing (counted as ``bad_auth``).
``/debug/mp/collect`` validates the body and never records; like Google's, it does not check the
api_secret or the measurement id, so it cannot tell a wrong credential (only the export can).
Injected faults (seeded) apply to ``/mp/collect`` only.

Events older than 72 h (by this collector's clock at receipt), as Google documents for "past
events" (developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events):
under the default ``validation_behavior`` RELAXED they are recorded with the timestamp reset to
72 h before receipt (counted as ``redated``); under ``ENFORCE_RECOMMENDATIONS`` they are dropped
(``too_old``) and the debug endpoint says why. ``stream_id`` is the numeric data-stream id the
export carries, not the measurement id.

Invariant visible in ``/__stats``: events_received = events_stored + sum(dropped). Events in
requests answered 429/5xx are counted apart (``events_refused``): the sender was told.

Where and on what (MP reference, "Geographic information", "Device information"): the stored row's
``geo.*`` and ``device.*`` come from the request's ``user_location`` and ``device``; GA "ignores
``ip_override``" when ``user_location`` is sent, and so does this collector, which derives nothing
from an IP (no address database offline: a request with only ``ip_override`` gets no geo). A code GA
cannot read (a ``region_id`` that is no ISO 3166-2 code) is not malformed: the request is taken (204)
and that field stays unset, the other fields are kept — a silent loss only reconciliation's geo share
shows. An app stream's request names ``firebase_app_id`` instead of ``measurement_id`` and carries
``app_instance_id`` instead of ``client_id`` (else it is invalid, dropped); its rows have
``platform`` ANDROID or IOS and ``app_info.firebase_app_id``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import orjson

from etl.collector.export import export_row
from etl.collector.faults import DROP, FAIL, RESET, THROTTLE, FaultInjector
from etl.collector.stats import Stats
from etl.collector.store import EventStore
from etl.protocol import VALUE_INVALID, VALUE_OUT_OF_BOUNDS, Message, split_by_event, to_micros
from etl.protocol.body import parse_body
from etl.protocol.rules import FUTURE_TOLERANCE_S, MAX_EVENT_AGE_HOURS
from etl.protocol.validate import validate_request

DEFAULT_STREAM_ID = "4242424242"
"""The numeric data-stream id written as ``stream_id`` unless one is configured."""

RELAXED = "RELAXED"
ENFORCE = "ENFORCE_RECOMMENDATIONS"
_HOUR_MICROS = 3_600_000_000
_NO_AGE_LIMIT_HOURS = 1e9  # RELAXED: age is not a reason to drop; the timestamp is reset instead
Query = dict[str, list[str]]


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: bool = False  # cut the connection mid-response instead of answering




class Endpoint:
    def __init__(
        self,
        store: EventStore,
        *,
        measurement_id: str | None,
        api_secret: str,
        firebase_app_id: str | None = None,
        timezone: str = "UTC",
        now: dt.datetime | None = None,
        faults: FaultInjector,
        stats: Stats,
        stream_id: str = DEFAULT_STREAM_ID,
    ) -> None:
        if not api_secret:
            raise ValueError("api_secret must not be empty")
        if not (measurement_id or firebase_app_id):
            raise ValueError("a collector needs a measurement_id (web stream) or a firebase_app_id (app stream)")
        self.store = store
        self.measurement_id = measurement_id
        self.firebase_app_id = firebase_app_id
        self._secret = api_secret.encode()
        self.zone = zoneinfo.ZoneInfo(timezone)
        self._pinned_micros = to_micros(now) if now is not None else None
        self.faults = faults
        self.stats = stats
        if not (stream_id.isascii() and stream_id.isdigit()):
            raise ValueError("stream_id must be the numeric data-stream id (digits only)")
        self.stream_id = stream_id

    def now_micros(self) -> int:
        """The collector's clock: pinned when ``now`` was given (repeatable tests), else real time."""
        return self._pinned_micros if self._pinned_micros is not None else time.time_ns() // 1000

    def _authorized(self, query: Query) -> tuple[bool, bool]:
        """(the stream id matches, api_secret matches), compared in constant time for the secret."""
        secret = query.get("api_secret", [""])[0].encode()
        return self._stream(query) is not None, bool(secret) and hmac.compare_digest(secret, self._secret)

    def _stream(self, query: Query) -> str | None:
        """"web" or "app": which of this collector's streams the query names (None: neither)."""
        mid = query.get("measurement_id", [""])[0]
        app = query.get("firebase_app_id", [""])[0]
        if mid and app:
            return None  # one stream per request: GA cannot tell which
        if self.measurement_id and mid == self.measurement_id:
            return "web"
        if self.firebase_app_id and app == self.firebase_app_id:
            return "app"
        return None

    # --- /mp/collect ---------------------------------------------------------------------
    def collect(self, query: Query, raw: bytes) -> Answer:
        self.stats.add("requests")
        plan = self.faults.next_plan()
        if plan.delay_s:
            time.sleep(plan.delay_s)
        body, byte_messages = parse_body(raw)
        events = body.get("events") if isinstance(body, dict) else None
        n_events = len(events) if isinstance(events, list) else 0

        if plan.kind == FAIL:
            return self._refuse(f"fail_{plan.status}", Answer(plan.status or 500), n_events)
        if plan.kind == THROTTLE:
            return self._refuse("throttle", Answer(429, {"Retry-After": "1"}), n_events)

        self.stats.add("events_received", n_events)
        mid_ok, secret_ok = self._authorized(query)
        if not (mid_ok and secret_ok):
            self._drop_request("bad_auth", n_events)
        elif plan.kind == DROP:
            self.stats.injected("drop")
            self._drop_request("injected_drop", n_events)
        else:
            self._accept(body, byte_messages, events if n_events else [], self._stream(query) or "web")

        if plan.kind == RESET:
            self.stats.injected("reset")
            self.stats.response("reset")
            return Answer(204, reset=True)
        self.stats.response(204)
        return Answer(204)

    def _refuse(self, kind: str, answer: Answer, n_events: int) -> Answer:
        self.stats.injected(kind)
        self.stats.add("events_refused", n_events)
        self.stats.response(answer.status)
        return answer

    def _drop_request(self, reason: str, n_events: int) -> None:
        self.stats.drop_request(reason)
        self.stats.drop_events(reason, n_events)

    def _accept(self, body: Any, byte_messages: list[Message], events: list[Any], stream: str) -> None:
        now = self.now_micros()
        messages = list(byte_messages)
        enforce = _behavior(body) == ENFORCE
        if body is not None:
            max_age = MAX_EVENT_AGE_HOURS if enforce else _NO_AGE_LIMIT_HOURS
            messages += validate_request(body, now_micros=now, max_age_hours=max_age, future_tolerance_s=FUTURE_TOLERANCE_S,
                                         stream=stream)
        app_id = self.firebase_app_id if stream == "app" else None
        request_level, by_event = split_by_event(messages)
        if request_level:
            ts = body.get("timestamp_micros") if isinstance(body, dict) else None
            self._drop_request(self._reason(request_level, ts, now), len(events))
            return
        oldest = now - MAX_EVENT_AGE_HOURS * _HOUR_MICROS
        rows = []
        for i, event in enumerate(events):
            if i in by_event:
                ts = event.get("timestamp_micros", body.get("timestamp_micros")) if isinstance(event, dict) else None
                self.stats.drop_events(self._reason(by_event[i], ts, now), 1)
                continue
            row = export_row(event, body, arrival_micros=now, zone=self.zone, stream_id=self.stream_id,
                             firebase_app_id=app_id)
            if row["event_timestamp"] < oldest:  # RELAXED: recorded, at 72 h before receipt
                row = export_row(
                    {**event, "timestamp_micros": oldest}, body, arrival_micros=now, zone=self.zone, stream_id=self.stream_id,
                    firebase_app_id=app_id,
                )
                self.stats.add("events_redated")
            rows.append(row)
        if rows:
            self.store.append(rows)
            self.stats.add("events_stored", len(rows))

    @staticmethod
    def _reason(messages: list[Message], timestamp: Any, now: int) -> str:
        """``too_old`` / ``future`` when the time window is the only problem, else ``invalid``."""
        window_only = all(
            m["validationCode"] == VALUE_OUT_OF_BOUNDS and m["fieldPath"].endswith("timestamp_micros") for m in messages
        )
        if window_only and type(timestamp) is int:
            return "too_old" if timestamp < now else "future"
        return "invalid"

    # --- /debug/mp/collect -----------------------------------------------------------------
    def debug(self, query: Query, raw: bytes) -> Answer:
        """Validation messages for the body; credentials are not checked (Google's are not either)."""
        self.stats.add("debug_requests")
        body, byte_messages = parse_body(raw)
        messages: list[Message] = list(byte_messages)
        unparseable = any(m["fieldPath"] == "" and m["validationCode"] == VALUE_INVALID for m in byte_messages)
        if not unparseable:
            max_age = MAX_EVENT_AGE_HOURS if _behavior(body) == ENFORCE else _NO_AGE_LIMIT_HOURS
            stream = "app" if query.get("firebase_app_id") and not query.get("measurement_id") else "web"
            messages += validate_request(body, now_micros=self.now_micros(), max_age_hours=max_age, stream=stream)
        return Answer(200, {"Content-Type": "application/json"}, orjson.dumps({"validationMessages": messages}))

    # --- controls for tests: the site's own traffic, late updates --------------------------
    def live_traffic(self, raw: bytes) -> Answer:
        """Record `events` (default 1) page_views from the site's own tag, stamped now, with no marker.

        Why: live traffic is what moves the export's watermark (reconcile's evidence that it has
        processed hits received after a send); the local store otherwise holds only backdated events.
        Not subject to injected faults: it is not a request of ours.
        """
        body = _json_object(raw)
        n = body.get("events", 1)
        if type(n) is not int or not 1 <= n <= 1000:
            return _json_answer(400, {"error": "events must be an integer 1..1000"})
        now = self.now_micros()
        rows = [export_row({"name": "page_view", "params": {"page_location": "https://www.example.com/",
                                                             "engagement_time_msec": 1}},
                           {"client_id": f"{1000 + i}.{now // 1_000_000}"}, arrival_micros=now + i, zone=self.zone,
                           stream_id=self.stream_id)
                for i in range(n)]
        self.store.append(rows)
        self.stats.add("live_traffic", n)
        return _json_answer(200, {"stored": n, "event_timestamp": now + n - 1})

    def withhold(self, raw: bytes) -> Answer:
        """Take our stored rows with the given transaction ids out of the export, for a late `release`."""
        ids = _json_object(raw).get("transaction_ids")
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            return _json_answer(400, {"error": "transaction_ids must be a list of strings"})
        return _json_answer(200, {"withheld": self.store.withhold(set(ids))})

    def release(self) -> Answer:
        """Put the withheld rows back: Google's late update of a daily table."""
        return _json_answer(200, {"released": self.store.release()})

    def stats_answer(self) -> Answer:
        return Answer(200, {"Content-Type": "application/json"}, orjson.dumps(self.stats.snapshot()))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _json_answer(status: int, body: dict[str, Any]) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, orjson.dumps(body))


def _behavior(body: Any) -> str:
    """The request's ``validation_behavior``; RELAXED when absent (Google's default)."""
    value = body.get("validation_behavior") if isinstance(body, dict) else None
    return value if isinstance(value, str) else RELAXED
