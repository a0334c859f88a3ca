"""Builds the MP event JSON column-wise with pyarrow string kernels.

Why not a dict per row and orjson: at a million rows the per-row dict construction dominates the
transform. Every value here is either a number formatted by pyarrow/pandas or a string escaped by
vectorised replaces, so the output is valid JSON by construction (tests round-trip it with orjson).

`Template` builds a whole object in one concatenation kernel: Arrow's element-wise join costs per
argument and per call, so one flat join over constants and columns is about twice as fast as joining
members, then params, then the event. A column with nulls becomes one optional piece (`,"name":value`
or empty), so a missing value still leaves its member out.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.transform.arrow_text import arrow_strings, holds_any_byte

_CONTROL_CHARS = r"[\x00-\x1f\x7f]"
# Besides control characters (below 0x20), what needs escaping in a JSON string (or becomes a space).
_ESCAPE_CHARS = '\x7f"\\'


def escaped(values: pd.Series) -> pa.Array:
    """The text of JSON string literals, without the quotes; NA stays null. Control characters become
    spaces (CSV cells can hold them)."""
    arr = arrow_strings(values)
    # One scan of the raw bytes decides; the rewrites run only when some value needs them (most columns
    # hold none).
    if not holds_any_byte(arr, _ESCAPE_CHARS, controls=True):
        return arr
    if pc.any(pc.match_substring_regex(arr, _CONTROL_CHARS)).as_py():
        arr = pc.replace_substring_regex(arr, _CONTROL_CHARS, " ")
    if pc.any(pc.match_substring(arr, "\\")).as_py():
        arr = pc.replace_substring(arr, "\\", "\\\\")
    if pc.any(pc.match_substring(arr, '"')).as_py():
        arr = pc.replace_substring(arr, '"', '\\"')
    return arr


def json_string(values: pd.Series) -> pa.Array:
    """`"…"` JSON string literals; NA stays null (see `escaped`)."""
    return pc.binary_join_element_wise('"', escaped(values), '"', "")


def json_number(values: pd.Series) -> pa.Array:
    """JSON numbers from a numeric Series (finite values only; NA stays null)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return pc.cast(pa.array(values, type=pa.int64(), from_pandas=True), pa.string())
    # pyarrow formats doubles shortest-round-trip (49.99, not 49.990000000000002): valid JSON numbers.
    as_float = pa.array(values.astype("float64"), type=pa.float64(), from_pandas=True)
    return pc.cast(as_float, pa.string())


def member(name: str, value_json: pa.Array) -> pa.Array:
    """`"name":<value>`; null where the value is null (so the member is left out)."""
    return pc.binary_join_element_wise(f'"{name}":', value_json, "")


def join_members(members: list[pa.Array], length: int) -> pa.Array:
    """Comma-join the non-null members of each row into `{…}`."""
    if not members:
        return pa.array(["{}"] * length, type=pa.string())
    joined = pc.binary_join_element_wise(*members, ",", null_handling="skip")
    return pc.binary_join_element_wise("{", joined, "}", "")


def string_object(columns: dict[str, pd.Series | str], length: int) -> pa.Array:
    """`{"key":"value",…}` per row from string columns, a null value leaving its member out.

    A plain str is that value on every row (consent filled from a source's policy); it, and a column
    holding one value on every row, cost one formatted member, not one per row.
    """
    members: list[pa.Array | str] = []
    for key, values in columns.items():
        one = values if isinstance(values, str) else single_value(arrow_strings(values))
        if one is not None:
            members.append(f'"{key}":' + json_string(pd.Series([one], dtype="string"))[0].as_py())
        else:
            members.append(member(key, json_string(values)))
    if all(isinstance(m, str) for m in members):
        return pa.repeat(pa.scalar("{" + ",".join(members) + "}", pa.string()), length)  # type: ignore[arg-type]
    return join_members([pa.repeat(pa.scalar(m, pa.string()), length) if isinstance(m, str) else m for m in members],
                        length)


def raw(values: pd.Series) -> pa.Array:
    """Values that already are JSON text (e.g. a checked items array)."""
    return arrow_strings(values)


def single_value(values: pa.Array) -> str | None:
    """The value every row holds, when there is exactly one and no null; else None."""
    if len(values) == 0 or values.null_count:
        return None
    bounds = pc.min_max(values)
    low = bounds["min"].as_py()
    return low if low == bounds["max"].as_py() else None


class Template:
    """Row-wise concatenation of constant text and string columns, built in one kernel call.

    `text` appends constant JSON, `column` a column that is never null, `optional` a member that is
    left out (with its leading text, e.g. `,"value":`) where the column is null.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self._pieces: list[str | pa.Array] = []

    def text(self, constant: str) -> Template:
        if self._pieces and isinstance(self._pieces[-1], str):
            self._pieces[-1] += constant
        else:
            self._pieces.append(constant)
        return self

    def column(self, values: pa.Array, single: str | None = None) -> Template:
        """A column that is never null; `single`: its one value on every row (see `single_value`)."""
        if single is not None:
            return self.text(single)
        self._pieces.append(values)
        return self

    def optional(self, prefix: str, values: pa.Array, suffix: str = "") -> Template:
        """`prefix value suffix`, or nothing where the value is null."""
        if values.null_count == 0:
            return self.text(prefix).column(values).text(suffix)
        return self.column(pc.fill_null(pc.binary_join_element_wise(prefix, values, suffix, ""), ""))

    def build(self) -> pa.Array:
        if not any(isinstance(p, pa.Array) for p in self._pieces):
            return pa.array(["".join(self._pieces)] * self.length, type=pa.string())  # type: ignore[arg-type]
        return pc.binary_join_element_wise(*self._pieces, "")


def add_members(template: Template, members: list[tuple[str, pa.Array | None, str]]) -> Template:
    """Append JSON object members (`text before, value or None for a constant, text after`), comma-separated,
    a member whose value is null left out.

    Each member after the first brings its own comma, so the first must be present on every row: when
    it may be null, the members are comma-joined per row instead (one more kernel call).
    """
    if not members:
        return template
    first_prefix, first_values, first_suffix = members[0]
    if first_values is None or first_values.null_count == 0:
        if first_values is None:
            template.text(first_prefix + first_suffix)
        else:
            template.optional(first_prefix, first_values, first_suffix)
        for prefix, values, suffix in members[1:]:
            if values is None:
                template.text("," + prefix + suffix)
            else:
                template.optional("," + prefix, values, suffix)
        return template
    parts = [pa.repeat(pa.scalar(prefix + suffix, pa.string()), template.length) if values is None
             else pc.binary_join_element_wise(prefix, values, suffix, "") for prefix, values, suffix in members]
    return template.column(pc.binary_join_element_wise(*parts, ",", null_handling="skip"))
