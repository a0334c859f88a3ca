"""Pending events → MP request bodies: one identity per request, ≤ 25 events, ≤ 130 kB.

Events arrive already serialised (the transform built their JSON), so a body is assembled from
bytes, never re-encoded; its size is known exactly before it is closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from etl.load.ledger import PendingEvent
from etl.protocol import rules


@dataclass(frozen=True)
class Request:
    keys: tuple[str, ...]
    body: bytes

    @property
    def body_hash(self) -> str:
        """Stored in the ledger to tie events to the request that carried them (never sent anywhere)."""
        return hashlib.sha256(self.body).hexdigest()[:24]


@dataclass(frozen=True)
class Oversized:
    """An event that cannot fit in any request on its own: it is reported, never silently dropped."""

    key: str
    size: int


def _prefix(event: PendingEvent) -> bytes:
    head = b'{"client_id":' + orjson.dumps(event.client_id)
    if event.user_id:
        head += b',"user_id":' + orjson.dumps(event.user_id)
    if event.consent_json:
        head += b',"consent":' + event.consent_json.encode()
    return head + b',"events":['


def build_requests(
    events: Iterable[PendingEvent],
    *,
    max_events: int = rules.MAX_EVENTS_PER_REQUEST,
    max_bytes: int = rules.MAX_BODY_BYTES,
) -> Iterator[Request | Oversized]:
    """Group consecutive events of the same identity (the ledger orders them so) into requests."""
    identity: tuple[str, str | None, str | None] | None = None
    head = b""
    keys: list[str] = []
    parts: list[bytes] = []
    size = 0

    def flush() -> Request:
        return Request(tuple(keys), head + b",".join(parts) + b"]}")

    for event in events:
        this_identity = (event.client_id, event.user_id, event.consent_json)
        event_size = len(event.event_json)
        if keys and (
            this_identity != identity or len(keys) >= max_events or size + 1 + event_size + 2 > max_bytes
        ):
            yield flush()
            keys, parts = [], []
        if not keys:
            identity = this_identity
            head = _prefix(event)
            size = len(head)
            if size + event_size + 2 > max_bytes:
                yield Oversized(event.event_key, size + event_size + 2)
                continue
        keys.append(event.event_key)
        parts.append(event.event_json)
        size += event_size + (1 if len(parts) > 1 else 0)
    if keys:
        yield flush()
