"""Pending events → MP request bodies: one identity (and one place) per request, ≤ 25 events, ≤ 130 kB.

Events arrive already serialised (the transform built their params), so a body is assembled from
bytes, never re-encoded; its size is known exactly before it is closed. The run marker
(`mpetl_run` = the *sending* run) is added here, so the export can be joined to the run that sent; an
event `mpetl resend` re-queued also gets `mpetl_resend` (the same run id), so a late original and its
copy can both be counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from etl.load.ledger import PendingEvent, consent_json
from etl.policy import RESEND_MARKER_PARAM, RUN_MARKER_PARAM
from etl.protocol import rules


@dataclass(frozen=True, slots=True)
class Request:
    ids: tuple[int, ...]
    body: bytes

    @property
    def body_hash(self) -> str:
        """Ties a request to its log lines (never sent anywhere)."""
        return hashlib.sha256(self.body).hexdigest()[:24]

    def gate_body(self) -> dict:
        """What the privacy gate and the manifest read: the body itself (a Data Manager request gives an
        MP-shaped view of its own)."""
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class Oversized:
    """An event that cannot fit in any request on its own: refused with a reason, never dropped."""

    event: PendingEvent
    size: int


def run_marker(run_id: str) -> bytes:
    return b'"' + RUN_MARKER_PARAM.encode() + b'":' + orjson.dumps(run_id)


def resend_marker(run_id: str) -> bytes:
    """The run marker plus `mpetl_resend` naming the run that sends again: a copy reconcile can count."""
    return run_marker(run_id) + b',"' + RESEND_MARKER_PARAM.encode() + b'":' + orjson.dumps(run_id)


def _prefix(event: PendingEvent, validation_behavior: str | None, identity_field: bytes) -> bytes:
    head = b'{"' + identity_field + b'":' + orjson.dumps(event.client_id)
    if event.user_id:
        head += b',"user_id":' + orjson.dumps(event.user_id)
    consent = consent_json(event.consent)
    if consent:
        head += b',"consent":' + consent
    if event.place:
        head += b"," + event.place  # "user_location":{…},"device":{…}: once per request, for all its events
    if validation_behavior:
        head += b',"validation_behavior":' + orjson.dumps(validation_behavior)
    return head + b',"events":['


def build_requests(
    events: Iterable[PendingEvent],
    *,
    run_id: str,
    validation_behavior: str | None = None,
    max_events: int = rules.MAX_EVENTS_PER_REQUEST,
    max_bytes: int = rules.MAX_BODY_BYTES,
    identity_field: str = "client_id",
) -> Iterator[Request | Oversized]:
    """Group consecutive events of the same identity (the ledger orders them so) into requests.

    The identity is (client, user_id, consent, place): `user_location` and `device` are request-level
    in MP, so two stores' orders of one client go in two requests, never one attributed to either
    store. `identity_field` names the client in the body: `client_id` (web stream) or `app_instance_id`
    (app stream, MP reference).
    """
    marker, resent_marker = run_marker(run_id), resend_marker(run_id)
    field = identity_field.encode()
    identity: tuple | None = None
    head = b""
    ids: list[int] = []
    parts: list[bytes] = []
    size = 0

    def flush() -> Request:
        return Request(tuple(ids), head + b",".join(parts) + b"]}")

    for event in events:
        this_identity = event.identity
        event_json = event.event_json(resent_marker if event.resent else marker)
        event_size = len(event_json)
        if ids and (this_identity != identity or len(ids) >= max_events or size + 1 + event_size + 2 > max_bytes):
            yield flush()
            ids, parts = [], []
        if not ids:
            identity = this_identity
            head = _prefix(event, validation_behavior, field)
            size = len(head)
            if size + event_size + 2 > max_bytes:
                yield Oversized(event, size + event_size + 2)
                continue
        ids.append(event.id)
        parts.append(event_json)
        size += event_size + (1 if len(parts) > 1 else 0)
    if ids:
        yield flush()
