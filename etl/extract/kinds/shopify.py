"""Shopify "Export orders" CSV: one row per line item, folded into one record per order.

The order-level columns (Total, Paid at, Note Attributes…) are filled only on an order's first line;
its later lines carry just `Name` and the line-item columns. A new order starts where `Name`
changes. Chunks are cut between orders, never inside one, so an order's items stay together.
The GA cookies come from the cart attributes (`Note Attributes`, one `key: value` per line). A site
with several GA4 properties stores one `_ga_<ID>` session cookie per property: all of them are passed
on as `_ga_<ID>=<value>` pairs and the transform keeps the configured property's.

Money, as the "Export orders" CSV writes it (one row per line item; the order's columns on its first):
`Subtotal` (the line items after every discount, before shipping and taxes: the purchase's `value`),
`Shipping`, `Taxes`, `Total` (= Subtotal + Shipping + Taxes), `Discount Code`, `Discount Amount` (the
order's discounts), `Lineitem price` (the unit price before discount), `Lineitem quantity`,
`Lineitem discount` (the discount of the whole line), `Refunded Amount` (cumulative, tax included).
Items leave here as `price` (unit, before discount), `quantity` and `line_discount`; the transform
spreads the line's and the order's discounts over the units (etl/transform/allocation.py) so that
Σ price × quantity == Subtotal. An export without `Subtotal` gets value = Total − Taxes − Shipping in
the transform (counted as `value_from_total`), never Total.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from etl.config import SourceConfig
from etl.extract.canonical import TEXT, field_text, mapped_fields, money
from etl.extract.fields import SKIP_REASON, FieldSpec, ResolvedColumns, specs_for
from etl.extract.items_json import group_arrays, item_objects
from etl.extract.kinds import Built
from etl.extract.kinds.generic import IDENTITY_KEY
from etl.extract.raw import CELL_PROBLEM, RawChunk, _concat, rechunk

PAID_STATUSES = ("paid", "partially_paid", "refunded", "partially_refunded")
REFUND_STATUSES = ("refunded", "partially_refunded")
_GA_COOKIE = r"(?m)^[ \t]*_ga[ \t]*:[ \t]*(\S+)"
_SESSION_COOKIES = r"(?m)^[ \t]*(_ga_[A-Za-z0-9]+)[ \t]*:[ \t]*(\S+)"

HELPERS = (
    "created_at", "financial_status", "note_attributes", "refunded_amount", "refunded_at", "cancelled_at",
    "lineitem_sku", "lineitem_name", "lineitem_price", "lineitem_quantity", "lineitem_discount", "vendor",
)
DEFAULTS = (
    FieldSpec("transaction_id", ("Name",), required=True),
    FieldSpec("value", ("Subtotal",)),
    FieldSpec("total", ("Total",), required=True),
    FieldSpec("currency", ("Currency",), required=True),
    FieldSpec("timestamp", ("Paid at",), required=True),
    FieldSpec("created_at", ("Created at",), required=True),
    FieldSpec("financial_status", ("Financial Status",), required=True),
    FieldSpec("note_attributes", ("Note Attributes",)),
    FieldSpec("refunded_amount", ("Refunded Amount",)),
    # The orders export has no refund date; exports that add one (apps, custom reports) name it so.
    FieldSpec("refunded_at", ("Refunded at", "Refunded At", "Refund Created At", "Refund: Created At", "Refund Processed At")),
    FieldSpec("cancelled_at", ("Cancelled at",)),
    FieldSpec("lineitem_name", ("Lineitem name",), required=True),
    FieldSpec("lineitem_quantity", ("Lineitem quantity",), required=True),
    FieldSpec("lineitem_price", ("Lineitem price",), required=True),
    FieldSpec("lineitem_sku", ("Lineitem sku",)),
    FieldSpec("lineitem_discount", ("Lineitem discount",)),
    FieldSpec("vendor", ("Vendor",)),
    FieldSpec("param.tax", ("Taxes",)),
    FieldSpec("param.shipping", ("Shipping",)),
    FieldSpec("param.coupon", ("Discount Code",)),
    # The store of a POS order (empty for online ones): looked up in [locations] when [sources.location] is set.
    FieldSpec("place.store", ("Location",)),
)


class Shopify:
    def specs(self, source: SourceConfig) -> list[FieldSpec]:
        specs = specs_for(source, DEFAULTS, helpers=HELPERS)
        if not source.options.get("refunds"):
            return specs
        # With refunds on, the refunded amount is needed: make its spec required (re-adding it if unmapped).
        others = [s for s in specs if s.field != "refunded_amount"]
        current = next((s for s in specs if s.field == "refunded_amount"), FieldSpec("refunded_amount", ("Refunded Amount",)))
        return [*others, FieldSpec(current.field, current.headers, required=True)]

    def build(self, source: SourceConfig, raw: Iterator[RawChunk], cols: ResolvedColumns, chunk_rows: int) -> Iterator[Built]:
        carry: RawChunk | None = None
        blanks = 0
        for chunk in rechunk(raw, chunk_rows):
            blanks += chunk.skipped_blank
            lines = _concat([carry, chunk]) if carry is not None and len(carry) else chunk
            starts = _order_starts(field_text(lines, cols, "transaction_id"))
            last_start = int(np.flatnonzero(starts)[-1]) if len(lines) else 0
            if last_start == 0:  # the whole buffer may still be one open order: read on
                carry = lines
                continue
            done = RawChunk(lines.frame.iloc[:last_start].reset_index(drop=True), lines.rows[:last_start], blanks)
            carry = RawChunk(lines.frame.iloc[last_start:].reset_index(drop=True), lines.rows[last_start:])
            blanks = 0
            yield self._orders(source, done, cols)
        if carry is not None and len(carry):
            carry.skipped_blank = blanks
            yield self._orders(source, carry, cols)

    def _orders(self, source: SourceConfig, lines: RawChunk, cols: ResolvedColumns) -> Built:
        starts = _order_starts(field_text(lines, cols, "transaction_id"))
        groups = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        line_fields, line_names = mapped_fields(lines, cols, source)
        fields = {k: v.iloc[first].reset_index(drop=True) for k, v in line_fields.items()}
        if CELL_PROBLEM in line_fields:  # a refused cell on any line rejects its order
            fields[CELL_PROBLEM] = line_fields[CELL_PROBLEM].groupby(groups).first().reset_index(drop=True).astype(TEXT)
        names = dict(line_names)

        def order_level(field: str) -> pd.Series | None:
            return field_text(lines, cols, field).iloc[first].reset_index(drop=True) if cols.has(field) else None

        created = order_level("created_at")
        fields["timestamp"] = fields["timestamp"].fillna(created)
        names["timestamp"] = f"{cols.headers['timestamp']} (else {cols.headers['created_at']})"
        notes = order_level("note_attributes")
        if notes is not None:
            if "client_id" not in fields:
                fields["client_id"] = notes.str.extract(_GA_COOKIE, expand=False).astype(TEXT)
                names["client_id"] = cols.headers["note_attributes"]
            if "session_id" not in fields:
                fields["session_id"] = _session_cookies(notes)
                names["session_id"] = cols.headers["note_attributes"]
        fields["items"] = group_arrays(item_objects(self._item_fields(source, lines, cols)), groups).reset_index(drop=True)
        names["items"] = ", ".join(cols.headers[f] for f in ("lineitem_sku", "lineitem_name", "lineitem_price",
                                                              "lineitem_quantity", "lineitem_discount") if cols.has(f))

        status = order_level("financial_status").fillna("").str.strip().str.casefold()
        paid = status.isin([s.casefold() for s in source.options.get("purchase_statuses", PAID_STATUSES)]).to_numpy()
        fields["event_name"] = pd.Series(source.event, index=status.index, dtype=TEXT).where(paid)
        # The status text is not shown (a reject names the column and the rule, never a cell's value).
        skip = f"column {cols.headers['financial_status']!r} is not a paid status (value not shown)"
        fields[SKIP_REASON] = pd.Series(skip, index=status.index, dtype=TEXT).mask(paid)
        names["event_name"] = names[SKIP_REASON] = cols.headers["financial_status"]
        rows = lines.rows[first]
        extra = {IDENTITY_KEY: order_level(IDENTITY_KEY)} if cols.has(IDENTITY_KEY) else {}

        if source.options.get("refunds"):
            refunded = status.isin(REFUND_STATUSES).to_numpy()
            if refunded.any():
                full = status.eq("refunded").to_numpy()
                fields, rows, extra = _with_refunds(source, fields, rows, extra, refunded, full, order_level("refunded_amount"),
                                                    order_level("cancelled_at"), order_level("refunded_at"))
                names["refunded"] = cols.headers["refunded_amount"]
        return Built(rows, fields, names, len(lines), lines.skipped_blank, extra)

    @staticmethod
    def _item_fields(source: SourceConfig, lines: RawChunk, cols: ResolvedColumns) -> dict[str, tuple[pd.Series, bool]]:
        spec = (
            ("item_id", "lineitem_sku", False),
            ("item_name", "lineitem_name", False),
            ("item_brand", "vendor", False),
            ("price", "lineitem_price", True),
            ("quantity", "lineitem_quantity", True),
            ("line_discount", "lineitem_discount", True),
        )
        out = {}
        for key, field, numeric in spec:
            if cols.has(field):
                values = field_text(lines, cols, field)
                out[key] = (money(values, source) if numeric else values, numeric)
        return out


def _order_starts(names: pd.Series) -> np.ndarray:
    values = names.fillna("").to_numpy(dtype=object)
    starts = np.ones(len(values), dtype=bool)
    if len(values) > 1:
        starts[1:] = values[1:] != values[:-1]
    starts |= names.isna().to_numpy()
    return starts


def _session_cookies(notes: pd.Series) -> pd.Series:
    """Every `_ga_<ID>: value` line of the note attributes, as `_ga_<ID>=value` pairs (NA when none)."""
    found = notes.str.extractall(_SESSION_COOKIES)
    if found.empty:
        return pd.Series(pd.NA, index=notes.index, dtype=TEXT)
    pairs = (found[0] + "=" + found[1]).groupby(level=0).agg(" ".join)
    return pairs.reindex(notes.index).astype(TEXT)


def _with_refunds(source, fields, rows, extra, refunded, full, refunded_amount, cancelled_at, refunded_at=None):
    """Append a `refund` record (same row, same transaction id) for every refunded order.

    The record carries the purchase's own money (value, tax, shipping, total, items) and `refunded`,
    the export's cumulative refunded amount (tax included): the transform puts the refund on the
    purchase's basis (etl/transform/rules/basis.py) and the pipeline sends the delta over what the
    ledger already holds. Its time: the refund's own column where the export has one (`Refunded at`
    and similar), else `Cancelled at` for a full refund (status `refunded`), else none: the transform
    times it at the wall clock, when the refund was first seen (`time_unknown`) — never the purchase's
    own time, which would date the refund days before it happened.
    """
    idx = np.flatnonzero(refunded)
    n = len(idx)
    refund = {k: v.iloc[idx].reset_index(drop=True) for k, v in fields.items()}
    refund["event_name"] = pd.Series("refund", index=range(n), dtype=TEXT)
    refund[SKIP_REASON] = pd.Series(pd.NA, index=range(n), dtype=TEXT)
    refund["refunded"] = money(refunded_amount.iloc[idx].reset_index(drop=True), source)
    when = pd.Series(pd.NA, index=range(n), dtype=TEXT)
    if cancelled_at is not None:
        when = when.fillna(cancelled_at.iloc[idx].reset_index(drop=True).where(full[idx]))
    if refunded_at is not None:
        when = refunded_at.iloc[idx].reset_index(drop=True).fillna(when)
    refund["timestamp"] = when
    refund["time_unknown"] = pd.Series("1", index=range(n), dtype=TEXT).mask(when.notna())
    for k in ("refunded", "time_unknown"):
        fields = {**fields, k: pd.Series(pd.NA, index=range(len(rows)), dtype=TEXT)}
    merged = {k: pd.concat([fields[k], refund[k]], ignore_index=True) for k in fields}
    extra = {k: pd.concat([v, v.iloc[idx]], ignore_index=True) for k, v in extra.items()}
    all_rows = np.concatenate([rows, rows[idx]])
    order = np.argsort(all_rows, kind="stable")
    merged = {k: v.iloc[order].reset_index(drop=True) for k, v in merged.items()}
    extra = {k: v.iloc[order].reset_index(drop=True) for k, v in extra.items()}
    return merged, all_rows[order], extra
