"""Validation messages in the debug endpoint's shape, and how to tell whose fault a message is.

GA4's ``/debug/mp/collect`` answers ``{"validationMessages": [{"fieldPath", "description",
"validationCode"}]}``. Producing the same shape locally means the transform's rejects, the
collector's debug answers and Google's own answers read alike in reports.

A message's ``fieldPath`` also says what GA4 drops: a path inside ``events[i]`` costs only that
event; anything else (``client_id``, ``consent.…``, the body itself) costs the whole request.
"""

from __future__ import annotations

import re

Message = dict[str, str]

_EVENT_PATH = re.compile(r"events\[(\d+)\]")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def message(field_path: str, description: str, code: str) -> Message:
    """One message; ``description`` is a plain sentence that names fields, never their values."""
    return {"fieldPath": field_path, "description": description, "validationCode": code}


def event_index_of(msg: Message) -> int | None:
    """The index of the event a message is about, or None when it concerns the whole request."""
    m = _EVENT_PATH.match(msg["fieldPath"])
    return int(m.group(1)) if m else None


def split_by_event(messages: list[Message]) -> tuple[list[Message], dict[int, list[Message]]]:
    """Request-level messages, and event-level messages grouped by event index."""
    request_level: list[Message] = []
    by_event: dict[int, list[Message]] = {}
    for msg in messages:
        idx = event_index_of(msg)
        if idx is None:
            request_level.append(msg)
        else:
            by_event.setdefault(idx, []).append(msg)
    return request_level, by_event


def child_path(base: str, name: object, position: int) -> str:
    """The fieldPath of key ``name`` (the ``position``-th key) inside the object at ``base``.

    A well-formed name is shown as is (names are schema, not data). A malformed one could be
    anything a source system put in a header, personal data included, so it is shown by position.
    """
    if isinstance(name, str) and _SAFE_NAME.match(name):
        return f"{base}.{name}" if base else name
    return f"{base}[#{position}]"
