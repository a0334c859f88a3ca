"""CSV output that a spreadsheet cannot turn into a formula (CSV injection).

Cells from source files end up in reports people open in Excel or Sheets; a cell starting with
=, +, -, @ (or a tab/CR) is prefixed with a single quote so it is shown, never evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


_PLAIN_NEGATIVE = re.compile(r"-\d+(\.\d+)?")


def neutralise_text(text: str) -> str:
    """One cell: prefixed with a quote when a spreadsheet would evaluate it (a negative number is data)."""
    if text.startswith(_TRIGGERS) and not _PLAIN_NEGATIVE.fullmatch(text):
        return "'" + text
    return text


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column].dtype) or pd.api.types.is_string_dtype(out[column].dtype):
            text = out[column].astype("string")
            risky = text.str.startswith(_TRIGGERS).fillna(False)
            # A plain negative number is data, not a formula.
            risky &= ~text.str.fullmatch(r"-\d+(\.\d+)?").fillna(False)
            if risky.any():
                out[column] = text.mask(risky, "'" + text)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as a neutralised UTF-8 CSV with a header, also when it has no rows."""
    neutralise(frame).to_csv(path, index=False, encoding="utf-8")
    return path
