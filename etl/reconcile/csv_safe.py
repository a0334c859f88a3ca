"""CSV writing that spreadsheet programs cannot turn into formulas.

Why: reports are opened in Excel or Sheets, and an id such as `=HYPERLINK(...)` coming from a
source file would run as a formula. Every cell that starts with `=`, `+`, `-`, `@` (or a tab or
carriage return, which some programs skip before reading a formula) gets a leading `'`. This
applies to numbers too, so a negative difference is written `'-3`: the numbers are also in
reconciliation.json for programs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """All cells as text, with formula-looking ones prefixed by `'`; missing values stay empty."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        text = frame[column].astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        out[column] = text.where(~risky, "'" + text)
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as a neutralised UTF-8 CSV with a header, also when it has no rows."""
    neutralise(frame).to_csv(path, index=False, encoding="utf-8")
    return path
