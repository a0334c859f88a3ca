"""Building canonical frames: trimmed text, NA for empty, amounts normalised, columns in one order."""

from __future__ import annotations

import pandas as pd

from etl.config import SourceConfig
from etl.extract.fields import (
    CANONICAL_FIELDS,
    FILTER_PREFIX,
    INTERNAL_FIELDS,
    MONEY_FIELDS,
    MONEY_PARAMS,
    PARAM_PREFIX,
    PLACE_PREFIX,
    SKIP_REASON,
    ResolvedColumns,
)
from etl.extract.money import currency_marks, normalise_amounts
from etl.extract.raw import CELL_PROBLEM, RawChunk

TEXT = pd.StringDtype()


def as_text(values: pd.Series) -> pd.Series:
    """Trimmed text; an empty cell is NA (never the string "nan")."""
    text = values.astype(TEXT).str.strip()
    return text.mask(text.str.len() == 0)


def field_text(raw: RawChunk, cols: ResolvedColumns, field: str) -> pd.Series:
    return as_text(raw.column(cols.positions[field]))


def money(values: pd.Series, source: SourceConfig) -> pd.Series:
    return normalise_amounts(values, source.decimal, source.thousands).astype(TEXT)


def join_date_time(date: pd.Series, time: pd.Series) -> pd.Series:
    """'2026-11-20' + '14:03:11' → '2026-11-20 14:03:11'; a missing time leaves the date alone."""
    return (date + " " + time).fillna(date)


def mapped_fields(raw: RawChunk, cols: ResolvedColumns, source: SourceConfig) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Every canonical field and param the mapping names, as text; `time` folds into `timestamp`."""
    out: dict[str, pd.Series] = {}
    names: dict[str, str] = {}
    extra = sorted(f for f in cols.positions if f.startswith((PARAM_PREFIX, FILTER_PREFIX, PLACE_PREFIX)))
    for field in (*CANONICAL_FIELDS, *extra):
        if not cols.has(field):
            continue
        values = field_text(raw, cols, field)
        if field == "value":
            marks = currency_marks(values)
            if marks.notna().any():
                out["value_sign"] = marks
        if field in MONEY_FIELDS or field.removeprefix(PARAM_PREFIX) in MONEY_PARAMS and field.startswith(PARAM_PREFIX):
            values = money(values, source)
        out[field] = values
        names[field] = cols.headers[field]
    if "timestamp" in out and cols.has("time"):
        out["timestamp"] = join_date_time(out["timestamp"], field_text(raw, cols, "time"))
        names["timestamp"] = f"{cols.headers['timestamp']} + {cols.headers['time']}"
    if CELL_PROBLEM in raw.frame.columns:  # a cell the reader refused (over max_field_bytes): the row is rejected
        out[CELL_PROBLEM] = as_text(raw.frame[CELL_PROBLEM])
        names[CELL_PROBLEM] = CELL_PROBLEM
    return out, names


def assemble(rows, fields: dict[str, pd.Series]) -> pd.DataFrame:
    """The chunk frame: `row` first, then canonical fields, params, `skip_reason`, in a fixed order."""
    order = [f for f in CANONICAL_FIELDS if f in fields]
    order += sorted(f for f in fields if f.startswith(PARAM_PREFIX))
    order += sorted(f for f in fields if f.startswith(FILTER_PREFIX))
    order += [f for f in INTERNAL_FIELDS if f in fields]
    order += sorted(f for f in fields if f.startswith(PLACE_PREFIX))
    if SKIP_REASON in fields:
        order.append(SKIP_REASON)
    if CELL_PROBLEM in fields:
        order.append(CELL_PROBLEM)
    frame = pd.DataFrame({"row": pd.Series(rows, dtype="int64")})
    for name in order:
        frame[name] = pd.Series(fields[name]).astype(TEXT).reset_index(drop=True)
    return frame
