"""Square: the Transactions export, with `items` from the Item Details export.

Square splits date, time and a display-name zone into three columns; they become `timestamp`
("2026-11-20 14:03:11") and an IANA `timezone`. Refund rows share the payment's Transaction ID and
become `refund` records with a positive value. `value` is Net Sales (gross sales after discounts), as
Google's purchase reference defines it, and `Tax` goes in the `tax` param; an export without Net Sales
falls back to Total Collected (which includes tax and tips). In-store sales carry no cookie: `client_id` comes
only from the source's identity map (joined on Customer ID); without a match it stays NA.
The item details file is read whole into a transaction → items table (a day's or a week's
exports; not the hot path).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from etl.config import SourceConfig
from etl.extract.canonical import TEXT, field_text, mapped_fields, money
from etl.extract.csv_stream import iter_csv_raw
from etl.extract.fields import FieldSpec, ResolvedColumns, resolve, specs_for
from etl.extract.items_json import abs_text, group_arrays, item_objects
from etl.extract.kinds import Built
from etl.extract.kinds.generic import identity_extra
from etl.extract.raw import RawChunk, rechunk
from etl.extract.text_file import inspect
from etl.extract.zones import to_iana

EVENT_TYPE = "event_type"
DEFAULTS = (
    FieldSpec("timestamp", ("Date",), required=True),
    FieldSpec("time", ("Time",), required=True),
    FieldSpec("timezone", ("Time Zone",)),
    FieldSpec("transaction_id", ("Transaction ID",), required=True),
    # Net Sales = Gross Sales − Discounts: Google's purchase value, without tax (its own param) or tips.
    FieldSpec("value", ("Net Sales", "Total Collected"), required=True),
    FieldSpec(EVENT_TYPE, ("Event Type",)),
    FieldSpec("param.tax", ("Tax",)),
    # The store the sale was made in: looked up in [locations] when [sources.location] is set.
    FieldSpec("place.store", ("Location",)),
)
ITEM_SPECS = (
    FieldSpec("transaction_id", ("Transaction ID",), required=True),
    FieldSpec("item_name", ("Item",), required=True),
    FieldSpec("quantity", ("Qty",), required=True),
    FieldSpec("gross", ("Gross Sales",), required=True),
    FieldSpec("discounts", ("Discounts",)),
    FieldSpec("item_id", ("SKU",)),
    FieldSpec("item_category", ("Category",)),
    FieldSpec("item_variant", ("Price Point Name",)),
    FieldSpec(EVENT_TYPE, ("Event Type",)),
)


class Square:
    def specs(self, source: SourceConfig) -> list[FieldSpec]:
        return specs_for(source, DEFAULTS, helpers=(EVENT_TYPE,))

    def build(self, source: SourceConfig, raw: Iterator[RawChunk], cols: ResolvedColumns, chunk_rows: int) -> Iterator[Built]:
        items = load_items(source, items_path(source)) if source.options.get("items_path") else None
        for chunk in rechunk(raw, chunk_rows):
            fields, names = mapped_fields(chunk, cols, source)
            if "timezone" in fields:
                fields["timezone"] = to_iana(fields["timezone"])
            kind = _event_kind(field_text(chunk, cols, EVENT_TYPE) if cols.has(EVENT_TYPE) else None, len(chunk))
            refund = (kind == "refund").to_numpy()
            fields["event_name"] = pd.Series(source.event, index=kind.index, dtype=TEXT).mask(refund, "refund")
            for money_field in ("value", "param.tax"):
                if money_field in fields:  # refund rows write negative amounts; GA4 wants positive ones
                    fields[money_field] = fields[money_field].mask(refund, abs_text(fields[money_field]))
            names["event_name"] = cols.headers.get(EVENT_TYPE, "(config event)")
            if items is not None:
                key = fields["transaction_id"] + "|" + kind
                fields["items"] = key.map(items).astype(TEXT)
                names["items"] = f"{items_path(source).name}: Item, SKU, Qty, Gross Sales"
            yield Built(chunk.rows, fields, names, len(chunk), chunk.skipped_blank, identity_extra(chunk, cols))


def items_path(source: SourceConfig) -> Path:
    """`options.items_path`, relative to the transactions file's folder."""
    path = Path(str(source.options["items_path"]))
    return path if path.is_absolute() else source.path.parent / path


def _event_kind(event_type: pd.Series | None, n: int) -> pd.Series:
    if event_type is None:
        return pd.Series("payment", index=range(n), dtype=TEXT)
    refund = event_type.fillna("").str.strip().str.casefold().eq("refund")
    return pd.Series(np.where(refund.to_numpy(), "refund", "payment"), index=event_type.index, dtype=TEXT)


def load_items(source: SourceConfig, path: Path) -> pd.Series:
    """(Transaction ID|payment or refund) → JSON items array, from the Item Details export."""
    layout = inspect(path, source.encoding, source.delimiter, source.max_field_bytes)
    cols = resolve(str(path), layout.header, ITEM_SPECS)
    parts: list[pd.DataFrame] = []
    for chunk in iter_csv_raw(layout):
        if not len(chunk):
            continue
        part = {f: field_text(chunk, cols, f) for f in cols.positions}
        parts.append(pd.DataFrame(part))
    if not parts:
        return pd.Series(dtype=TEXT)
    lines = pd.concat(parts, ignore_index=True)
    # An item line without a transaction id joins to nothing; the transaction it belonged to keeps
    # its value and simply has fewer items, so nothing sent is wrong.
    lines = lines[lines["transaction_id"].notna()].reset_index(drop=True)
    kind = _event_kind(lines.get(EVENT_TYPE), len(lines))
    qty = abs_text(money(lines["quantity"], source))
    gross = abs_text(money(lines["gross"], source))
    fields: dict[str, tuple[pd.Series, bool]] = {}
    for key in ("item_id", "item_name", "item_category", "item_variant"):
        if key in lines:
            fields[key] = (lines[key], False)
    # The line's Gross Sales and Discounts as they are: the transform spreads the discounts (and the
    # transaction's Net Sales) over the units in minor units — a unit price rounded here (gross / qty
    # to two places) made the items disagree with the value.
    fields["line_gross"] = (gross, True)
    if "discounts" in lines:
        fields["line_discount"] = (abs_text(money(lines["discounts"], source)), True)
    fields["quantity"] = (qty.str.replace(r"^(\d+)\.0+$", r"\1", regex=True), True)
    key = (lines["transaction_id"] + "|" + kind).to_numpy(dtype=object)
    order = np.argsort(key, kind="stable")
    objects = item_objects(fields).iloc[order].reset_index(drop=True)
    sorted_keys = key[order]
    starts = np.ones(len(sorted_keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    arrays = group_arrays(objects, np.cumsum(starts) - 1)
    return pd.Series(arrays.to_numpy(), index=sorted_keys[starts], dtype=TEXT)
