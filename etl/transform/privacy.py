"""Detect values that look like personal data, so that none of them reaches GA4.

Why: Google's terms forbid sending personal data (emails, phone numbers, IP addresses, card numbers, or
hashes of them) to Analytics, and a CRM export happily carries them in a "notes" or "reference" column.
Every free-text value that would leave goes through :func:`detect_personal_data`; the caller rejects the
row (or blanks the field) and reports only the detector's *name*, never the value.

Detectors, in the order they are tried (the first that fires names the value; names are stable):

* ``email`` — ``local@domain.tld``, also with the ``@`` URL-encoded as ``%40`` or full-width, and with a
  non-ASCII local part, domain or top-level domain (``jürgen@müller.de``, ``用户@例子.中国``).
* ``payment_card`` — 13–19 digits laid out as cards are (plain runs: 15 digits starting 34/37, 16 starting
  2–6, 19 starting 3–6; grouped: 4-4-4-4[-1..3], 4-6-5, 4-6-4, separated by spaces or dashes) that pass
  the **Luhn** check. Tried before ``phone`` because a grouped card number also looks like a long phone
  number.
* ``ipv4`` — four dotted octets 0–255 not glued to other digits, dots or letters.
* ``ipv6`` — eight colon-separated hex groups, or a ``::``-compressed address with at least two groups
  (``::1`` and ``fe80::`` are not personal and are not flagged).
* ``phone`` — ``+`` and 8–15 digits (separators: space, no-break space, ``-``, parentheses); ``+1.202.555.0173``;
  a parenthesised area code ``(555) 123-4567`` / ``(202)555-0173``; ``555.123.4567``; ``202/555/0173``;
  French dotted pairs ``06.12.34.56.78``; or 10–15 digits in at least two groups separated by single spaces
  (also no-break) or dashes (``020 7946 0958``, ``555-123-4567``, ``06 12 34 56 78``); each optionally followed
  by an extension (``x12``, ``ext. 12``). A hyphenated ISBN-13 (``978-3-16-148410-0``) is not a phone.
* ``us_ssn`` — a US social security number ``123-45-6789`` (or spaced) in free text, without the never-issued
  areas 000, 666, 900–999, group 00 or serial 0000.
* ``hashed_identifier`` — a standalone hex run of exactly 32, 40, 64, 96 or 128 characters (MD5, SHA-1,
  SHA-256, SHA-384, SHA-512, as ad platforms' "hashed email" fields hold), also written ``0x…`` or
  ``sha256:…``; the base64 or base64url of a SHA-256 (43 characters, padded or not) or SHA-512 digest (86,
  padded or not); and padded base64 of MD5 (24) and SHA-1 (28).

The false-positive trade-off, since transaction ids, cookies, amounts and dates pass through this too:

* A digit run only counts when it stands alone: not preceded by a letter, digit, ``.``, ``-``, ``/``,
  ``:``, ``#``, ``$``, ``@``, ``%`` or ``+``, nor by a space that follows a digit (so ``T-2026-000123``,
  ``#1001``, ``GA1.1.1162820436.1749482504`` and the fields of GS1/GS2 cookies never qualify), and not
  followed by a letter, a digit, ``:`` (so the date of ``2026-11-20 14:03`` is no phone) or a separator
  and another digit (so a run is judged whole, never by a slice of it).
* A plain run of digits without separators and without ``+`` is **not** a phone: it is indistinguishable
  from a unix timestamp, a Shopify order id or an ERP number. A phone stored as bare digits
  (``07700900123``) is therefore missed; one written ``+447700900123`` or ``07700 900123`` is caught.
* Decimal amounts (``1234.56``), ISO dates, GA client ids (``123456789.1700000000``: a dot is a phone
  separator only in the US ``555.123.4567`` layout) and currency codes do not match. A number written with
  space thousands separators (``1 234 567 890``) or a signed integer of 8+ digits (``+123456789``) *does*
  look like a phone and is flagged: amounts should go through ``value``, which is parsed as a number and
  never scanned.
* Card numbers must be laid out like real cards; an arbitrary 13–19 digit id passing Luhn by chance (one in
  ten) is not flagged unless it has a card's prefix and length. Only the first card-shaped run of a value is
  checked against Luhn (then the next, up to ``LUHN_ATTEMPTS``), which keeps the check vectorised.
* A dashless UUID is 32 hex characters and is flagged as ``hashed_identifier``: it cannot be told apart
  from an MD5, and being wrong the other way would leak a hashed email.
* A dotted quad such as a four-part version number ``1.2.3.4`` is flagged as ``ipv4``.

Speed: all detectors are joined into one RE2 pattern that is matched over the whole column (one DFA pass,
no captures); only the rows it flags — rare in real data — are matched detector by detector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.arrow_text import arrow_strings, bool_numpy

# Characters that glue a digit run to an identifier, a decimal, a date, a cookie or a URL.
_GLUE = r"\w.\-/:#$@%+"
# Space-like separators people (and spreadsheets) put between digit groups. RE2's \s is ASCII only, so the
# no-break space (U+00A0), figure space (U+2007) and narrow no-break space (U+202F) are named explicitly.
_SPACE = r"\s\x{00A0}\x{2007}\x{202F}"
_SEP = r"[ \-\x{00A0}\x{2007}\x{202F}]"
_DIGITS_START = r"(?:^|[^" + _GLUE + _SPACE + r"]|(?:^|\D)[" + _SPACE + r"])"
_DIGITS_END = r"(?:$|[^\w\-/:#$@%." + _SPACE + r"]|[." + _SPACE + r"](?:$|[^\d]))"
# A phone extension: ``x12``, ``ext. 12``, ``#12`` after the number.
_EXT = r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?"


def _grouped_digits(low: int, high: int) -> str:
    """``low``–``high`` digits in two or more groups split by single spaces (also no-break) or dashes.

    RE2 cannot count digits across separators, so there is one alternative per length of the first group
    (1–8), each with an exact count for the rest: a plain digit run never matches, a grouped one of the right
    length always does.
    """
    alternatives = [
        rf"\d{{{first}}}{_SEP}\d(?:{_SEP}?\d){{{max(low - first - 1, 0)},{high - first - 1}}}"
        for first in range(1, 9)
        if high - first - 1 >= 0
    ]
    return "(?:" + "|".join(alternatives) + ")"


# Local part and domain may be non-ASCII (``jürgen@müller.de``, internationalised addresses): any character
# beyond ASCII counts as a letter (a code-point range compiles far faster than RE2's Unicode classes, and this
# pattern is compiled once per scanned column per chunk). The ``@`` may be URL-encoded or full-width.
_INTL = r"\x{80}-\x{10FFFF}"
_EMAIL = (
    r"[A-Za-z0-9._%+\-" + _INTL + r"]+(?:@|%40|\x{FF20})[A-Za-z0-9\-" + _INTL + r"]+(?:\.[A-Za-z0-9\-" + _INTL
    + r"]+)*\.[A-Za-z" + _INTL + r"]{2,}"
)

_CARD_SEP = r"[ \-.\x{00A0}\x{2007}\x{202F}]"
_CARD_BODY = (
    r"(?:3[47]\d{13}|[2-6]\d{15}|[3-6]\d{18}"
    r"|\d{4}" + _CARD_SEP + r"\d{4}" + _CARD_SEP + r"\d{4}" + _CARD_SEP + r"\d{4}(?:" + _CARD_SEP + r"?\d{1,3})?"
    r"|\d{4}" + _CARD_SEP + r"\d{6}" + _CARD_SEP + r"\d{4,5})"
)
_CARD = _DIGITS_START + "(?P<card>" + _CARD_BODY + ")" + _DIGITS_END

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = r"(?:^|[^\w.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?:$|[^\w.]|\.(?:$|[^\w]))"

_HEX_GROUP = r"[0-9A-Fa-f]{1,4}"
_IPV6_BODY = (
    r"(?:" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){7}"
    r"|" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){1,5}::(?:" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){0,5})?"
    r"|" + _HEX_GROUP + r"::" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){0,5}"
    r"|::" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){1,6})"
)
_IPV6 = r"(?:^|[^\w:.])" + _IPV6_BODY + r"(?:$|[^\w:])"

_PHONE = (
    # +CC then 7–14 more digits, grouped by spaces, dashes, parentheses; or +CC.NNN.NNN.NNNN (dotted groups)
    r"(?:(?:^|[^\w+])\+\(?\d(?:[ \-()\x{00A0}\x{2007}\x{202F}]{0,2}\d){7,14}" + _EXT + _DIGITS_END
    + r"|(?:^|[^\w+])\+\d{1,3}(?:\.\d{1,4}){2,5}" + _EXT + _DIGITS_END
    # (202) 555-0173, (202)555-0173x12
    + r"|\(\d{3}\)[ \-.\x{00A0}]?\d{3}[ \-.\x{00A0}]?\d{4}" + _EXT + _DIGITS_END
    # 202.555.0173, 202/555/0173, 06.12.34.56.78, and 10–15 digits in space/dash groups
    + r"|" + _DIGITS_START
    + r"(?:\d{3}\.\d{3}\.\d{4}|\d{3}/\d{3}/\d{4}|0\d(?:\.\d{2}){4}|" + _grouped_digits(10, 15) + r")"
    + _EXT + _DIGITS_END + r")"
)

# A hyphenated ISBN-13 (prefix 978/979, five groups, the last a single check digit): not a phone.
_ISBN = r"(?:^|[^\w\-])97[89]-\d{1,5}-\d{1,7}-\d{1,7}-[\dX](?:$|[^\w\-])"

# US social security numbers: AAA-GG-SSSS (or spaced), without the never-issued areas 000, 666 and 900–999,
# group 00 or serial 0000. Nine digits in three groups: too short for the phone detector.
_SSN_AREA = r"(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])"
_SSN_GROUP = r"(?:0[1-9]|[1-9]\d)"
_SSN_SERIAL = r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
_SSN = (
    _DIGITS_START
    + r"(?:" + _SSN_AREA + "-" + _SSN_GROUP + "-" + _SSN_SERIAL
    + "|" + _SSN_AREA + r"[ \x{00A0}]" + _SSN_GROUP + r"[ \x{00A0}]" + _SSN_SERIAL + ")"
    + _DIGITS_END
)

# Digests as ad platforms' "hashed email" fields hold them: hex (MD5, SHA-1, SHA-256, SHA-384, SHA-512),
# optionally written ``0x…`` or ``sha256:…``; base64/base64url of SHA-256 or SHA-512 with or without
# padding; base64 of MD5 and SHA-1 only when padded (unpadded, 22 or 27 characters are too id-like).
_HASH_PREFIX = r"(?:0[xX]|(?i:sha-?(?:1|224|256|384|512)|md5)[:=\-$])?"
_B64 = r"[A-Za-z0-9+/_\-]"
_B64_START = r"(?:^|[^A-Za-z0-9+/_\-]|(?i:sha-?(?:256|512)|md5|sha-?1)[:=\-$])"
_B64_END = r"(?:$|[^A-Za-z0-9+/=_\-])"
_HASH = (
    r"(?:(?:^|[^0-9A-Za-z])" + _HASH_PREFIX
    + r"(?:[0-9A-Fa-f]{128}|[0-9A-Fa-f]{96}|[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{32})(?:$|[^0-9A-Za-z])"
    + r"|" + _B64_START + r"(?:" + _B64 + r"{42}[AEIMQUYcgkosw048]=?"
    + r"|" + _B64 + r"{85}[AQgw](?:==)?"
    + r"|" + _B64 + r"{26}[AEIMQUYcgkosw048]="
    + r"|" + _B64 + r"{21}[AQgw]==)" + _B64_END + r")"
)

#: Detector names in the order they are tried, with their RE2 patterns (search semantics: anywhere).
DETECTORS: dict[str, str] = {
    "email": _EMAIL,
    "payment_card": _CARD,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "phone": _PHONE,
    "us_ssn": _SSN,
    "hashed_identifier": _HASH,
}

_ANY = "|".join("(?:" + pattern.replace("(?P<card>", "(?:") + ")" for pattern in DETECTORS.values())
#: How many card-shaped runs of one value are checked against Luhn before giving up on it.
LUHN_ATTEMPTS = 8


def detect_personal_data(values: pd.Series) -> pd.Series:
    """For each value the name of the first detector that fires (see ``DETECTORS``), NA when none does."""
    text = arrow_strings(values)
    found = np.full(len(text), None, dtype=object)
    suspects = np.flatnonzero(bool_numpy(pc.match_substring_regex(text, _ANY)))
    if len(suspects):
        subset = text.take(pa.array(suspects))
        open_rows = np.ones(len(suspects), dtype=bool)
        for name, pattern in DETECTORS.items():
            if name == "payment_card":
                fires = _card_fires(subset)
            elif name == "phone":
                fires = _phone_fires(subset)
            else:
                fires = bool_numpy(pc.match_substring_regex(subset, pattern))
            fires &= open_rows
            found[suspects[fires]] = name
            open_rows &= ~fires
    return pd.Series(found, index=values.index, name=values.name, dtype="str")


def scan_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One column per scanned column of ``frame`` holding the detector name or NA.

    Columns the frame does not have are skipped (a source that does not map a field has nothing in it).
    When nothing fires — the usual case — the cost is one regex pass per column.
    """
    scanned = [column for column in columns if column in frame.columns]
    return pd.DataFrame({column: detect_personal_data(frame[column]) for column in scanned}, index=frame.index)


def _phone_fires(text: pa.Array) -> np.ndarray:
    """Rows holding a phone-shaped run once hyphenated ISBN-13s (``978-3-16-148410-0``) are taken out.

    An ISBN is 13 digits in dash groups, exactly the shape of a grouped phone number; the ``978``/``979``
    prefix tells it apart. Only the rows the phone pattern flags pay for the second pass.
    """
    fires = bool_numpy(pc.match_substring_regex(text, _PHONE))
    candidates = np.flatnonzero(fires & bool_numpy(pc.match_substring_regex(text, _ISBN)))
    if len(candidates):
        without = pc.replace_substring_regex(text.take(pa.array(candidates)), _ISBN, " ")
        fires[candidates] = bool_numpy(pc.match_substring_regex(without, _PHONE))
    return fires


def _card_fires(text: pa.Array) -> np.ndarray:
    """Rows holding a card-shaped run that passes Luhn; later runs are tried when the first one fails."""
    fires = np.zeros(len(text), dtype=bool)
    rows = np.arange(len(text))
    for _ in range(LUHN_ATTEMPTS):
        runs = pc.extract_regex(text, _CARD)
        shaped = bool_numpy(pc.is_valid(runs))
        if not shaped.any():
            break
        digits = pc.replace_substring_regex(pc.struct_field(runs, "card").filter(pa.array(shaped)), r"\D", "")
        passed = _luhn_valid(digits)
        fires[rows[shaped][passed]] = True
        retry = np.flatnonzero(shaped)[~passed]
        if not len(retry):
            break
        # Drop the failed run (and the boundary characters it consumed, replaced by a space) and look again.
        text = pc.replace_substring_regex(text.take(pa.array(retry)), _CARD, " ", max_replacements=1)
        rows = rows[retry]
    return fires


def _luhn_valid(digits: pa.Array) -> np.ndarray:
    """Luhn check of digit strings (at most 19 digits), vectorised over a digit matrix."""
    width = 19
    padded = pc.utf8_lpad(digits, width, "0").cast(pa.large_string())  # leading zeros do not change a Luhn sum
    if len(padded) == 0:
        return np.zeros(0, dtype=bool)
    # Every value is now exactly `width` ASCII digits, stored back to back: view the data buffer as a matrix.
    _, offsets_buffer, data_buffer = padded.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[padded.offset : padded.offset + len(padded) + 1]
    chars = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    matrix = chars.reshape(-1, width).astype(np.int64) - 48
    doubled = matrix[:, width - 2 :: -2] * 2
    total = matrix[:, width - 1 :: -2].sum(axis=1) + (doubled - 9 * (doubled > 9)).sum(axis=1)
    return total % 10 == 0

