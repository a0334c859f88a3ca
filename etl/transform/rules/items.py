"""`items` (POS exports, CSV/Parquet `items` columns): JSON arrays of item objects, parsed per order —
only sources with line items pay for it. Only item params in the allowlist leave; every kept value is
checked the way GA4's validator will check it at send time, so a row that would fail is rejected here,
with the item field named, instead of failing the send gate every night.

Money, as Google defines it (etl/transform/allocation.py): each item leaves with `price` = its unit
price after its share of every discount, `discount` = the unit discount, `quantity`, and the event's
`value` is Σ price × quantity to the cent. The items a source gives (the convention,
docs/commerce.md): `price` is the unit price *before* discount (`options.item_price = "after_discount"`
when it is already net), `discount` is per unit (`options.item_discount = "per_line"` for the whole
line's), `line_discount` is the whole line's discount and `line_gross` the line's total before
discount (for exports that give no unit price, Square's Gross Sales); `quantity` defaults to 1. The
order's value (Subtotal) is the target; what separates it from the lines is the order's discount.

Limits like Google's (support.google.com/analytics/answer/9267744: a parameter over its limit is not
logged — the parameter, not the event): item text over 100 characters is cut to 100, and items past
200 are left out with `value` intact; each counted per rule (`limits` in the summary and the privacy
manifest). Only what cannot be sent at all rejects the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from etl.policy import ITEM_PARAMS
from etl.protocol import currency as cur
from etl.protocol import rules
from etl.transform.allocation import Line, allocate
from etl.transform.context import Param, RuleContext
from etl.transform.rules import privacy
from etl.transform.rules.basis import Basis
from etl.transform.rules.money import Money
from etl.transform.rules.names import EventNames

FIELD = "events[0].params.items"
_ITEM_AMOUNT_KEYS = frozenset({"price", "discount", "line_discount", "line_gross"})
_ITEM_INTEGER_KEYS = frozenset({"quantity", "index"})
#: Keys of the convention that say how much a line cost; they are read, never sent as they are.
LINE_KEYS = frozenset({"line_discount", "line_gross"})
_MONEY_KEYS = frozenset({"price", "discount", "quantity"}) | LINE_KEYS


@dataclass(frozen=True)
class Items:
    items: pd.Series | None  # the kept items as JSON text per row; None: the source maps no items
    params: list[Param]
    value: pd.Series | None = None  # decimal text where the items set the event's value (no value given)


def apply(ctx: RuleContext, money: Money | None = None, basis: Basis | None = None,
          names: EventNames | None = None) -> Items:
    if not ctx.has("items"):
        return Items(None, [])
    label = ctx.label("items")
    items, strings, positions, value = _normalise(ctx, ctx.frame["items"], label, money, basis, names)
    hit_rows = privacy.rows_hit(ctx, strings, positions)
    ctx.reasons.add(hit_rows, FIELD, f"column {label!r} holds personal data in an item; the value is not shown and was not sent", "PERSONAL_DATA")
    return Items(items, [Param("items", items, "json")], value)


def _normalise(ctx: RuleContext, items: pd.Series, label: str, money: Money | None, basis: Basis | None,
               names: EventNames | None) -> tuple[pd.Series, pd.Series, np.ndarray, pd.Series]:
    """Parse, check, allocate and re-serialise item arrays; also every kept string value with its row
    position, for the personal-data scan (collected here, so each order's items are parsed once).

    No nested lists or objects are kept: they could carry personal data the scan does not reach.
    """
    n = len(items)
    out = pd.Series(pd.NA, index=items.index, dtype="string")
    value_out = pd.Series(pd.NA, index=items.index, dtype="string")
    strings: list[str] = []
    positions: list[int] = []
    bad_json = np.zeros(n, dtype=bool)
    no_id = np.zeros(n, dtype=bool)
    problems: dict[tuple[str, str], np.ndarray] = {}
    tally = ctx.tally
    options = ctx.config.options
    after_discount = options.get("item_price") == "after_discount"
    per_line = options.get("item_discount") == "per_line"
    currency = money.currency if money is not None else pd.Series(pd.NA, index=items.index, dtype="string")
    targets = money.exact.to_pylist() if money is not None else [None] * n
    refund = (names.names == "refund").fillna(False).to_numpy(dtype=bool) if names is not None else np.zeros(n, dtype=bool)
    partial_refund = refund & basis.key_level.notna().to_numpy(dtype=bool) & ~basis.full_refund \
        if basis is not None and basis.key_level is not None else np.zeros(n, dtype=bool)
    adds_up, unpriced, past_limit, events_cut = 0, 0, 0, 0
    truncated: dict[str, int] = {}
    for pos, text in enumerate(items.to_numpy()):
        if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
            continue
        if partial_refund[pos]:
            continue  # which items came back is unknown: a partial refund carries its value only
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            bad_json[pos] = True  # also numbers too large for a double ("number is infinity")
            continue
        if not isinstance(parsed, list) or not all(isinstance(i, dict) for i in parsed):
            bad_json[pos] = True
            continue
        lines: list[tuple[Line, tuple]] = []
        row_bad = False
        for item in parsed:
            kept = {k: v for k, v in item.items() if (k in ITEM_PARAMS or k in LINE_KEYS) and v is not None and v != ""}
            for k in item.keys() - ITEM_PARAMS - LINE_KEYS:
                tally.item_keys_not_sent[k] += 1
            if "item_id" not in kept and "item_name" not in kept:
                no_id[pos] = True
            for k, v in list(kept.items()):
                problem = _value_problem(k, v)
                if problem is not None:
                    problems.setdefault(problem, np.zeros(n, dtype=bool))[pos] = True
                    row_bad = True
                elif isinstance(v, str):
                    if len(v) > rules.MAX_PARAM_VALUE_LEN:
                        v = kept[k] = v[: rules.MAX_PARAM_VALUE_LEN]
                        rule = "item_name_truncated" if k == "item_name" else "item_text_truncated"
                        truncated[rule] = truncated.get(rule, 0) + 1
                    strings.append(v)
                    positions.append(pos)
                elif k in _ITEM_INTEGER_KEYS and type(v) is float:
                    kept[k] = int(v)  # a spreadsheet's 2.0: GA4 wants the integer 2
            if not row_bad:
                lines.append(_line(kept, after_discount, per_line))
        if row_bad:
            continue
        code = currency.iat[pos] if isinstance(currency.iat[pos], str) and currency.iat[pos] in rules.ISO_4217_CODES else None
        clean, value = _priced(lines, targets[pos], code)
        if clean is None:
            clean = [{**line.item, **_as_given(raw), "quantity": line.quantity} for line, raw in lines]
            unpriced += 1
        elif value is not None:
            if targets[pos] is None:
                value_out.iat[pos] = str(cur.from_minor(value[0], code))  # type: ignore[arg-type]
            adds_up += 0 if value[1] else 1
        if len(clean) > rules.MAX_ITEMS_PER_EVENT:
            past_limit += len(clean) - rules.MAX_ITEMS_PER_EVENT
            events_cut += 1
            clean = clean[: rules.MAX_ITEMS_PER_EVENT]
        out.iat[pos] = orjson.dumps(clean).decode()
    reasons = ctx.reasons
    reasons.add(bad_json, FIELD, f"column {label!r} does not hold a list of items (or holds a number too large to read)", "VALUE_INVALID")
    reasons.add(no_id, FIELD, "every item needs item_id or item_name", "VALUE_REQUIRED")
    for (rule, code), mask in problems.items():
        reasons.add(mask, FIELD, f"column {label!r}: {rule} (value not shown)", code)
    for rule, count in truncated.items():
        tally.limits[rule] += count
    if past_limit:
        tally.limits["items_past_200_dropped"] += past_limit
        tally.limits["events_with_items_past_200"] += events_cut
    if adds_up or unpriced:
        tally.notes = tally.notes + type(tally.notes)(items_do_not_add_up=adds_up, items_without_price=unpriced)
    return out, pd.Series(strings, dtype="string"), np.asarray(positions, dtype=np.int64), value_out


def _line(kept: dict[str, Any], after_discount: bool, per_line: bool) -> tuple[Line, tuple]:
    """One item as a line of the order, and its amounts as given (made minor units by `_priced`)."""
    item = {k: v for k, v in kept.items() if k not in _MONEY_KEYS}
    raw = (kept.get("price"), kept.get("discount"), kept.get("line_discount"), kept.get("line_gross"),
           after_discount, per_line)
    return Line(item, int(kept.get("quantity", 1)), None), raw


def _as_given(raw: tuple) -> dict[str, Any]:
    """An unpriced order's item amounts, sent as the source gave them (nothing to allocate)."""
    price, discount = raw[0], raw[1]
    return {k: v for k, v in (("price", price), ("discount", discount)) if v is not None}


def _priced(lines: list[tuple[Line, tuple]], target: Any, code: str | None
            ) -> tuple[list[dict[str, Any]] | None, tuple[int, bool] | None]:
    """The lines in minor units, allocated; (items as GA wants them, (value, adds up)); (None, None)
    when a line has no price or the row no valid currency (the items are then sent as given)."""
    if code is None:
        return None, None
    for line, raw in lines:
        price, discount, line_discount, line_gross, after, per_line = raw
        q = line.quantity
        unit_discount = 0 if discount is None or per_line else cur.to_minor(discount, code)
        whole_discount = (cur.to_minor(discount, code) if per_line and discount is not None else 0) + (
            cur.to_minor(line_discount, code) if line_discount is not None else 0)
        disc = unit_discount * q + whole_discount
        if line_gross is not None:
            gross = cur.to_minor(line_gross, code)
        elif price is not None:
            gross = cur.to_minor(price, code) * q + (disc if after else 0)
        else:
            return None, None
        line.gross, line.discount = gross, disc
    result = allocate([line for line, _ in lines], None if target is None else cur.to_minor(target, code))
    items = []
    for entry in result.items:
        if "price" in entry:
            entry["price"] = cur.json_number(entry["price"], code)
        if "discount" in entry:
            entry["discount"] = cur.json_number(entry["discount"], code)
        items.append(entry)
    return items, (result.value, result.adds_up)


def _value_problem(key: str, v: Any) -> tuple[str, str] | None:
    """Why one kept item value would fail GA4's checks (or leak unscanned), as (rule, code); None when fine.

    The rule names the item field, never the value.
    """
    kind = type(v)
    if kind is dict or kind is list:
        return f"item field {key} holds a list or object (only text and numbers are sent)", "VALUE_INVALID"
    if key in _ITEM_AMOUNT_KEYS:
        if kind is bool or kind not in (int, float):
            return f"item field {key} is not a number", "VALUE_INVALID"
        if not math.isfinite(v) or abs(v) > rules.MAX_ABS_AMOUNT:
            return f"item field {key} is not a finite number of at most {rules.MAX_ABS_AMOUNT:.0e} in size", "VALUE_OUT_OF_BOUNDS"
        if v < 0:
            return f"item field {key} is negative (returns are refund events)", "VALUE_INVALID"
        return None
    if key in _ITEM_INTEGER_KEYS:
        if kind is bool or kind not in (int, float) or (kind is float and not (math.isfinite(v) and v.is_integer())):
            return f"item field {key} is not a whole number", "VALUE_INVALID"
        if abs(v) > rules.MAX_ITEM_QUANTITY:
            return f"item field {key} is larger than {rules.MAX_ITEM_QUANTITY:,}", "VALUE_OUT_OF_BOUNDS"
        if v < 0:
            return f"item field {key} is negative (returns are refund events)", "VALUE_INVALID"
        return None
    if kind is str:
        return None  # text over the limit is cut to it, as GA would not log the rest
    if kind is bool or kind not in (int, float) or not math.isfinite(v):
        return f"item field {key} is not text or a finite number", "VALUE_INVALID"
    return None
