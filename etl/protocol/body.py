"""From raw request bytes to a JSON value, with the byte-level rules of the Measurement Protocol.

Why separate from ``validate_request``: the sender checks the encoded size of each batch it builds,
and the collector must judge bodies it could not even parse. Duplicate keys get their own check
because every JSON parser silently keeps the last one: the event GA4 records would not be the one
the ledger thinks it sent.
"""

from __future__ import annotations

import json
from typing import Any

from etl.protocol.messages import Message, child_path, message
from etl.protocol.rules import MAX_BODY_BYTES, NAME_DUPLICATED, VALUE_INVALID, VALUE_OUT_OF_BOUNDS


class _Pairs(list):
    """An object's key/value pairs in order, kept as parsed so duplicates stay visible."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _HasDuplicates
    return d


class _HasDuplicates(Exception):
    pass


def _rebuild(node: Any, path: str, out: list[Message]) -> Any:
    if isinstance(node, _Pairs):
        d: dict[str, Any] = {}
        for position, (key, value) in enumerate(node):
            key_path = child_path(path, key, position)
            if key in d:
                out.append(message(key_path, "This key appears more than once in its object.", NAME_DUPLICATED))
            d[key] = _rebuild(value, key_path, out)
        return d
    if isinstance(node, list):
        return [_rebuild(v, f"{path}[{i}]", out) for i, v in enumerate(node)]
    return node


def parse_body(raw: bytes) -> tuple[Any, list[Message]]:
    """Parse a request body; returns the value (None when unparseable) and byte-level messages.

    Oversized bodies are still parsed (the caller decides what to drop) but carry a message.
    """
    messages: list[Message] = []
    if len(raw) > MAX_BODY_BYTES:
        messages.append(
            message("", f"The request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes.", VALUE_OUT_OF_BOUNDS)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        messages.append(message("", "The request body is not valid UTF-8.", VALUE_INVALID))
        return None, messages
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, object_pairs_hook=_strict_hook, parse_constant=_reject_constant), messages
    except _HasDuplicates:
        tree = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
        body = _rebuild(tree, "", messages)
        return body, messages
    except json.JSONDecodeError as exc:
        # The parser's own text can quote the body: say where, not what.
        where = f" (line {exc.lineno}, column {exc.colno})"
        messages.append(message("", f"The request body is not valid JSON{where}.", VALUE_INVALID))
        return None, messages
    except (ValueError, RecursionError):
        messages.append(message("", "The request body is not valid JSON.", VALUE_INVALID))
        return None, messages


def validate_body_bytes(raw: bytes) -> list[Message]:
    """Byte-level checks only: size limit, UTF-8, JSON syntax, duplicate keys."""
    return parse_body(raw)[1]
