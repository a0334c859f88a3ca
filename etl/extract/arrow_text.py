"""Typed Arrow columns (Parquet, BigQuery) as the text a CSV export would hold, so every kind and the
transform see one raw shape.

Why text: the transform owns the rules that turn a vendor's cell into a value (zones, money,
consent words) and names the column when a cell breaks one; a typed source goes through the same
rules. The text is chosen so those rules read it exactly:

- a timestamp with a zone (BigQuery TIMESTAMP) keeps its offset (`…T14:03:11.123456+0000`), so the
  instant is fixed and the source's `timezone` does not move it; a naive one (DATETIME) is local
  wall-clock time, like a CSV cell;
- a decimal (NUMERIC) loses the scale's trailing zeros (`12.500000000` → `12.5`);
- a nested value (a REPEATED RECORD of items, a STRUCT, a JSON column) becomes JSON text — the shape
  `items` expects (`[{"item_id": …, "price": …, "quantity": …}]`);
- null is "", like an empty CSV cell.
"""

from __future__ import annotations

import datetime as dt
import decimal

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def column_text(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The column as non-null strings ("" for null)."""
    return pc.fill_null(_text(array), "")


def _text(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    kind = array.type
    if isinstance(kind, pa.ExtensionType):
        return _text(array.storage if isinstance(array, pa.Array) else pa.chunked_array([c.storage for c in array.chunks]))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    if pa.types.is_timestamp(kind):
        fmt = "%Y-%m-%dT%H:%M:%S%z" if kind.tz else "%Y-%m-%d %H:%M:%S"
        return pc.strftime(array, format=fmt)
    if pa.types.is_decimal(kind):
        text = array.cast(pa.string())
        if kind.scale > 0:
            text = pc.replace_substring_regex(pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1"), r"\.$", "")
        return text
    if pa.types.is_nested(kind):
        return pa.array([None if v is None else orjson.dumps(v, default=_json_default).decode()
                         for v in array.to_pylist()], type=pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.array([None if v is None else v.decode("utf-8", errors="replace") for v in array.to_pylist()],
                        type=pa.string())
    try:
        return array.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a type Arrow cannot cast (intervals…): Python's text
        return pa.array([None if v is None else str(v) for v in array.to_pylist()], type=pa.string())


def _json_default(value: object) -> object:
    """Numbers inside nested values (item prices) stay JSON numbers; dates become ISO text."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(type(value).__name__)
