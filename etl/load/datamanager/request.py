"""Pending ledger events → Data Manager `IngestEventsRequest` bodies: ≤ 2,000 events of any clients.

The mapping is Google's field-mappings page for MP → Data Manager
(developers.google.com/data-manager/api/devguides/events/analytics/measurement-protocol/upgrade/field-mappings;
JSON names as in the generated clients, docs/data-manager.md has the table): `client_id` → `clientId`,
`user_id` → `userId`, `timestamp_micros` → `eventTimestamp` (RFC 3339; written from the integer µs,
never a float, so the microseconds survive), consent per event (`CONSENT_GRANTED`/`CONSENT_DENIED`),
`transaction_id` → `transactionId`, `value`/`currency` → `conversionValue`/`currency` (event fields on
the recommended-events page), `items` → `cartData.items` (`itemId`, `unitPrice`, `quantity`, the rest as
`additionalItemParameters`), every other param → `additionalEventParameters` as its exact JSON text.
The run marker `mpetl_run` rides first among the additional parameters, so the export still joins on it.
A store's `user_location` and the source's `device` become the Event's `eventLocation` and
`eventDeviceInfo`; an app stream's id rides as `appInstanceId` (field-mappings page: "Required for app
events") and its Firebase App ID is the destination's `productDestinationId`.

Why bytes assembled like the MP builder: the size of a body is known exactly before it is closed, and
a request that Google refuses event by event (fast-fail) is rebuilt without the bad events from the
same parts, never re-encoded.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from etl.load.batching import Oversized
from etl.load.datamanager.rejects import refusal_reason
from etl.load.ledger import PendingEvent

MAX_EVENTS = 2000  # limits page: "2,000 Event resources in the events list"
ACCOUNT_TYPE = "GOOGLE_ANALYTICS_PROPERTY"
RUN_MARKER = "mpetl_run"
_CONSENT = (None, "CONSENT_GRANTED", "CONSENT_DENIED")  # the ledger's consent code digits: absent/granted/denied
_EVENT_FIELDS = {"transaction_id": "transactionId", "value": "conversionValue", "currency": "currency"}
_ITEM_FIELDS = {"item_id": "itemId", "price": "unitPrice"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Destination:
    """Where the events go: the GA4 property (operating and login account) and its web stream."""

    property_id: str
    product_destination_id: str  # the measurement id (G-…) for a web stream

    def json(self) -> bytes:
        account = {"accountType": ACCOUNT_TYPE, "accountId": self.property_id}
        return orjson.dumps({"operatingAccount": account, "loginAccount": account,
                             "productDestinationId": self.product_destination_id})


def rfc3339_micros(timestamp_micros: int) -> str:
    """`2026-11-28T21:04:05.123456Z`: integer arithmetic, six fractional digits, always UTC."""
    seconds, micros = divmod(timestamp_micros, 1_000_000)
    moment = _EPOCH + dt.timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"


def _text(value: Any) -> str:
    """The string representation Google asks for (`EventParameter.value`): strings as they are, the
    rest as exact JSON text (12.5, true)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra = []
    for key, value in item.items():
        if key in _ITEM_FIELDS:
            out[_ITEM_FIELDS[key]] = value
        elif key == "quantity" and type(value) is int:
            out["quantity"] = str(value)  # int64: a string in proto3 JSON
        else:
            extra.append({"parameterName": key, "value": _text(value)})
    if extra:
        out["additionalItemParameters"] = extra
    return out


# MP's `user_location` → the Event's `eventLocation` (field-mappings page: "user_location →
# events.event_location"; EventLocation: city, subdivisionCode "ISO 3166-2", regionCode "the 2-letter CLDR
# region code", subcontinentCode / continentCode "UN M49"). MP's `device` → `eventDeviceInfo` (DeviceInfo:
# category, languageCode "ISO 639-1", screenWidth/screenHeight integers, operatingSystem(Version), model,
# brand, browser(Version)). Nothing else: no storeId (Store Sales, not GA), never ipAddress or userAgent.
_LOCATION_FIELDS = {"city": "city", "region_id": "subdivisionCode", "country_id": "regionCode",
                    "subcontinent_id": "subcontinentCode", "continent_id": "continentCode"}
_DEVICE_FIELDS = {"category": "category", "language": "languageCode", "operating_system": "operatingSystem",
                  "operating_system_version": "operatingSystemVersion", "model": "model", "brand": "brand",
                  "browser": "browser", "browser_version": "browserVersion"}


@functools.lru_cache(maxsize=1024)
def place_fields(place: bytes | None) -> dict[str, Any]:
    """The ledger's request members (`"user_location":{…},"device":{…}`) as the Event's fields; a night
    has a handful of places, so each is mapped once."""
    if not place:
        return {}
    members = orjson.loads(b"{" + place + b"}")
    out: dict[str, Any] = {}
    location = {_LOCATION_FIELDS[k]: v for k, v in (members.get("user_location") or {}).items() if k in _LOCATION_FIELDS}
    if location:
        out["eventLocation"] = location
    device = members.get("device") or {}
    info = {_DEVICE_FIELDS[k]: v for k, v in device.items() if k in _DEVICE_FIELDS}
    if "screen_resolution" in device:
        width, _, height = device["screen_resolution"].partition("x")
        info.update(screenWidth=int(width), screenHeight=int(height))
    if info:
        out["eventDeviceInfo"] = info
    return out


def event_object(event: PendingEvent, run_id: str, *, app: bool = False) -> dict[str, Any]:
    """One ledger event as a Data Manager `Event` (see the module docstring for the mapping). `app`: an
    app stream's event, identified by `appInstanceId` ("Required for app events") instead of `clientId`."""
    params = orjson.loads(event.params)
    out: dict[str, Any] = {"eventName": event.event_name, "eventTimestamp": rfc3339_micros(event.timestamp_micros),
                           "appInstanceId" if app else "clientId": event.client_id}
    out.update(place_fields(event.place))
    if event.user_id:
        out["userId"] = event.user_id
    ad_user_data, ad_personalization = _CONSENT[event.consent // 3], _CONSENT[event.consent % 3]
    if ad_user_data or ad_personalization:
        out["consent"] = {k: v for k, v in (("adUserData", ad_user_data), ("adPersonalization", ad_personalization)) if v}
    extra = [{"parameterName": RUN_MARKER, "value": run_id}]
    cart: dict[str, Any] = {}
    for key, value in params.items():
        if key in _EVENT_FIELDS:
            out[_EVENT_FIELDS[key]] = value
        elif key == "items":
            cart["items"] = [_item(i) for i in value or []]
        elif key == "coupon":
            cart["couponCodes"] = [value]  # "only provide a single coupon code" for a GA destination
        else:
            extra.append({"parameterName": key, "value": _text(value)})
    if cart:
        out["cartData"] = cart
    out["additionalEventParameters"] = extra
    return out


def gate_view(event: dict[str, Any]) -> dict[str, Any]:
    """The MP-shaped `{name, params}` of a Data Manager event, for the privacy gate and the manifest:
    the same allowlist checks the same fields whichever API carries them."""
    params: dict[str, Any] = {}
    for p in event.get("additionalEventParameters", []):
        params[p["parameterName"]] = p["value"]
    for mp, dm in _EVENT_FIELDS.items():
        if dm in event:
            params[mp] = event[dm]
    cart = event.get("cartData") or {}
    if "couponCodes" in cart:
        params["coupon"] = cart["couponCodes"][0]
    if "items" in cart:
        items = []
        for item in cart["items"]:
            view = {mp: item[dm] for mp, dm in _ITEM_FIELDS.items() if dm in item}
            if "quantity" in item:
                view["quantity"] = item["quantity"]
            view.update({p["parameterName"]: p["value"] for p in item.get("additionalItemParameters", [])})
            items.append(view)
        params["items"] = items
    return {"name": event["eventName"], "params": params}


_MP_LOCATION = {dm: mp for mp, dm in _LOCATION_FIELDS.items()}
_MP_DEVICE = {**{dm: mp for mp, dm in _DEVICE_FIELDS.items()}, "screenWidth": "screen_resolution",
              "screenHeight": "screen_resolution"}


@dataclass(frozen=True)
class DmRequest:
    """One `events:ingest` body and the ledger ids of its events, in order (`events[i]` is `ids[i]`)."""

    ids: tuple[int, ...]
    rows: tuple[int | None, ...]  # source rows, for messages
    parts: tuple[bytes, ...]  # each event's JSON
    head: bytes
    tail: bytes

    @property
    def body(self) -> bytes:
        return self.head + b",".join(self.parts) + self.tail

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:24]

    def gate_body(self) -> dict[str, Any]:
        """What the privacy gate and the manifest read: the request's names and keys in MP terms.

        Keys only, and one shared object per distinct event shape: 2,000 events of one kind cost one
        small dict while the request waits in the queue, not 2,000 copies of their values.
        """
        shapes: dict[bytes, dict[str, Any]] = {}
        events = []
        user_id = consent = app = False
        place: dict[str, set[str]] = {"user_location": set(), "device": set()}
        for part in self.parts:
            event = orjson.loads(part)
            user_id = user_id or "userId" in event
            consent = consent or "consent" in event
            app = app or "appInstanceId" in event
            place["user_location"].update(_MP_LOCATION.get(k, k) for k in event.get("eventLocation") or {})
            place["device"].update(_MP_DEVICE.get(k, k) for k in event.get("eventDeviceInfo") or {})
            view = gate_view(event)
            params = {k: None for k in view["params"] if k != "items"}
            if "items" in view["params"]:
                params["items"] = [dict.fromkeys(item) for item in view["params"]["items"]]
            shape = {"name": view["name"], "params": params}
            events.append(shapes.setdefault(orjson.dumps(shape), shape))
        body: dict[str, Any] = {"app_instance_id" if app else "client_id": True, "events": events}
        if user_id:
            body["user_id"] = True
        if consent:
            body["consent"] = True
        body.update({name: dict.fromkeys(keys, True) for name, keys in place.items() if keys})
        return body

    def refusal_reason(self, index: int, errors: list) -> str:
        """The ledger reason for the event at `index` that Google refused (rejects.py has the shape)."""
        return refusal_reason(errors, orjson.loads(self.parts[index]))

    def without(self, indices: Iterable[int]) -> DmRequest | None:
        """The same request without the events at `indices` (fast-fail: Google processed none of it)."""
        drop = set(indices)
        keep = [i for i in range(len(self.ids)) if i not in drop]
        if not keep:
            return None
        return DmRequest(tuple(self.ids[i] for i in keep), tuple(self.rows[i] for i in keep),
                         tuple(self.parts[i] for i in keep), self.head, self.tail)


def _head(destination: Destination) -> bytes:
    return b'{"destinations":[' + destination.json() + b'],"events":['


def _tail(validate_only: bool) -> bytes:
    return b'],"validateOnly":true}' if validate_only else b"]}"


def build_dm_requests(
    events: Iterable[PendingEvent],
    *,
    run_id: str,
    destination: Destination,
    validate_only: bool = False,
    max_events: int = MAX_EVENTS,
    max_bytes: int,
    validation_behavior: str | None = None,  # MP's; accepted so the sender can call either builder alike
    app: bool = False,
) -> Iterator[DmRequest | Oversized]:
    """Pack events, in the ledger's order, into requests of ≤ `max_events` events and ≤ `max_bytes`.

    Each event carries its own location and device (`eventLocation`, `eventDeviceInfo` are Event fields,
    not request-level as in MP), so events of different stores share a request here."""
    head, tail = _head(destination), _tail(validate_only)
    fixed = len(head) + len(tail)
    ids: list[int] = []
    rows: list[int | None] = []
    parts: list[bytes] = []
    size = fixed

    def flush() -> DmRequest:
        return DmRequest(tuple(ids), tuple(rows), tuple(parts), head, tail)

    for event in events:
        part = orjson.dumps(event_object(event, run_id, app=app))
        if fixed + len(part) > max_bytes:
            yield Oversized(event, fixed + len(part))
            continue
        if ids and (len(ids) >= max_events or size + 1 + len(part) > max_bytes):
            yield flush()
            ids, rows, parts, size = [], [], [], fixed
        size += len(part) + (1 if parts else 0)
        ids.append(event.id)
        rows.append(event.source_row)
        parts.append(part)
    if ids:
        yield flush()

