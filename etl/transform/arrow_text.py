"""The text conversions and checks every vectorised transform function needs, in one place.

`astype("string")` (not "str") keeps NA as NA on pandas 2.x too, where "str" would turn None into
the text "None" and let it through as a value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def arrow_strings(values: pd.Series) -> pa.Array:
    """The values as one Arrow string array (nulls for NA), whatever the Series' dtype."""
    array = pa.array(values.astype("string"), type=pa.string(), from_pandas=True)
    # A column read in several blocks arrives chunked; callers index and dictionary-encode one array.
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def bool_numpy(mask: pa.Array) -> np.ndarray:
    """An Arrow boolean mask as numpy, null counted as False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=True)


def holds_any_byte(array: pa.Array, chars: str, *, controls: bool = False) -> bool:
    """Whether any value of a string array holds one of the ASCII `chars` (or, with `controls`, a byte
    below 0x20).

    A cheap gate (one numpy compare per character over the raw bytes) that lets a rewrite of a whole
    column be skipped when no value needs it. ASCII bytes never occur inside a UTF-8 multi-byte
    sequence, so non-ASCII text gives no false positives; one would only cost the rewrite anyway.
    """
    if array.null_count == len(array):
        return False
    data = array.buffers()[2]
    if data is None:
        return False
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=width)[array.offset:array.offset + len(array) + 1]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    if controls and bool((raw < 0x20).any()):
        return True
    codes = [ord(char) for char in chars]
    assert all(code < 0x80 for code in codes), "only ASCII bytes can be told from UTF-8 continuation bytes"
    return any(bool((raw == code).any()) for code in codes)


# Bytes that can start or end a whitespace character: ASCII whitespace as Arrow's utf8_trim_whitespace
# sees it (\t \n \v \f \r, 0x1C-0x1F, space) and every non-ASCII byte (U+00A0, U+3000, ...).
_EDGE_SPACE = np.zeros(256, dtype=bool)
_EDGE_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True
_EDGE_SPACE[0x80:] = True


def may_have_edge_whitespace(array: pa.Array) -> bool:
    """False only when no value starts or ends with a byte that could belong to whitespace (a gate for
    trimming: ids, codes and numbers written cleanly skip it)."""
    data = array.buffers()[2] if len(array) else None
    if data is None or array.null_count == len(array):
        return False
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=width)[array.offset:array.offset + len(array) + 1]
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(_EDGE_SPACE[raw[starts[filled]]].any() or _EDGE_SPACE[raw[ends[filled] - 1]].any())


def blank(values: pd.Series) -> np.ndarray:
    """NA, empty or only whitespace (utf8_is_space: the characters utf8_trim_whitespace removes)."""
    text = arrow_strings(values)
    return bool_numpy(pc.is_null(text)) | bool_numpy(pc.equal(pc.binary_length(text), 0)) | bool_numpy(pc.utf8_is_space(text))


def strip(values: pd.Series) -> pd.Series:
    """Trimmed text, NA where nothing is left (the trim only runs when some value has a blank edge)."""
    text = arrow_strings(values)
    if may_have_edge_whitespace(text):
        text = pc.utf8_trim_whitespace(text)
    empty = pc.equal(pc.binary_length(text), 0)
    if pc.any(empty).as_py():
        text = pc.if_else(empty, pa.scalar(None, pa.string()), text)
    return pd.Series(pd.arrays.ArrowStringArray(text), index=values.index, name=values.name)
