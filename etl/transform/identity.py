"""Pseudonymous GA4 identity from the cookies a website stored in the CRM or shop.

Why this exists: sites copy the ``_ga`` and ``_ga_<container>`` cookies into hidden form fields or order
notes so that an offline conversion can be stitched back to the web visit. What lands in the export is
rarely the clean value MP wants: it may be the whole cookie (``GA1.1.1162820436.1749482504``), the
``name=value`` pair, quoted, URL-encoded (``%2E`` for ``.``, ``%24`` for ``$``) or padded with spaces.
These functions recover the MP ``client_id`` / ``session_id`` from all of those forms, vectorised with
pyarrow's RE2 regex engine, and return NA for anything else so that the caller can reject or fall back
instead of sending a made-up identity.

Accepted client id forms (``<random>.<ts>`` is the result):

* ``GA1.<n>.<random>.<ts>`` and domain/path-level variants ``GA1.<n>-<m>.<random>.<ts>``;
* a bare client id ``<digits>.<digits>`` (1–20 digits each);
* any of these after ``_ga=``, inside quotes, with surrounding whitespace or URL-encoded.

Accepted session id forms (digits are the result):

* ``GS1.<n>.<session>.<number>.…`` (positional: the third field);
* ``GS2.<n>.<k><v>$<k><v>…`` (keyed, any order: the value of the ``s`` key);
* a bare number of 1–18 digits (fits GA4's INT64 ``ga_session_id``);
* any of these after ``_ga_<container>=``, inside quotes, with whitespace or URL-encoded.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.arrow_text import arrow_strings, holds_any_byte

# Percent-escapes that can occur in a valid cookie value once decoded (anything else encoded cannot be part
# of a valid id, so the value is rejected by the patterns below whether or not we decode it).
_URL_ESCAPES = {
    "%2E": ".",
    "%24": "$",
    "%3D": "=",
    "%22": '"',
    "%27": "'",
    "%20": " ",
    "%2D": "-",
    "%5F": "_",
}
_TRIMMED = " \t\r\n\"'"

_GA_COUNTER = r"\d{1,2}(?:-\d{1,2})?"  # GA1.<n>. / GA1.<n>-<m>. : domain and path component counts

CLIENT_ID_PATTERN = (
    r"^(?:_ga\s*=\s*[\"']?)?"
    r"(?:(?i:GA1)\." + _GA_COUNTER + r"\.)?"
    r"(?P<client_id>\d{1,20}\.\d{1,20})$"
)

_GA_CONTAINER = r"^(?:_ga_[A-Za-z0-9]+\s*=\s*[\"']?)?"

#: The whole accepted grammar, matched without captures (RE2's fast DFA).
SESSION_ID_PATTERN = (
    _GA_CONTAINER + r"(?:"
    r"(?i:GS1)\." + _GA_COUNTER + r"\.\d{1,18}(?:\..*)?"
    r"|(?i:GS2)\." + _GA_COUNTER + r"\.(?:[^$]*\$)*s\d{1,18}(?:\$.*)?"
    r"|\d{1,18}"
    r")$"
)
# Picks the digits out of a value already known to match: left open at the end and lazy over GS2's fields,
# which makes the capturing pass about three times cheaper than capturing with the full grammar.
_SESSION_ID_DIGITS = (
    _GA_CONTAINER + r"(?:"
    r"(?i:GS1)\." + _GA_COUNTER + r"\.(?P<gs1>\d{1,18})"
    r"|(?i:GS2)\." + _GA_COUNTER + r"\.(?:[^$]*\$)*?s(?P<gs2>\d{1,18})(?:\$|$)"
    r"|(?P<bare>\d{1,18})$"
    r")"
)


def client_id_from_ga_cookie(values: pd.Series) -> pd.Series:
    """The MP ``client_id`` (``<random>.<ts>``) carried by each value, NA where it carries none."""
    cleaned = _clean_cookie_text(arrow_strings(values))
    found = _with_fallback(cleaned, _fast_client_id(cleaned), _client_id_general)
    return pd.Series(found, dtype="str", index=values.index, name=values.name)


def session_id_from_ga_cookie(values: pd.Series) -> pd.Series:
    """The GA4 session id (a string of digits) carried by each value, NA where it carries none."""
    cleaned = _clean_cookie_text(arrow_strings(values))
    found = _with_fallback(cleaned, _fast_session_id(cleaned), _session_id_general)
    return pd.Series(found, dtype="str", index=values.index, name=values.name)


# Fast paths: the forms sites write almost always (`GA1.1.<random>.<ts>`, `GS1.1.<session>.…`,
# `GS2.1.s<session>$…`, bare digits). Each pattern accepts a subset of the full grammar and reads the
# same digits from it; being one-pass (no choice to undo), RE2 extracts with it several times faster
# than with the full patterns. A value they do not read goes through the full grammar.
_FAST_CLIENT_ID = r"^GA1\.\d\.\d{1,20}\.\d{1,20}$"
_FAST_GS2 = r"^GS2\.\d\.s(?P<id>\d{1,18})(?:\$|$)"
_FAST_GS1 = r"^GS1\.\d\.(?P<id>\d{1,18})(?:\.|$)"
_BARE_SESSION = r"^\d{1,18}$"


def _extract(arr: pa.Array, pattern: str) -> pa.Array:
    return pc.struct_field(pc.extract_regex(arr, pattern), "id")


def _fast_client_id(cleaned: pa.Array) -> pa.Array:
    # The id starts after the 6 characters of "GA1.<n>.": a capture-free match and a slice.
    fast = pc.fill_null(pc.match_substring_regex(cleaned, _FAST_CLIENT_ID), False)
    return pc.if_else(fast, pc.utf8_slice_codeunits(cleaned, 6), pa.scalar(None, cleaned.type))


def _fast_session_id(cleaned: pa.Array) -> pa.Array:
    found = pc.coalesce(_extract(cleaned, _FAST_GS2), _extract(cleaned, _FAST_GS1))
    if found.null_count == 0:
        return found
    bare = pc.fill_null(pc.match_substring_regex(cleaned, _BARE_SESSION), False)
    return pc.coalesce(found, pc.if_else(bare, cleaned, pa.scalar(None, cleaned.type)))


def _with_fallback(cleaned: pa.Array, fast: pa.Array, general) -> pa.Array:
    """`fast`, completed by `general` (the full grammar) on the values the fast path did not read."""
    rest = pc.and_(pc.is_null(fast), pc.is_valid(cleaned))
    if not pc.any(rest).as_py():
        return fast
    positions = pc.indices_nonzero(rest)
    read = general(cleaned.take(positions))
    if read.null_count == len(read):
        return fast
    return pc.replace_with_mask(fast, rest, read)


def _client_id_general(cleaned: pa.Array) -> pa.Array:
    return pc.struct_field(pc.extract_regex(cleaned, CLIENT_ID_PATTERN), "client_id")


def _session_id_general(cleaned: pa.Array) -> pa.Array:
    valid = pc.fill_null(pc.match_substring_regex(cleaned, SESSION_ID_PATTERN), False)
    parts = pc.extract_regex(pc.if_else(valid, cleaned, pa.scalar(None, cleaned.type)), _SESSION_ID_DIGITS)
    # Exactly one alternative participates in a match and the others are empty: joining picks it.
    alternatives = [pc.struct_field(parts, name) for name in ("gs1", "gs2", "bare")]
    return pc.binary_join_element_wise(*alternatives, pa.scalar("", alternatives[0].type))




def _clean_cookie_text(arr: pa.Array) -> pa.Array:
    """Decode the relevant URL escapes (only when some value has one) and trim spaces and quotes."""
    if holds_any_byte(arr, "%"):
        for escape, char in _URL_ESCAPES.items():
            arr = pc.replace_substring(arr, escape, char)
            arr = pc.replace_substring(arr, escape.lower(), char)
    # Cookies copied cleanly hold none of the trimmed characters anywhere: skip the trim then.
    return pc.utf8_trim(arr, _TRIMMED) if holds_any_byte(arr, _TRIMMED) else arr


_NAMED_SESSION_COOKIE = r"_ga_[A-Za-z0-9]+\s*[:=]"


def session_cookie_for_property(values: pd.Series, measurement_id: str) -> tuple[pd.Series, np.ndarray]:
    """Keep, of values naming their ``_ga_<ID>`` cookies, the one of ``measurement_id`` (``G-ABC123`` → ``_ga_ABC123``).

    A site with several GA4 properties stores one session cookie per property (Shopify's note attributes
    list them all); another property's session id would attribute the conversion to the wrong session.
    Values that name no cookie pass unchanged. Returns the values and a mask of those that named cookies
    but none of this property (their session is NA).
    """
    raw = arrow_strings(values)
    # The usual case, one plain cookie: no "_" at all (one byte scan), or at least no "_ga_".
    if not holds_any_byte(raw, "_") or not pc.any(pc.match_substring(raw, "_ga_")).as_py():
        return values, np.zeros(len(values), dtype=bool)
    arr = _clean_cookie_text(raw)
    named = np.asarray(pc.fill_null(pc.match_substring_regex(arr, _NAMED_SESSION_COOKIE), False).to_numpy(zero_copy_only=False), dtype=bool)
    if not named.any():
        return values, np.zeros(len(values), dtype=bool)
    suffix = re.escape(measurement_id.removeprefix("G-"))
    pattern = r"(?:^|[\s;,])_ga_" + suffix + r"\s*[:=]\s*[\"']?(?P<v>[^\s;,\"']+)"
    ours = pc.struct_field(pc.extract_regex(arr, pattern), "v")
    picked = pc.if_else(pa.array(named), ours, arr)
    other = named & ~np.asarray(pc.is_valid(ours).to_numpy(zero_copy_only=False), dtype=bool)
    return pd.Series(picked, dtype="str", index=values.index, name=values.name), other


def app_instance_ids(values: pd.Series) -> pd.Series:
    """An app stream's ``app_instance_id`` (32 hexadecimal digits, trimmed), NA where a value holds none."""
    from etl.protocol.place import APP_INSTANCE_ID_PATTERN

    text = pd.Series(values, dtype="string").str.strip()
    return text.where(text.str.fullmatch(APP_INSTANCE_ID_PATTERN).fillna(False).astype(bool)).astype("string")
