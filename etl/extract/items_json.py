"""GA4 `items` arrays as JSON text, built column-wise (no per-row Python).

Each line item becomes a JSON object from the fields it has (a missing field is omitted, not sent
empty); numbers that normalised cleanly are written as JSON numbers, anything else as a JSON string
so the transform can reject it with the item named.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.extract.canonical import TEXT

_PLAIN_NUMBER = r"^-?\d+(?:\.\d+)?$"


def json_string(values: pd.Series) -> pd.Series:
    escaped = (
        values.astype(object)
        .where(values.notna(), None)
        .astype(TEXT)
        .str.replace("\\", "\\\\", regex=False)
        .str.replace('"', '\\"', regex=False)
    )
    escaped = escaped.astype(object).where(escaped.notna(), None)
    escaped = pd.Series(escaped, dtype=object).str.replace(r"[\x00-\x1f]", lambda m: f"\\u{ord(m.group()):04x}", regex=True)
    return ('"' + escaped.astype(TEXT) + '"').astype(TEXT)


def json_number(values: pd.Series) -> pd.Series:
    """A clean decimal as a JSON number (leading zeros trimmed), else as a JSON string."""
    text = values.astype(TEXT)
    is_number = text.str.match(_PLAIN_NUMBER).fillna(False)
    trimmed = text.str.replace(r"^(-?)0+(?=\d)", r"\1", regex=True)
    return trimmed.where(is_number, json_string(text)).astype(TEXT)


def item_objects(fields: dict[str, tuple[pd.Series, bool]]) -> pd.Series:
    """One JSON object per line; `fields` maps item key → (values, is_number)."""
    acc: pd.Series | None = None
    for key, (values, numeric) in fields.items():
        encoded = json_number(values) if numeric else json_string(values)
        fragment = (f'"{key}":' + encoded).astype(TEXT)
        if acc is None:
            acc = fragment
        else:
            joined = (acc + "," + fragment).astype(TEXT)
            acc = joined.fillna(acc).fillna(fragment)
    if acc is None:
        raise ValueError("item_objects needs at least one field")
    return ("{" + acc.fillna("") + "}").astype(TEXT)


def group_arrays(objects: pd.Series, groups: np.ndarray) -> pd.Series:
    """Join consecutive per-line objects into one JSON array per group (index: group id)."""
    joined = pd.Series(objects.to_numpy(dtype=object)).groupby(groups, sort=False).agg(",".join)
    return ("[" + joined + "]").astype(TEXT)


def abs_text(values: pd.Series) -> pd.Series:
    """Drop a leading minus: refund exports write negative amounts, GA4 wants positive refund values."""
    return values.astype(TEXT).str.replace(r"^-(?=\d)", "", regex=True)
