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
# Google reports some event problems at fieldPath "events" and names the event in the description.
_EVENT_IN_DESCRIPTION = re.compile(r"Event at index: \[(\d+)\]")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def message(field_path: str, description: str, code: str) -> Message:
    """One message; ``description`` is a plain sentence that names fields, never their values."""
    return {"fieldPath": field_path, "description": description, "validationCode": code}


def event_index_of(msg: Message) -> int | None:
    """The index of the event a message is about, or None when it concerns the whole request."""
    m = _EVENT_PATH.match(msg["fieldPath"])
    if m is None and msg["fieldPath"] == "events":
        m = _EVENT_IN_DESCRIPTION.match(msg.get("description", ""))
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


# --- scrubbing messages that came from elsewhere -------------------------------------------------------------
# A path of names (at most 40 characters, GA4's limit) and indexes; a long name holding digits is a token.
_SAFE_PATH = re.compile(r"(?:[A-Za-z][A-Za-z0-9_]{0,39}|\[#?\d{1,6}\])(?:\.[A-Za-z][A-Za-z0-9_]{0,39}|\[#?\d{1,6}\])*\Z")
_TOKEN_IN_PATH = re.compile(r"(?=[A-Za-z0-9_]*\d)[A-Za-z0-9_]{16,}")
MAX_PATH_CHARS = 512  # a longer fieldPath is no path GA4 writes: redacted without being parsed
# RE2 patterns (linear in the text, whatever it holds; Python's backtracking engine took 26 s for a 50 kB
# description with these: `\S+@\S+` retries every start of a long run of non-spaces). Index brackets are
# kept by turning them into sentinels before bracketed text is redacted (RE2 has no lookahead).
_OPEN, _CLOSE = "\x00", "\x01"
_REDACTIONS = (
    ("[\\x00\\x01]", ""),
    # URL query parameters and key=value / key: value pairs whose key sounds secret
    (r"(?i)\b(api[_-]?secret|secret|token|key|password|passwd|auth\w*|measurement_id)\b\s*[=:]\s*\S+", r"\1=…"),
    (r"[?&][A-Za-z_]+=[^&\s]*", "?…"),
    # anything in brackets or quotes that is not an index: Google puts the offending value there
    (r"\[(#?\d{1,6})\]", _OPEN + r"\1" + _CLOSE),
    (r"\[[^\]]*\]", "[…]"),
    (_OPEN + "([^" + _CLOSE + "]*)" + _CLOSE, r"[\1]"),
    (r"'[^']*'", "'…'"),
    (r'"[^"]*"', '"…"'),
    ("\u201c[^\u201d]*\u201d", "\u201c…\u201d"),
    # what is left that looks like data: emails, long digit runs, long tokens (ids, secrets, hashes)
    (r"\S+(?:@|%40)\S+", "…"),
    (r"\d[\d .\-/()+]{4,}\d", "…"),
    (r"[A-Za-z0-9_\-+/=]{16,}", "…"),
)
MAX_SCRUBBED_DESCRIPTION = 300


def scrub_message(msg: object, secrets: tuple[str, ...] = ()) -> Message:
    """A debug-endpoint message made safe to store in a summary or log: rule kept, values dropped.

    Why: the endpoint's descriptions quote the offending value (``has invalid name [jane.doe@…]``) and
    a hostile or broken endpoint can echo anything it was sent, the api_secret included. Known
    ``secrets`` are removed first; then bracketed and quoted text, ``key=value`` pairs with secret-like
    keys, URL query parameters, emails, long digit runs and long tokens are replaced by ``…``. A
    ``fieldPath`` that is not a plain path becomes ``(redacted)``; an unknown code ``UNKNOWN``.
    Scrubbing a scrubbed message changes nothing. Linear in the message's size: every pattern runs on
    RE2 (a 1 MB description takes milliseconds; the backtracking version took minutes).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from etl.protocol.rules import VALIDATION_CODES

    raw = msg if isinstance(msg, dict) else {}
    description = str(raw.get("description", ""))
    for secret in secrets:
        if secret:
            description = description.replace(secret, "…")
    text = pa.array([description], pa.large_string())
    for pattern, replacement in _REDACTIONS:
        text = pc.replace_substring_regex(text, pattern, replacement)
    description = text[0].as_py()
    if len(description) > MAX_SCRUBBED_DESCRIPTION:
        description = description[:MAX_SCRUBBED_DESCRIPTION] + "…"
    path = str(raw.get("fieldPath", ""))
    if path and (len(path) > MAX_PATH_CHARS or not _SAFE_PATH.match(path) or _TOKEN_IN_PATH.search(path)
                 or any(secret and secret in path for secret in secrets)):
        path = "(redacted)"
    code = str(raw.get("validationCode", ""))
    return message(path, description, code if code in VALIDATION_CODES else "UNKNOWN")
