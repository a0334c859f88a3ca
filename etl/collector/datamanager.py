"""The local stand-in for Google's Data Manager API: `POST /v1/events:ingest`, `GET /v1/requestStatus:retrieve`,
and an OAuth token endpoint `POST /token` (RFC 7523 JWT bearer grant, what google-auth's service-account
credentials call). docs/data-manager.md lists the pages this follows.

As Google documents it, and never kinder:
- a bearer token it issued and that has not expired, else 401 `UNAUTHENTICATED` in Google's error shape;
- the destination must be the property and stream it serves, else 403 `PERMISSION_DENIED`;
- more than 2,000 events, or a body over 10 MiB: 400 `INVALID_ARGUMENT` for the whole request;
- fast-fail: any invalid event fails the whole request with a `BadRequest` whose `fieldViolations`
  name `events[i].<field>`; nothing of that request is stored;
- `validateOnly`: validated, never stored, no request id;
- seeded faults as on the MP path: 500/503, 429 `RESOURCE_EXHAUSTED` (`Retry-After` and `RetryInfo`),
  a reset after storing, and "drop" = accepted with a request id but lost in asynchronous processing,
  which only request diagnostics (`FAILED`, `PROCESSING_ERROR_REASON_INTERNAL_ERROR`) reveal;
- optionally a per-minute request limit (429 beyond it), like the project quota.

Accepted events are stored as the same GA4-export rows as the MP path (etl/protocol/ga4_row via
export_row), so reconciliation works unchanged. The store cannot tell which API sent a row. Additional
parameters arrive as strings; a string that is exact JSON number text is stored as that number (as
the sender wrote it), so a value's type in the export is the same as over MP.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from etl.collector.endpoint import Answer, Endpoint
from etl.collector.export import export_row
from etl.collector.faults import DROP, FAIL, RESET, THROTTLE
from etl.protocol import VALUE_OUT_OF_BOUNDS, split_by_event
from etl.protocol.rules import FUTURE_TOLERANCE_S, MAX_EVENT_AGE_HOURS
from etl.protocol.validate import validate_request

SCOPE = "https://www.googleapis.com/auth/datamanager"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_EVENTS = 2000
_SKEW_S = 300  # how far an assertion's iat/exp may be from this endpoint's clock
MAX_BODY_BYTES = 10 * 1024 * 1024  # Google's front end: "Request payload size exceeds the limit: 10485760 bytes."
_UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.")
_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
_NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_CODES = {"NAME_INVALID": "INVALID_EVENT_NAME", "NAME_RESERVED": "RESERVED_NAME_USED", "VALUE_REQUIRED": "REQUIRED_FIELD_MISSING",
          "VALUE_INVALID": "INVALID_FORMAT", "EXCEEDED_MAX_ENTITIES": "TOO_MANY_ELEMENTS",
          "VALUE_OUT_OF_BOUNDS": "FIELD_VALUE_TOO_LONG"}


@dataclass(frozen=True)
class Trust:
    """Whose assertions the token endpoint accepts: a service account's email and public key (PEM)."""

    client_email: str
    public_key_pem: str

    @classmethod
    def from_service_account_file(cls, path: Path) -> Trust:
        """The public half of a test service account's key (the private half never leaves the file)."""
        from cryptography.hazmat.primitives import serialization

        info = orjson.loads(Path(path).read_bytes())
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(info["client_email"], pem.decode())


def make_service_account(token_uri: str = "http://127.0.0.1/token", *, client_email: str = "mpetl-local@mpetl-local.iam.gserviceaccount.com"
                         ) -> tuple[dict[str, Any], Trust]:
    """A throwaway service account for the local endpoint: its JSON (private key inside) and the Trust
    the collector needs. A fresh 2048-bit RSA key each time (~50 ms); never a real Google account."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {"type": "service_account", "project_id": "mpetl-local", "private_key_id": secrets.token_hex(20),
            "private_key": private.decode(), "client_email": client_email, "client_id": "1" + "0" * 20,
            "token_uri": token_uri}
    return info, Trust(client_email, public.decode())


def google_error(status: int, code: str, message: str, *details: dict[str, Any]) -> Answer:
    body = {"error": {"code": status, "message": message, "status": code, "details": list(details)}}
    return Answer(status, {"Content-Type": "application/json"}, orjson.dumps(body))


def _error_info(reason: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "datamanager.googleapis.com"}


def parse_timestamp(text: Any) -> int | None:
    """RFC 3339 → integer µs (nanoseconds cut), or None when it is not RFC 3339."""
    match = _TS.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, zone = match.groups()
    try:
        moment = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=dt.UTC)
    except ValueError:
        return None
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    micros = int((frac or "0").ljust(6, "0")[:6])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    delta = moment - epoch
    return ((delta.days * 86_400 + delta.seconds) - offset) * 1_000_000 + micros


def _typed(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value):
        return orjson.loads(value)
    return value


_CONSENT = {"CONSENT_GRANTED": "GRANTED", "CONSENT_DENIED": "DENIED"}


def to_mp(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[int, tuple[str, str]]]:
    """A Data Manager event → (MP event, MP request identity, MP param position → DM field) for the
    validator and the store; the inverse of etl/load/datamanager/request.py."""
    params: dict[str, Any] = {}
    where: dict[str, str] = {}
    for key, dm in (("transaction_id", "transactionId"), ("value", "conversionValue"), ("currency", "currency")):
        if dm in event:
            params[key], where[key] = event[dm], dm
    cart = event.get("cartData") if isinstance(event.get("cartData"), dict) else {}
    if cart.get("couponCodes"):
        params["coupon"], where["coupon"] = cart["couponCodes"][0], "cartData.couponCodes[0]"
    for k, p in enumerate(event.get("additionalEventParameters") or []):
        if isinstance(p, dict) and isinstance(p.get("parameterName"), str):
            params[p["parameterName"]] = _typed(p.get("value"))
            where[p["parameterName"]] = f"additionalEventParameters[{k}].value"
    if "items" in cart:
        items = []
        for item in cart["items"] if isinstance(cart["items"], list) else []:
            item = item if isinstance(item, dict) else {}
            out: dict[str, Any] = {}
            if "itemId" in item:
                out["item_id"] = item["itemId"]
            if "unitPrice" in item:
                out["price"] = item["unitPrice"]
            if "quantity" in item:
                out["quantity"] = int(item["quantity"]) if str(item["quantity"]).lstrip("-").isdigit() else item["quantity"]
            for p in item.get("additionalItemParameters") or []:
                if isinstance(p, dict) and isinstance(p.get("parameterName"), str):
                    out[p["parameterName"]] = _typed(p.get("value"))
            items.append(out)
        params["items"], where["items"] = items, "cartData.items"
    mp_event: dict[str, Any] = {"name": event.get("eventName"), "params": params}
    ts = parse_timestamp(event.get("eventTimestamp"))
    if ts is not None:
        mp_event["timestamp_micros"] = ts
    identity: dict[str, Any] = {"app_instance_id": event.get("appInstanceId")} if "appInstanceId" in event else \
        {"client_id": event.get("clientId")}
    identity.update(_place(event))
    if "userId" in event:
        identity["user_id"] = event["userId"]
    consent = event.get("consent") if isinstance(event.get("consent"), dict) else {}
    mp_consent = {mp: _CONSENT[consent[dm]] for mp, dm in (("ad_user_data", "adUserData"), ("ad_personalization", "adPersonalization"))
                  if consent.get(dm) in _CONSENT}
    if mp_consent:
        identity["consent"] = mp_consent
    return mp_event, identity, where


_LOCATION = {"city": "city", "subdivisionCode": "region_id", "regionCode": "country_id",
             "subcontinentCode": "subcontinent_id", "continentCode": "continent_id"}
_DEVICE = {"category": "category", "languageCode": "language", "operatingSystem": "operating_system",
           "operatingSystemVersion": "operating_system_version", "model": "model", "brand": "brand",
           "browser": "browser", "browserVersion": "browser_version"}


def _place(event: dict[str, Any]) -> dict[str, Any]:
    """`eventLocation` / `eventDeviceInfo` in MP's request terms, so the store fills geo.* and device.* as
    for an MP request (etl/protocol/place.py); an unknown member is kept under its own name and refused."""
    out: dict[str, Any] = {}
    location = event.get("eventLocation")
    if isinstance(location, dict):
        out["user_location"] = {_LOCATION.get(k, k): v for k, v in location.items()}
    device = event.get("eventDeviceInfo")
    if isinstance(device, dict):
        mp = {_DEVICE.get(k, k): v for k, v in device.items() if k not in ("screenWidth", "screenHeight")}
        if isinstance(device.get("screenWidth"), int) and isinstance(device.get("screenHeight"), int):
            mp["screen_resolution"] = f"{device['screenWidth']}x{device['screenHeight']}"
        out["device"] = mp
    return out


def _dm_path(mp_path: str, where: dict[str, str]) -> str:
    """`events[0].params.value` → `conversionValue`; `events[0].timestamp_micros` → `eventTimestamp`."""
    rest = mp_path.split(".", 1)[1] if "." in mp_path else ""
    if rest.startswith("timestamp_micros"):
        return "eventTimestamp"
    if rest.startswith("name"):
        return "eventName"
    if rest.startswith("params."):
        key = re.split(r"[.\[]", rest[len("params."):], maxsplit=1)[0]
        return where.get(key, "additionalEventParameters")
    if mp_path.startswith("client_id"):
        return "clientId"
    if mp_path.startswith("app_instance_id"):
        return "appInstanceId"
    if mp_path.startswith("user_location"):
        return "eventLocation"
    if mp_path.startswith("device"):
        return "eventDeviceInfo"
    if mp_path.startswith("user_id"):
        return "userId"
    return "event"


class DataManagerEndpoint:
    """The Data Manager side of a collector: shares the MP endpoint's store, clock, faults and stats."""

    def __init__(self, endpoint: Endpoint, trust: Trust, *, property_id: str, token_ttl_s: float = 3600.0,
                 per_minute: int | None = None, status_delay_s: float = 0.0) -> None:
        self.mp = endpoint
        self.trust = trust
        self.property_id = property_id
        self.token_ttl_s = token_ttl_s
        self.per_minute = per_minute
        self.status_delay_s = status_delay_s
        self._tokens: dict[str, float] = {}  # access token → expiry (time.monotonic)
        self._requests: dict[str, dict[str, Any]] = {}  # request id → status for diagnostics
        self._minute: list[float] = []
        self._lock = threading.Lock()

    # --- POST /token ----------------------------------------------------------------------
    def token(self, raw: bytes) -> Answer:
        import google.auth.exceptions
        from google.auth import jwt

        self.mp.stats.add("token_requests")
        form = {k: v[0] for k, v in parse_qs(raw.decode("ascii", errors="replace")).items()}
        if form.get("grant_type") != JWT_BEARER or "assertion" not in form:
            return self._token_error("unsupported_grant_type", "Only the JWT bearer grant is supported.")
        try:
            # The signature here; the times below against this collector's clock (pinned in tests, as
            # the sender's is), with Google's few minutes of tolerance.
            claims = jwt.decode(form["assertion"], certs=self.trust.public_key_pem, verify=True,
                                clock_skew_in_seconds=10**10)
        except (ValueError, google.auth.exceptions.GoogleAuthError):
            return self._token_error("invalid_grant", "Invalid JWT Signature.")
        now_s = self.mp.now_micros() / 1e6
        if not (claims.get("iat", 0) - _SKEW_S <= now_s <= claims.get("exp", 0) + _SKEW_S):
            return self._token_error("invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
        if claims.get("iss") != self.trust.client_email or not str(claims.get("aud", "")).endswith("/token"):
            return self._token_error("invalid_grant", "Invalid JWT: wrong issuer or audience.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return self._token_error("invalid_scope", "The scope https://www.googleapis.com/auth/datamanager is required.")
        token = "ya29.local-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl_s
        self.mp.stats.add("tokens_issued")
        return Answer(200, {"Content-Type": "application/json"},
                      orjson.dumps({"access_token": token, "expires_in": int(self.token_ttl_s), "token_type": "Bearer"}))

    def _token_error(self, error: str, description: str) -> Answer:
        self.mp.stats.add("tokens_refused")
        return Answer(400, {"Content-Type": "application/json"},
                      orjson.dumps({"error": error, "error_description": description}))

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer "):].strip()
        with self._lock:
            for known, expiry in self._tokens.items():
                if hmac.compare_digest(known, token):
                    return expiry > time.monotonic()
        return False

    # --- POST /v1/events:ingest ------------------------------------------------------------
    def ingest(self, raw: bytes, authorization: str | None) -> Answer:
        stats = self.mp.stats
        stats.add("dm_requests")
        if not self._authorized(authorization):
            stats.add("dm_unauthorized")
            return self._count(google_error(401, "UNAUTHENTICATED", _UNAUTHENTICATED))
        if self.per_minute is not None and not self._within_minute():
            return self._count(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded: requests per minute.",
                                            _error_info("RESOURCE_EXHAUSTED")))
        plan = self.mp.faults.next_plan()
        if plan.delay_s:
            time.sleep(plan.delay_s)
        if len(raw) > MAX_BODY_BYTES:
            return self._count(google_error(400, "INVALID_ARGUMENT",
                                            f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."))
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._count(google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return self._bad_request("events is required.", [{"field": "events", "description": "At least one event is required.",
                                                              "reason": "REQUIRED_FIELD_MISSING"}])
        if plan.kind == FAIL:
            stats.injected(f"fail_{plan.status}")
            stats.add("events_refused", len(events))
            code = "INTERNAL" if plan.status == 500 else "UNAVAILABLE"
            return self._count(google_error(plan.status or 500, code, "The service is currently unavailable."))
        if plan.kind == THROTTLE:
            stats.injected("throttle")
            stats.add("events_refused", len(events))
            answer = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", _error_info("RESOURCE_EXHAUSTED"),
                                  {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"})
            answer.headers["Retry-After"] = "1"
            return self._count(answer)
        if len(events) > MAX_EVENTS:
            stats.add("events_refused", len(events))
            return self._count(google_error(400, "INVALID_ARGUMENT", f"At most {MAX_EVENTS} events can be sent in a request.",
                                            _error_info("TOO_MANY_EVENTS")))
        denied = self._destination_problem(body.get("destinations"))
        if denied:
            stats.add("events_refused", len(events))
            return self._count(google_error(403, "PERMISSION_DENIED", denied, _error_info("PERMISSION_DENIED")))
        converted, violations = self._validate(events)
        if violations:
            stats.add("events_refused", len(events))
            stats.add("dm_events_invalid", len({v["field"].split("]")[0] for v in violations}))
            return self._bad_request("There was a problem with the request.", violations)
        if body.get("validateOnly") is True:
            stats.add("dm_validate_requests")
            return self._count(Answer(200, {"Content-Type": "application/json"}, b"{}"))
        stats.add("events_received", len(events))
        request_id = str(uuid.uuid4())
        if plan.kind == DROP:  # accepted, then lost while processing: only diagnostics can tell
            stats.injected("drop")
            stats.drop_request("injected_drop")
            stats.drop_events("injected_drop", len(events))
            self._remember(request_id, len(events), failed=len(events))
        else:
            self._store(converted)
            self._remember(request_id, len(events), failed=0)
        answer = Answer(200, {"Content-Type": "application/json"}, orjson.dumps({"requestId": request_id}))
        if plan.kind == RESET:
            stats.injected("reset")
            stats.response("reset")
            return Answer(200, reset=True)
        return self._count(answer)

    def _count(self, answer: Answer) -> Answer:
        self.mp.stats.response(answer.status)
        return answer

    def _bad_request(self, message: str, violations: list[dict[str, Any]]) -> Answer:
        return self._count(google_error(400, "INVALID_ARGUMENT", message, _error_info("INVALID_ARGUMENT"),
                                        {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}))

    def _within_minute(self) -> bool:
        now = time.monotonic()
        with self._lock:
            self._minute = [t for t in self._minute if now - t < 60.0]
            if len(self._minute) >= (self.per_minute or 0):
                return False
            self._minute.append(now)
            return True

    def _destination_problem(self, destinations: Any) -> str | None:
        if not isinstance(destinations, list) or len(destinations) != 1 or not isinstance(destinations[0], dict):
            return "Exactly one Google Analytics destination is expected."
        d = destinations[0]
        account = d.get("operatingAccount") if isinstance(d.get("operatingAccount"), dict) else {}
        if account.get("accountType") != "GOOGLE_ANALYTICS_PROPERTY" or str(account.get("accountId")) != self.property_id:
            return "The caller does not have permission on the operating account."
        if d.get("productDestinationId") not in {self.mp.measurement_id, self.mp.firebase_app_id} - {None}:
            return "The product destination is not a data stream of this property."
        return None

    def _validate(self, events: list[Any]) -> tuple[list[tuple[dict, dict]], list[dict[str, Any]]]:
        now = self.mp.now_micros()
        converted: list[tuple[dict, dict]] = []
        violations: list[dict[str, Any]] = []
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                violations.append({"field": f"events[{i}]", "description": "An event must be an object.", "reason": "INVALID_EVENT"})
                continue
            mp_event, identity, where = to_mp(event)
            if "eventTimestamp" not in event:
                violations.append({"field": f"events[{i}].eventTimestamp", "description": "event_timestamp is required.",
                                   "reason": "REQUIRED_FIELD_MISSING"})
                continue
            if "timestamp_micros" not in mp_event:
                violations.append({"field": f"events[{i}].eventTimestamp", "description": "Invalid timestamp format.",
                                   "reason": "INVALID_FORMAT"})
                continue
            stream = "app" if self.mp.firebase_app_id and not self.mp.measurement_id else "web"
            messages = validate_request({**identity, "events": [mp_event]}, now_micros=now,
                                        max_age_hours=MAX_EVENT_AGE_HOURS, future_tolerance_s=FUTURE_TOLERANCE_S,
                                        stream=stream)
            request_level, by_event = split_by_event(messages)
            for m in request_level + by_event.get(0, []):
                path = _dm_path(m["fieldPath"], where)
                if path == "eventTimestamp" and m["validationCode"] == VALUE_OUT_OF_BOUNDS:
                    reason = "EVENT_TIME_INVALID"
                else:
                    reason = _CODES.get(m["validationCode"], "INVALID_EVENT")
                violations.append({"field": f"events[{i}].{path}", "description": m["description"], "reason": reason})
            converted.append((mp_event, identity))
        return converted, violations

    def _store(self, converted: list[tuple[dict, dict]]) -> None:
        mp = self.mp
        now = mp.now_micros()
        rows = [export_row(event, identity, arrival_micros=now, zone=mp.zone, stream_id=mp.stream_id,
                           firebase_app_id=mp.firebase_app_id if "app_instance_id" in identity else None)
                for event, identity in converted]
        mp.store.append(rows)
        mp.stats.add("events_stored", len(rows))

    def _remember(self, request_id: str, n_events: int, *, failed: int) -> None:
        with self._lock:
            self._requests[request_id] = {"events": n_events, "failed": failed, "at": time.monotonic()}

    # --- GET /v1/requestStatus:retrieve ----------------------------------------------------
    def request_status(self, query: dict[str, list[str]], authorization: str | None) -> Answer:
        if not self._authorized(authorization):
            return google_error(401, "UNAUTHENTICATED", _UNAUTHENTICATED)
        request_id = (query.get("requestId") or query.get("request_id") or [""])[0]
        with self._lock:
            known = self._requests.get(request_id)
        if known is None:
            return google_error(400, "INVALID_ARGUMENT", "The request ID is not valid.", _error_info("INVALID_REQUEST_ID"))
        destination = {"operatingAccount": {"accountType": "GOOGLE_ANALYTICS_PROPERTY", "accountId": self.property_id},
                       "productDestinationId": self.mp.measurement_id or self.mp.firebase_app_id}
        status: dict[str, Any] = {"destination": destination,
                                  "eventsIngestionStatus": {"recordCount": str(known["events"])}}
        if time.monotonic() - known["at"] < self.status_delay_s:
            status["requestStatus"] = "PROCESSING"
        elif known["failed"]:
            status["requestStatus"] = "FAILED" if known["failed"] == known["events"] else "PARTIAL_SUCCESS"
            status["errorInfo"] = {"errorCounts": [{"recordCount": str(known["failed"]),
                                                    "reason": "PROCESSING_ERROR_REASON_INTERNAL_ERROR"}]}
        else:
            status["requestStatus"] = "SUCCESS"
        return Answer(200, {"Content-Type": "application/json"},
                      orjson.dumps({"requestStatusPerDestination": [status]}))
