"""Plain numbers from text cells, telling "empty" apart from "not a number".

Why a strict parser: the extractor has already removed currency symbols and the thousands separators it
knows about and turned the decimal separator into ``.``. What is left that is not a plain number
(``12abc``, ``1,234.56``, ``1e5``, ``NaN``) means the extractor met a format it did not know, and guessing
(is ``1,234`` one thousand or one and a quarter?) would send a wrong revenue. So such a cell is *invalid*
and the row is rejected with a reason, while an empty cell is simply *absent* (the event has no value).
Both functions therefore return ``(numbers, invalid_mask)``: NaN/NA in ``numbers`` with ``invalid`` False
means empty; with ``invalid`` True it means present but unreadable.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.arrow_text import bool_numpy

DECIMAL_PATTERN = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$"
# Quantities: an integer, optionally written with a zero fraction (``3.0`` from a spreadsheet). At most 18
# significant digits, so every accepted value fits in an int64.
INTEGER_PATTERN = r"^[+-]?0*\d{1,18}(?:\.0*)?$"


def parse_decimal(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(float64 numbers, invalid_mask)``: NaN where empty or invalid; invalid = non-empty but not a number."""
    text, present = _trimmed(values)
    valid = pc.fill_null(pc.match_substring_regex(text, DECIMAL_PATTERN), False)
    numbers = pc.cast(pc.if_else(valid, text, pa.scalar(None, pa.large_string())), pa.float64())
    invalid = bool_numpy(present) & ~bool_numpy(valid)
    result = pd.Series(numbers.to_numpy(zero_copy_only=False), index=values.index, name=values.name, dtype="float64")
    return result, pd.Series(invalid, index=values.index, name=values.name)


def parse_int(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(Int64 numbers, invalid_mask)``: NA where empty or invalid; invalid = non-empty but not an integer."""
    text, present = _trimmed(values)
    valid = pc.fill_null(pc.match_substring_regex(text, INTEGER_PATTERN), False)
    integral = pc.replace_substring_regex(text, r"^\+|\.0*$", "")  # Arrow's int parser rejects "+3" and "3.0"
    numbers = pc.cast(pc.if_else(valid, integral, pa.scalar(None, pa.large_string())), pa.int64())
    invalid = bool_numpy(present) & ~bool_numpy(valid)
    result = pd.Series(numbers, dtype="Int64", index=values.index, name=values.name)
    return result, pd.Series(invalid, index=values.index, name=values.name)


def _trimmed(values: pd.Series) -> tuple[pa.Array, pa.Array]:
    """The values as trimmed Arrow strings, and whether each holds anything at all."""
    if values.dtype != "str":
        values = values.astype("str")
    text = pc.utf8_trim_whitespace(pa.array(values)).cast(pa.large_string())
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
    return text, present

