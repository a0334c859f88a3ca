"""Amounts as plain decimal text ("1234.56"), vectorised.

Why text and not floats: the transform decides what is a valid value and rejects with a reason;
the extract only removes the formatting it knows about (currency symbols and codes, thousands
separators, decimal comma, accounting parentheses). Anything it cannot make sense of is passed
through unchanged so the transform can reject that row, naming it.
"""

from __future__ import annotations

import pandas as pd

_PLAIN = r"^[+-]?\d+(?:\.\d+)?$"


def _literal(char: str) -> str:
    """A character as an RE2 literal: punctuation escaped, anything else as is (RE2 refuses "\\x" for a letter)."""
    return "\\" + char if char.isascii() and not char.isalnum() and char != " " else char


def currency_marks(values: pd.Series) -> pd.Series:
    """The currency mark a cell of amounts carries (`$`, `US$`, `€`, …, or an ISO code like `USD`), NA
    when none: the transform checks it against the row's currency."""
    text = values.astype("string").str.strip()
    sign = text.str.extract(r"((?:US|CA|AU|NZ|HK|S)?\$|[€£¥₹])", expand=False)
    code = text.str.extract(r"^([A-Z]{3})\s*[\d(+-]", expand=False).fillna(
        text.str.extract(r"[\d)]\s*([A-Z]{3})$", expand=False))
    return sign.fillna(code).astype("string")


def normalise_amounts(values: pd.Series, decimal: str = ".", thousands: str | None = None) -> pd.Series:
    """Normalise a text column of amounts; NA stays NA, unparseable text stays as written."""
    text = values.astype("string")
    cleaned = text.str.replace(r"^(?:US|CA|AU|NZ|HK|S)\$", "$", regex=True)
    cleaned = cleaned.str.replace(r"[\s\u00a0\u202f$€£¥₹']", "", regex=True)
    # ISO codes before or after the number ("USD 12", "12 EUR"); no look-arounds, so Arrow's RE2 runs it.
    cleaned = cleaned.str.replace(r"^[A-Z]{3}([\d(+-])", r"\1", regex=True)
    cleaned = cleaned.str.replace(r"([\d)])[A-Z]{3}$", r"\1", regex=True)
    negative = cleaned.str.match(r"^\(.*\)$").fillna(False) | cleaned.str.endswith("-").fillna(False)
    cleaned = cleaned.str.replace(r"^\((.*)\)$", r"\1", regex=True).str.replace(r"^(.*\d)-$", r"\1", regex=True)
    sep = thousands if thousands is not None else ("." if decimal == "," else ",")
    dec = _literal(decimal)
    grp = _literal(sep) if sep else ""
    if grp:
        grouped = rf"^[+-]?\d{{1,3}}(?:{grp}\d{{3}})+(?:{dec}\d+)?$"
        is_grouped = cleaned.str.match(grouped).fillna(False)
        cleaned = cleaned.where(~is_grouped, cleaned.str.replace(sep, "", regex=False))
    if decimal == ",":
        # With a decimal comma a remaining "." is not grouping: such text is left for the transform.
        ok = cleaned.str.match(r"^[+-]?\d+(?:,\d+)?$").fillna(False)
        cleaned = cleaned.str.replace(",", ".", regex=False)
    else:
        ok = cleaned.str.match(_PLAIN).fillna(False)
    cleaned = cleaned.where(~negative, "-" + cleaned.str.lstrip("+-"))
    return text.where(~ok, cleaned).astype(object).where(text.notna(), pd.NA)
