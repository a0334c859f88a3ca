"""The tail of an event's ledger key (`source|event_name|tail`): a transaction id, or a row digest.

Why a codec: lead events may have no transaction id, so their key ends in a digest of what
identifies the conversion, written `row:<16 hex>` (ledgers since the first version hold such keys,
so that spelling stays). Transaction ids are opaque: one may well start with `row:` too. So an id
that does is written with a leading U+001F (unit separator): a character no transaction id can
hold (the transform rejects ids with control characters), so the three spellings cannot collide
and every id, whatever its prefix, reads back as itself. Only the rare ids starting with `row:`
change spelling: every other key stays byte-for-byte what earlier versions wrote.
"""

from __future__ import annotations

import pandas as pd

DIGEST_PREFIX = "row:"
ESCAPE = "\x1f"
#: Between a refund's transaction id and its level (the cumulative refunded amount in minor units):
#: U+001E, another character no transaction id holds. Shop exports write refunds cumulatively
#: (Shopify's `Refunded Amount` only grows), so each level is its own event: `#1001␞4800`, then
#: `#1001␞9600` the night the rest came back; the same level read again is the same key, a duplicate.
LEVEL = "\x1e"


def digest_tail(digest_hex: str) -> str:
    """The tail of an event without a transaction id."""
    return DIGEST_PREFIX + digest_hex


def tails_for(transaction_ids: pd.Series) -> pd.Series:
    """Key tails for transaction ids (vectorised); NA stays NA for the caller to fill with a digest."""
    ids = transaction_ids if isinstance(transaction_ids.dtype, pd.StringDtype) else transaction_ids.astype("string")
    looks_like_digest = ids.str.startswith(DIGEST_PREFIX).fillna(False).astype(bool)
    if not looks_like_digest.any():  # the usual case: one vectorised scan, ids unchanged (~40 ms per million)
        return ids
    return ids.where(~looks_like_digest, ESCAPE + ids)


def level_tails(tails: pd.Series, levels: pd.Series) -> pd.Series:
    """`tail␞level` where a level is given (refund rows of a cumulative export), else the tail."""
    return (tails + LEVEL + levels.astype("string")).fillna(tails)


def unescaped(tails: pd.Series) -> pd.Series:
    """The transaction ids of key tails: the escape of `tails_for` undone, a refund's level cut off
    (for a reader that tells digests by a flag)."""
    text = tails.astype("string")
    if text.str.contains(LEVEL, regex=False).fillna(False).any():
        text = text.str.split(LEVEL, n=1).str[0].astype("string")
    escaped = text.str.startswith(ESCAPE).fillna(False)
    return text.where(~escaped, text.str.slice(1)) if escaped.any() else text


def transaction_id_of(tail: str) -> str:
    """One key tail's transaction id (escape undone, level cut off)."""
    return tail.split(LEVEL, 1)[0].removeprefix(ESCAPE)
