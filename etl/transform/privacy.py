"""Detect values that look like personal data, so that none of them reaches GA4.

Why: Google's terms forbid sending personal data (emails, phone numbers, IP addresses, card numbers, or
hashes of them) to Analytics, and a CRM export happily carries them in a "notes" or "reference" column.
Every free-text value that would leave goes through :func:`detect_personal_data`; the caller rejects the
row (or blanks the field) and reports only the detector's *name*, never the value.

Detectors, in the order they are tried (the first that fires names the value; names are stable):

* ``email`` — ``local@domain.tld``, also with the ``@`` URL-encoded (``%40``), as an HTML entity (``&#64;``,
  ``&#x40;``, ``&commat;``), full-width or small (``＠``, ``﹫``), with spaces around it, and with a quoted
  local part (``"jane doe"@example.com``); with a non-ASCII local part, domain or top-level domain
  (``jürgen@müller.de``, ``用户@例子.中国``); obfuscated with bracketed words (``jane(at)example(dot)com``,
  ``[at]``, ``{at}``, ``<at>``) or bare words (``jane dot doe at example dot com``: a bare ``at`` counts only
  when the domain holds at least one ``dot`` word, so "pick up at Example.com" is no address).
  The domain's dots may also be ``%2E``, ``&#46;``, ``&period;``, ``．`` or ``。``.
* ``payment_card`` — 13–19 digits laid out as cards are (plain runs: 15 digits starting 34/37, 16 starting
  2–6, 19 starting 3–6; grouped: 4-4-4-4[-1..3], 4-6-5, 4-6-4, and the 13-digit Visa layouts 4-4-4-1,
  4-3-3-3, 4-4-5, separated by spaces, dashes, dots, underscores or slashes) that pass the **Luhn** check.
  A *plain* 13-digit run (``4222222222222``) counts only after a card word (``card``, ``visa``, ``cc``,
  ``pan``, ``kreditkarte``, ``carte``, ``tarjeta``…) and only when it is not also a valid GTIN-13: an EAN
  barcode or a 13-digit Shopify order id (they start with 4 for orders of 2021–22) passes Luhn one time in
  ten, so without the word one order in eleven would be rejected. Tried before ``phone`` because a grouped
  card number also looks like a long phone number.
* ``iban`` — an IBAN, plain or in groups of four (``DE89 3704 0044 0532 0130 00``, any case), whose country
  code and length match the SWIFT registry and whose **mod-97** check holds: a random id of the right
  shape passes one time in 97, after matching a country's exact length.
* ``ipv4`` — four dotted octets 0–255, also zero-padded (``010.001.002.003``) or defanged (``10[.]0[.]0[.]1``),
  not glued to other digits, dots or letters.
* ``ipv6`` — eight colon-separated hex groups, or a ``::``-compressed address with at least two groups
  (``::1`` and ``fe80::`` are not personal and are not flagged).
* ``phone`` — ``+`` and 8–15 digits (separators: space, no-break space, ``-``, ``/``, parentheses);
  ``+1.202.555.0173``; a parenthesised area code ``(555) 123-4567`` / ``(202)555-0173`` / ``(030) 123 45 67``;
  ``555.123.4567``; ``202/555/0173``; a national number with a slash ``030/1234567``; ``0171.234.5678``;
  French dotted pairs ``06.12.34.56.78``; 10–15 digits in at least two groups separated by single spaces
  (also no-break) or dashes (``020 7946 0958``, ``0171 234 5678``, ``555-123-4567``, ``06 12 34 56 78``);
  9 digits starting with a trunk ``0`` in the space groups 3-3-3, 3-6, 4-5, 5-4, 3-2-2-2 (``030 123 456``); and, after a phone word (``tel``,
  ``phone``, ``mobile``, ``fax``, ``handy``…), any of these or a bare run of 7–15 digits (``Tel:01711234567``).
  Each optionally followed by an extension (``x12``, ``ext. 12``). A hyphenated ISBN-13
  (``978-3-16-148410-0``) or ISBN-10 (``3-16-148410-X``) is not a phone.
* ``us_ssn`` — a US social security number ``123-45-6789`` (or spaced) in free text, or nine plain digits
  right after an SSN word (``SSN 123456789``, ``social security no. 123456789``), without the never-issued
  areas 000, 666, 900–999, group 00 or serial 0000. Nine plain digits alone are an order number as often as
  not (Shopify, Magento and most ERPs issue them), so they need the word.
* ``uk_national_insurance`` — ``AB123456C`` / ``AB 12 34 56 C`` with HMRC's valid prefixes (not D, F, I, Q, U,
  V first; not D, F, I, O, Q, U, V second; never BG, GB, KN, NK, NT, TN, ZZ) and suffix A–D.
* ``encoded_personal_data`` — a base64/base64url (padded or not) or base32 token that decodes to text in
  which another detector fires (``amFuZUBleGFtcGxlLmNvbQ`` is ``jane@example.com``). Bounded: at most
  ``MAX_ENCODED_TOKENS`` tokens of at most ``MAX_ENCODED_CHARS`` characters per value, ``MAX_DECODE_DEPTH``
  levels of encoding. Only tokens whose first 6 bytes decode to printable ASCII are tried. Tried before
  ``hashed_identifier``: the padded base64 of a 16-character email has the shape of a base64 MD5.
* ``hashed_identifier`` — a standalone hex run of exactly 32, 40, 64, 96 or 128 characters (MD5, SHA-1,
  SHA-256, SHA-384, SHA-512, as ad platforms' "hashed email" fields hold), also written ``0x…`` or
  ``sha256:…``, or split into equal groups of 2, 4, 8, 16 or 32 by dashes, colons or spaces
  (``a1b2c3d4-e5f6…``, ``ab:cd:…``; the UUID layout 8-4-4-4-12 is uneven and stays an id); the base64 or
  base64url of a SHA-256 (43 characters, padded or not) or SHA-512 digest (86, padded or not); and padded
  base64 of MD5 (24) and SHA-1 (28).

The false-positive trade-off, since transaction ids, cookies, amounts and dates pass through this too:

* A digit run only counts when it stands alone: not preceded by a letter, digit, ``.``, ``-``, ``/``,
  ``:``, ``#``, ``$``, ``@``, ``%`` or ``+``, nor by a space that follows a digit (so ``T-2026-000123``,
  ``#1001``, ``GA1.1.1162820436.1749482504`` and the fields of GS1/GS2 cookies never qualify), and not
  followed by a letter, a digit, ``:`` (so the date of ``2026-11-20 14:03`` is no phone) or a separator
  and another digit (so a run is judged whole, never by a slice of it). A phone word lifts the first rule
  (``Tel:030 1234567``).
* A plain run of digits without separators, ``+`` or a phone word is **not** a phone: it is
  indistinguishable from a unix timestamp, a Shopify order id or an ERP number. A phone stored as bare digits
  (``07700900123``) is therefore missed; one written ``+447700900123``, ``07700 900123`` or ``tel 07700900123``
  is caught. The same holds for plain 9-digit SSNs and plain 13-digit cards (see above).
* Decimal amounts (``1234.56``), ISO dates, GA client ids (``123456789.1700000000``: a dot is a phone
  separator only in the US ``555.123.4567`` layout) and currency codes do not match. A number written with
  space thousands separators (``1 234 567 890``) or a signed integer of 8+ digits (``+123456789``) *does*
  look like a phone and is flagged: amounts should go through ``value``, which is parsed as a number and
  never scanned.
* Card numbers must be laid out like real cards; an arbitrary 13–19 digit id passing Luhn by chance (one in
  ten) is not flagged unless it has a card's prefix and length. Only the first card-shaped run of a value is
  checked against Luhn (then the next, up to ``CHECK_ATTEMPTS``), which keeps the check vectorised; IBANs
  likewise.
* A dashless UUID is 32 hex characters and is flagged as ``hashed_identifier``: it cannot be told apart
  from an MD5, and being wrong the other way would leak a hashed email.
* A dotted quad such as a four-part version number ``1.2.3.4`` is flagged as ``ipv4``.
* Obfuscated emails: the words must be ``at``/``dot`` as words (``AT-DOT-2024`` and ``ATDOT`` are codes).

Speed: the detectors are joined into two RE2 patterns matched over the whole column (two DFA passes, no
captures, linear in the input: see ``_PREFILTERS`` for why two); only the rows they flag — rare in real data —
are matched detector by detector, and only those are decoded or checked digit by digit (vectorised over
digit matrices).
"""

from __future__ import annotations

import base64
import binascii
import re
from itertools import islice

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
# Spaces inside an obfuscated address (``jane [at] example``).
_SP = r"[ \t\x{00A0}\x{202F}]"


def _grouped_digits(low: int, high: int) -> str:
    """``low``–``high`` digits in two or more groups split by single spaces (also no-break) or dashes.

    RE2 cannot count digits across separators, so there is one alternative per length of the first group,
    each with an exact count for the rest: a plain digit run never matches, a grouped one of the right
    length always does.
    """
    alternatives = [
        rf"\d{{{first}}}{_SEP}\d(?:{_SEP}?\d){{{max(low - first - 1, 0)},{high - first - 1}}}"
        for first in range(1, 9)
        if high - first - 1 >= 0
    ]
    return "(?:" + "|".join(alternatives) + ")"


# --- email ---------------------------------------------------------------------------------------------------
# Local part and domain may be non-ASCII (``jürgen@müller.de``, internationalised addresses): any character
# beyond ASCII counts as a letter (a code-point range compiles far faster than RE2's Unicode classes, and this
# pattern is compiled once per scanned column per chunk).
_INTL = r"\x{80}-\x{10FFFF}"
_AT_SYMBOL = r"(?:@|%40|\x{FF20}|\x{FE6B}|&#0*64;|&#[xX]0*40;|&commat;)"
_AT_BRACKETED = r"[(\[{<]" + _SP + r"{0,2}(?i:at)" + _SP + r"{0,2}[)\]}>]"
_DOT_SYMBOL = r"(?:\.|%2[eE]|&#0*46;|&#[xX]0*2[eE];|&period;|\x{FF0E}|\x{3002})"
_DOT_WORD = (r"(?:" + _SP + r"{0,2}[(\[{<]" + _SP + r"{0,2}(?i:dot)" + _SP + r"{0,2}[)\]}>]" + _SP + r"{0,2}"
             + r"|" + _SP + r"{1,3}(?i:dot)" + _SP + r"{1,3})")
_DOT_ANY = r"(?:" + _DOT_SYMBOL + "|" + _DOT_WORD + ")"
_LOCAL_CHARS = r"[A-Za-z0-9._%+\-" + _INTL + r"]+"
_LOCAL = r"(?:" + _LOCAL_CHARS + r'|"[^"\r\n]{1,64}")'
_LABEL = r"[A-Za-z0-9\-" + _INTL + r"]+"
_TLD = r"[A-Za-z" + _INTL + r"]{2,}"
# After bare words ("at", "dot") the top-level domain must be a real one and end the word.
_WORD_TLD = (r"(?i:com|net|org|edu|gov|mil|int|info|biz|name|pro|mobi|io|app|dev|xyz|online|site|shop|store|email"
             r"|mail|eu|asia|[a-z]{2})(?:$|[^A-Za-z0-9" + _INTL + "])")
_EMAIL = (
    r"(?:" + _LOCAL + _SP + r"{0,3}(?:" + _AT_SYMBOL + "|" + _AT_BRACKETED + ")" + _SP + r"{0,3}"
    + _LABEL + r"(?:" + _DOT_ANY + _LABEL + r")*" + _DOT_ANY + _TLD
    + r"|" + _LOCAL_CHARS + _SP + r"{1,3}(?i:at)" + _SP + r"{1,3}" + _LABEL + r"(?:" + _DOT_ANY + _LABEL + r")*"
    + _DOT_WORD + _WORD_TLD + r")"
)

# --- payment cards -------------------------------------------------------------------------------------------
_CARD_SEP = r"[ \-._/\x{00A0}\x{2007}\x{202F}]"
_S = _CARD_SEP
_CARD_LAYOUTS = (
    r"3[47]\d{13}|[2-6]\d{15}|[3-6]\d{18}"
    r"|\d{4}" + _S + r"\d{4}" + _S + r"\d{4}" + _S + r"\d{4}(?:" + _S + r"?\d{1,3})?"
    r"|\d{4}" + _S + r"\d{6}" + _S + r"\d{4,5}"
    # 13-digit Visa layouts
    r"|4\d{3}" + _S + r"\d{4}" + _S + r"\d{4}" + _S + r"\d|4\d{3}" + _S + r"\d{3}" + _S + r"\d{3}" + _S + r"\d{3}"
    r"|4\d{3}" + _S + r"\d{4}" + _S + r"\d{5}"
)
_CARD_WORD = (r"(?:^|[^A-Za-z])(?i:card|visa|cc|pan|credit|debit|kk|karte|kreditkarte|carte|tarjeta|cart[aã]o"
              r"|amex|mastercard|mc)(?:[ .:#=\-]{1,3}|[ ]?(?i:no|nr|number|num)[ .:#]{0,2})")
# Extraction: the card word (when present) in its own group, so a plain 13-digit run can require it.
_CARD = (r"(?:(?P<word>" + _CARD_WORD + r")|" + _DIGITS_START + r")(?P<card>4\d{12}|" + _CARD_LAYOUTS + r")"
         + _DIGITS_END)
# What the one-pass filter looks for (no plain 13-digit run without the word: every 13-digit id would be a suspect).
_CARD_ANY = r"(?:" + _DIGITS_START + r"(?:" + _CARD_LAYOUTS + r")|" + _CARD_WORD + r"4\d{12})" + _DIGITS_END

# --- IBAN ----------------------------------------------------------------------------------------------------
# Lengths from the SWIFT IBAN registry (release 99, 2024): country code -> total length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN_WIDTH = 34
_IBAN = (
    r"(?:^|[^A-Za-z0-9])(?P<iban>[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}"
    r"|(?:[ \-][A-Za-z0-9]{4}){2,7}[ \-][A-Za-z0-9]{1,4}|(?:[ \-][A-Za-z0-9]{4}){3,8}))(?:$|[^A-Za-z0-9])"
)

# --- IP addresses --------------------------------------------------------------------------------------------
_OCTET = r"(?:25[0-5]|2[0-4]\d|[01]?\d?\d)"  # also zero-padded: 010, 001
_IP_DOT = r"(?:\.|\[\.\]|\(\.\))"  # also defanged: 10[.]0[.]0[.]1
_IPV4 = r"(?:^|[^\w.])" + _OCTET + r"(?:" + _IP_DOT + _OCTET + r"){3}(?:$|[^\w.]|\.(?:$|[^\w]))"

_HEX_GROUP = r"[0-9A-Fa-f]{1,4}"
_IPV6_BODY = (
    r"(?:" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){7}"
    r"|" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){1,5}::(?:" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){0,5})?"
    r"|" + _HEX_GROUP + r"::" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){0,5}"
    r"|::" + _HEX_GROUP + r"(?::" + _HEX_GROUP + r"){1,6})"
)
_IPV6 = r"(?:^|[^\w:.])" + _IPV6_BODY + r"(?:$|[^\w:])"

# --- phone ---------------------------------------------------------------------------------------------------
_NATIONAL = (
    # 202.555.0173, 202/555/0173, 0171.234.5678, 06.12.34.56.78, 030/1234567, (030) 123 45 67,
    # 10–15 digits in space/dash groups, 9 digits after a trunk 0 in space groups
    r"(?:\d{3}\.\d{3}\.\d{4}|\d{3}/\d{3}/\d{4}|0\d{2,4}\.\d{3,4}\.\d{3,5}|0\d(?:\.\d{2}){4}"
    r"|0\d{1,5}" + _SP + r"?/" + _SP + r"?\d(?:[ \-]?\d){4,10}"
    r"|\(0\d{1,5}\)[ \-\x{00A0}]?\d(?:[ \-\x{00A0}]?\d){4,10}"
    r"|" + _grouped_digits(10, 15)
    # nine digits after a trunk 0: 030 123 456, 030 123456, 0301 23456, 03322 1234, 030 12 34 56 (never the
    # 3-2-4 layout of a spaced SSN)
    + r"|0\d{2} \d{3} \d{3}|0\d{2} \d{6}|0\d{3} \d{5}|0\d{4} \d{4}|0\d{2}(?: \d{2}){3})"
)
# A phone word, then at most a dot and three of space, ":", "=", "#" (not "-": ``TEL-2024-001234`` is a code).
_PHONE_WORD = (r"(?:^|[^A-Za-z])(?i:tel|telefon|telephone|t[ée]l[ée]phone|phone|fon|mobile?|mob|cell|handy|fax"
               r"|whatsapp)\.?[ :=#]{0,3}")
_PHONE = (
    # +CC then 7–14 more digits, grouped by spaces, dashes, slashes, parentheses; or +CC.NNN.NNN.NNNN (dotted)
    r"(?:(?:^|[^\w+])\+\(?\d(?:[ \-/()\x{00A0}\x{2007}\x{202F}]{0,2}\d){7,14}" + _EXT + _DIGITS_END
    + r"|(?:^|[^\w+])\+\d{1,3}(?:\.\d{1,4}){2,5}" + _EXT + _DIGITS_END
    # (202) 555-0173, (202)555-0173x12
    + r"|\(\d{3}\)[ \-.\x{00A0}]?\d{3}[ \-.\x{00A0}]?\d{4}" + _EXT + _DIGITS_END
    + r"|" + _DIGITS_START + _NATIONAL + _EXT + _DIGITS_END
    # after a phone word: the national forms glued to it, or a bare run of digits
    + r"|" + _PHONE_WORD + r"(?:" + _NATIONAL + r"|\d{7,15})" + _EXT + _DIGITS_END + r")"
)

# A hyphenated ISBN-13 (prefix 978/979, five groups, the last a single check digit) or ISBN-10 (four groups
# of 9 digits and a check digit or X, ``3-16-148410-X``): not a phone.
_ISBN10_BODY = "|".join(rf"\d{{{a}}}-\d{{{b}}}-\d{{{9 - a - b}}}" for a in range(1, 6) for b in range(1, 8) if 1 <= 9 - a - b <= 7)
_ISBN = (r"(?:^|[^\w\-+])(?:97[89]-\d{1,5}-\d{1,7}-\d{1,7}|" + _ISBN10_BODY + r")-[\dX](?:$|[^\w\-])")

# --- national ids ----------------------------------------------------------------------------------------------
# US social security numbers: AAA-GG-SSSS (or spaced), without the never-issued areas 000, 666 and 900–999,
# group 00 or serial 0000. Nine digits in three groups: too short for the phone detector. Plain, only after
# an SSN word.
_SSN_AREA = r"(?:00[1-9]|0[1-9]\d|[1-578]\d\d|6[0-57-9]\d|66[0-57-9])"
_SSN_GROUP = r"(?:0[1-9]|[1-9]\d)"
_SSN_SERIAL = r"(?:000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
_SSN_WORD = (r"(?:^|[^A-Za-z])(?i:ssn|ss#|ss[ \-]?no|soc(?:ial)?[ .\-]?sec(?:urity)?(?:[ .\-]?(?:no|nr|num(?:ber)?|#))?"
             r"|tin|itin|taxpayer[ .\-]?id)\.?[ :=#\-]{0,3}")
_SSN = (
    r"(?:" + _DIGITS_START
    + r"(?:" + _SSN_AREA + "-" + _SSN_GROUP + "-" + _SSN_SERIAL
    + "|" + _SSN_AREA + r"[ \x{00A0}]" + _SSN_GROUP + r"[ \x{00A0}]" + _SSN_SERIAL + ")"
    + "|" + _SSN_WORD + _SSN_AREA + _SSN_GROUP + _SSN_SERIAL + r")" + _DIGITS_END
)


def _nino_prefixes() -> str:
    """HMRC's valid National Insurance prefixes as one alternation, one branch per first letter."""
    first = "ABCEGHJKLMNOPRSTWXYZ"
    second = "ABCEGHJKLMNPRSTWXYZ"
    never = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
    branches = []
    for a in first:
        allowed = "".join(b for b in second if a + b not in never)
        branches.append(f"{a}[{allowed}{allowed.lower()}]|{a.lower()}[{allowed}{allowed.lower()}]")
    return "(?:" + "|".join(branches) + ")"


_NINO = (r"(?:^|[^A-Za-z0-9])" + _nino_prefixes() + r"(?:[ ]?\d{2}){3}[ ]?[A-Da-d]"
         r"(?:$|[^A-Za-z0-9])")

# --- digests -----------------------------------------------------------------------------------------------------
# As ad platforms' "hashed email" fields hold them: hex (MD5, SHA-1, SHA-256, SHA-384, SHA-512), optionally
# written ``0x…`` or ``sha256:…`` or in equal groups; base64/base64url of SHA-256 or SHA-512 with or without
# padding; base64 of MD5 and SHA-1 only when padded (unpadded, 22 or 27 characters are too id-like).
_HEX_DIGIT = "[0-9A-Fa-f]"
_DIGEST_HEX = (32, 40, 64, 96, 128)
_HEX_SPLIT = "|".join(
    f"{_HEX_DIGIT}{{{width}}}(?:[\\-: ]{_HEX_DIGIT}{{{width}}}){{{total // width - 1}}}"
    for width in (2, 4, 8, 16, 32) for total in _DIGEST_HEX if total % width == 0 and total // width >= 2
)
_HASH_PREFIX = r"(?:0[xX]|(?i:sha-?(?:1|224|256|384|512)|md5)[:=\-$])?"
_HEX_RUNS = "|".join(f"{_HEX_DIGIT}{{{n}}}" for n in reversed(_DIGEST_HEX))
_HASH_HEX = (
    r"(?:^|[^0-9A-Za-z])" + _HASH_PREFIX + r"(?:" + _HEX_RUNS + r")(?:$|[^0-9A-Za-z])"
    + r"|(?:^|[^0-9A-Za-z\-:])(?:" + _HEX_SPLIT + r")(?:$|[^0-9A-Za-z\-:]|[\-:](?:$|[^0-9A-Fa-f]))"
)
_B64 = r"[A-Za-z0-9+/_\-]"
_B64_START = r"(?:^|[^A-Za-z0-9+/_\-]|(?i:sha-?(?:256|512)|md5|sha-?1)[:=\-$])"
_B64_END = r"(?:$|[^A-Za-z0-9+/=_\-])"
_HASH_B64 = (
    _B64_START + r"(?:" + _B64 + r"{42}[AEIMQUYcgkosw048]=?"
    + r"|" + _B64 + r"{85}[AQgw](?:==)?"
    + r"|" + _B64 + r"{26}[AEIMQUYcgkosw048]="
    + r"|" + _B64 + r"{21}[AQgw]==)" + _B64_END
)
_HASH = r"(?:" + _HASH_HEX + r"|" + _HASH_B64 + r")"

# --- encoded text ----------------------------------------------------------------------------------------------
_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _printable_group(alphabet: str, bits: int, group_bytes: int, aliases: dict[str, str] | None = None,
                     fold_case: bool = False) -> str:
    """The RE2 character classes of one encoded group whose bytes are all printable ASCII (0x20–0x7E).

    Each symbol of a base64 (6 bits) or base32 (5 bits) group spans at most two bytes; listing the symbols
    any two printable bytes can produce gives the group's shape, so the one-pass filter can ask "does a token
    start with encoded text?" without decoding anything (a random id passes 2 base64 groups about 1 time in
    200).
    """
    classes = []
    for position in range(group_bytes * 8 // bits):
        start = position * bits
        offset = start % 8
        symbols: set[str] = set()
        for high in range(0x20, 0x7F):
            for low in range(0x20, 0x7F) if offset + bits > 8 else (0,):
                symbols.add(alphabet[((high << 8 | low) >> (16 - offset - bits)) & ((1 << bits) - 1)])
        for symbol, alias in (aliases or {}).items():
            if symbol in symbols:
                symbols.add(alias)
        if fold_case:
            symbols |= {s.lower() for s in symbols}
        classes.append("[" + "".join(re.escape(s) if s in "-+/" else s for s in sorted(symbols)) + "]")
    return "".join(classes)


_B64_TEXT = _printable_group(_BASE64_ALPHABET, 6, 3, aliases={"+": "-", "/": "_"})
_B32_TEXT = _printable_group(_BASE32_ALPHABET, 5, 5, fold_case=True)
_ENCODED = (r"(?:(?:^|[^A-Za-z0-9])" + _B64_TEXT + _B64_TEXT
            + r"|(?:^|[^A-Za-z2-7])" + _B32_TEXT + r"[A-Za-z2-7]{2})")
#: Bounds of the decode-and-rescan step, per value.
MAX_ENCODED_TOKENS = 8
MAX_ENCODED_CHARS = 4096
MAX_DECODE_DEPTH = 2
# No nested quantifiers: linear in Python's engine too.
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/_\-]{8,}")
_BASE32_TOKEN = re.compile(r"[A-Za-z2-7]{10,}")

#: Detector names in the order they are tried, with their RE2 patterns (search semantics: anywhere).
DETECTORS: dict[str, str] = {
    "email": _EMAIL,
    "payment_card": _CARD_ANY,
    "iban": _IBAN,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "phone": _PHONE,
    "us_ssn": _SSN,
    "uk_national_insurance": _NINO,
    "encoded_personal_data": _ENCODED,  # before digests: base64 of a 16-byte email is MD5-shaped
    "hashed_identifier": _HASH,
}

# The one-pass filter. It only has to be a superset of the detectors (the rows it flags are then matched
# detector by detector), so long counted runs are cut to their shortest form: RE2's DFA tracks every counter
# at once, and the exact union of all detectors outgrew its memory and fell back to the NFA (100x slower,
# measured on the false-positive corpus). Two passes: base64 digests and encoded text (tokens counted up to
# 86 characters) apart from the rest.
_IBAN_ANY = r"(?:^|[^A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11}|[ \-][A-Za-z0-9]{4}[ \-][A-Za-z0-9]{4}[ \-])"
_HASH_HEX_ANY = (
    r"(?:^|[^0-9A-Za-z])" + _HASH_PREFIX + _HEX_DIGIT + "{32}"
    + r"|(?:^|[^0-9A-Za-z\-:])(?:"
    + "|".join(f"{_HEX_DIGIT}{{{w}}}(?:[\\-: ]{_HEX_DIGIT}{{{w}}}){{{32 // w - 1}}}" for w in (2, 4, 8, 16)) + ")"
)
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def _union(patterns: list[str]) -> str:
    return "|".join("(?:" + _NAMED_GROUP.sub("(?:", pattern) + ")" for pattern in patterns)


_PREFILTERS = (
    _union([_EMAIL, _CARD_ANY, _IBAN_ANY, _IPV4, _IPV6, _PHONE, _SSN, _NINO, _HASH_HEX_ANY]),
    _union([_HASH_B64, _ENCODED]),
)
#: How many card- or IBAN-shaped runs of one value are checked digit by digit before giving up on it.
CHECK_ATTEMPTS = 8
LUHN_ATTEMPTS = CHECK_ATTEMPTS  # the name issue 14's tests know


def detect_personal_data(values: pd.Series) -> pd.Series:
    """For each value the name of the first detector that fires (see ``DETECTORS``), NA when none does."""
    found = _detect(arrow_strings(values), depth=0)
    return pd.Series(found, index=values.index, name=values.name, dtype="str")


def scan_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One column per scanned column of ``frame`` holding the detector name or NA.

    Columns the frame does not have are skipped (a source that does not map a field has nothing in it).
    When nothing fires — the usual case — the cost is one regex pass per column.
    """
    scanned = [column for column in columns if column in frame.columns]
    return pd.DataFrame({column: detect_personal_data(frame[column]) for column in scanned}, index=frame.index)


def _detect(text: pa.Array, depth: int) -> np.ndarray:
    found = np.full(len(text), None, dtype=object)
    flagged = bool_numpy(pc.match_substring_regex(text, _PREFILTERS[0]))
    flagged |= bool_numpy(pc.match_substring_regex(text, _PREFILTERS[1]))
    suspects = np.flatnonzero(flagged)
    if not len(suspects):
        return found
    subset = text.take(pa.array(suspects))
    open_rows = np.ones(len(suspects), dtype=bool)
    for name, pattern in DETECTORS.items():
        if not open_rows.any():
            break
        if name == "payment_card":
            fires = _checked_runs(subset, _CARD, _card_valid)
        elif name == "iban":
            fires = _checked_runs(subset, _IBAN, _iban_valid)
        elif name == "phone":
            fires = _phone_fires(subset)
        elif name == "encoded_personal_data":
            fires = _encoded_fires(subset, open_rows, depth)
        else:
            fires = bool_numpy(pc.match_substring_regex(subset, pattern))
        fires &= open_rows
        found[suspects[fires]] = name
        open_rows &= ~fires
    return found


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


def _checked_runs(text: pa.Array, pattern: str, valid) -> np.ndarray:
    """Rows holding a run of ``pattern`` that ``valid`` accepts; later runs are tried when the first fails."""
    fires = np.zeros(len(text), dtype=bool)
    rows = np.arange(len(text))
    for _ in range(CHECK_ATTEMPTS):
        runs = pc.extract_regex(text, pattern)
        shaped = bool_numpy(pc.is_valid(runs))
        if not shaped.any():
            break
        passed = valid(runs.filter(pa.array(shaped)))
        fires[rows[shaped][passed]] = True
        retry = np.flatnonzero(shaped)[~passed]
        if not len(retry):
            break
        # Drop the failed run (and the boundary characters it consumed, replaced by a space) and look again.
        text = pc.replace_substring_regex(text.take(pa.array(retry)), pattern, " ", max_replacements=1)
        rows = rows[retry]
    return fires


def _card_valid(runs: pa.StructArray) -> np.ndarray:
    """Luhn holds; a plain 13-digit run also needs a card word before it and must not be a valid GTIN-13."""
    card = pc.struct_field(runs, "card")
    digits = pc.replace_substring_regex(card, r"\D", "")
    matrix = _digit_matrix(digits, 19)
    passed = _luhn(matrix)
    plain13 = bool_numpy(pc.equal(pc.utf8_length(card), 13))
    if plain13.any():
        worded = bool_numpy(pc.greater(pc.utf8_length(pc.struct_field(runs, "word")), 0))
        passed &= ~plain13 | (worded & ~_gtin_valid(matrix))
    return passed


def _digit_matrix(digits: pa.Array, width: int) -> np.ndarray:
    """Digit strings (at most ``width``) as a matrix of ints, left-padded with zeros."""
    if len(digits) == 0:
        return np.zeros((0, width), dtype=np.int64)
    padded = pc.utf8_lpad(digits, width, "0").cast(pa.large_string())
    # Every value is now exactly `width` ASCII characters, stored back to back: view the data buffer as a matrix.
    _, offsets_buffer, data_buffer = padded.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[padded.offset : padded.offset + len(padded) + 1]
    chars = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return chars.reshape(-1, width).astype(np.int64) - 48


def _luhn(matrix: np.ndarray) -> np.ndarray:
    """Luhn check, vectorised over a right-aligned digit matrix (leading zeros do not change a Luhn sum)."""
    width = matrix.shape[1]
    doubled = matrix[:, width - 2 :: -2] * 2
    total = matrix[:, width - 1 :: -2].sum(axis=1) + (doubled - 9 * (doubled > 9)).sum(axis=1)
    return total % 10 == 0


def _gtin_valid(matrix: np.ndarray) -> np.ndarray:
    """GS1 check digit (weights 1, 3, 1, 3… from the right), vectorised like ``_luhn``."""
    width = matrix.shape[1]
    total = matrix[:, width - 1 :: -2].sum(axis=1) + 3 * matrix[:, width - 2 :: -2].sum(axis=1)
    return total % 10 == 0


def _iban_valid(runs: pa.StructArray) -> np.ndarray:
    """The registry's length for the country code, and ISO 13616's mod-97 check (remainder 1)."""
    iban = pc.utf8_upper(pc.replace_substring_regex(pc.struct_field(runs, "iban"), r"[^A-Za-z0-9]", ""))
    country = pc.utf8_slice_codeunits(iban, 0, 2)
    expected = pc.take(pa.array(list(IBAN_LENGTHS.values()), pa.int64()),
                       pc.index_in(country, value_set=pa.array(list(IBAN_LENGTHS))))
    length_ok = bool_numpy(pc.equal(pc.utf8_length(iban).cast(pa.int64()), expected))
    if not length_ok.any():
        return length_ok
    iban = iban.filter(pa.array(length_ok))  # now at most 33 characters each
    # Move the first four characters to the end; letters count A=10 … Z=35: reduce mod 97 column by column.
    rearranged = pc.binary_join_element_wise(pc.utf8_slice_codeunits(iban, 4), pc.utf8_slice_codeunits(iban, 0, 4), "")
    padded = pc.utf8_lpad(rearranged.cast(pa.string()), _IBAN_WIDTH, "0").cast(pa.large_string())
    _, offsets_buffer, data_buffer = padded.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[padded.offset : padded.offset + len(padded) + 1]
    chars = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, _IBAN_WIDTH)
    remainder = np.zeros(len(chars), dtype=np.int64)
    for column in chars.T.astype(np.int64):
        letter = column >= 65
        remainder = np.where(letter, (remainder * 100 + column - 55) % 97, (remainder * 10 + column - 48) % 97)
    length_ok[length_ok] = remainder == 1
    return length_ok


def _encoded_fires(text: pa.Array, open_rows: np.ndarray, depth: int) -> np.ndarray:
    """Rows holding a base64/base32 token that decodes to text in which another detector fires.

    Only the rows the one-pass filter saw an encoded-text token in are decoded (in Python, bounded by
    ``MAX_ENCODED_TOKENS`` × ``MAX_ENCODED_CHARS``); the decoded texts are scanned together, one level deeper.
    """
    fires = np.zeros(len(text), dtype=bool)
    if depth >= MAX_DECODE_DEPTH:
        return fires
    candidates = np.flatnonzero(open_rows & bool_numpy(pc.match_substring_regex(text, _ENCODED)))
    owners: list[int] = []
    decoded: list[str] = []
    for row, value in zip(candidates, text.take(pa.array(candidates, pa.int64())).to_pylist(), strict=True):
        for plain in _decodings(value):
            owners.append(int(row))
            decoded.append(plain)
    if decoded:
        inner = _detect(pa.array(decoded, pa.string()), depth + 1)
        hit = np.array([name is not None for name in inner], dtype=bool)
        fires[np.asarray(owners)[hit]] = True
    return fires


def _decodings(value: str) -> list[str]:
    """The printable texts the value's first base64/base32 tokens decode to."""
    out: list[str] = []
    for tokens, decode in ((_BASE64_TOKEN, _from_base64), (_BASE32_TOKEN, _from_base32)):
        for match in islice(tokens.finditer(value), MAX_ENCODED_TOKENS):
            raw = decode(match.group()[:MAX_ENCODED_CHARS])
            if raw is None:
                continue
            try:
                plain = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if plain.translate(_WHITESPACE).isprintable():
                out.append(plain)
    return out


_WHITESPACE = str.maketrans("\t\n\r", "   ")


def _from_base64(token: str) -> bytes | None:
    token = token.replace("-", "+").replace("_", "/")
    token = token[: len(token) - len(token) % 4] if len(token) % 4 == 1 else token
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _from_base32(token: str) -> bytes | None:
    token = token.upper()
    if len(token) % 8 in (1, 3, 6):  # not a whole number of bytes: drop the dangling symbol
        token = token[:-1]
    try:
        return base64.b32decode(token + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None


# --- a place, never a person: what a location column must not hold (issue 26) ---------------------------------
# A store's city, region and country are data about a place; a customer's street address or postcode is
# personal data. These detectors run on location columns only (never on ids or amounts, where a run of
# digits is an order number): `postcode` — UK (``SW1A 1AA``, ``M1 1AE``), Canadian (``K1A 0B1``), Dutch
# (``1012 AB``) shapes and any standalone run of 3–6 digits with an optional ``-NNNN`` (US ZIP and ZIP+4,
# German, French, Polish ``00-950``, Japanese ``100-0001``, Indian PINs); `street_address` — a house number
# beside a street word (``12 Baker Street``, ``221B Baker St``, ``Hauptstraße 5``, ``5 rue de Rivoli``,
# ``Via Roma 10``) or a continental street word leading the value (``Rue de Rivoli``, ``Calle Mayor``).
_STREET_WORDS = (r"street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|place|pl|court|ct|terrace|"
                 r"close|crescent|square|sq|highway|hwy|parkway|pkwy|row|mews|gardens|grove|walk")
_STREET_SUFFIXES = r"stra(?:ß|ss)e|str\.|weg|gasse|allee|platz|damm|ufer|straat|laan|gracht|plein|vej|gatan|gata|katu"
_STREET_LEADS = r"rue|via|viale|calle|avenida|rua|ulica|ul\.|chemin|strada|carrer|ruta"
PLACE_DETECTORS: dict[str, str] = {
    "postcode": (
        r"(?i)(?:^|[^A-Za-z0-9])(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{4}\s?[A-Z]{2})(?:$|[^A-Za-z0-9])"
        r"|(?:^|\D)\d{3,6}(?:-\d{3,4})?(?:$|\D)"
    ),
    "street_address": (
        r"(?i)(?:^|\W)\d{1,5}[A-Z]?,?\s+(?:[^\W\d_][\w'.-]*\s+){0,4}(?:" + _STREET_WORDS + r")\.?(?:$|\W)"
        r"|(?i)[^\W\d_](?:" + _STREET_SUFFIXES + r")\s*\d{1,5}"
        r"|(?i)(?:^|\W)(?:" + _STREET_SUFFIXES + r")\s*\d{1,5}"
        r"|(?i)(?:^|\s)(?:" + _STREET_LEADS + r")\s+[^\W\d_]"
        r"|(?i)(?:^|\W)\d{1,5}[A-Z]?,?\s+(?:" + _STREET_LEADS + r")\s"
    ),
}


def detect_place_data(values: pd.Series, *, postcodes: bool = True) -> pd.Series:
    """Like `detect_personal_data`, plus `postcode` and `street_address`: for a location column's values.

    `postcodes=False` for UN M49 columns, whose valid codes are three digits (``154``)."""
    found = detect_personal_data(values)
    text = arrow_strings(values)
    for name, pattern in PLACE_DETECTORS.items():
        if name == "postcode" and not postcodes:
            continue
        open_rows = found.isna().to_numpy(dtype=bool)
        if not open_rows.any():
            break
        fires = bool_numpy(pc.match_substring_regex(text, pattern)) & open_rows
        if fires.any():
            found = found.mask(fires, name)
    return found
