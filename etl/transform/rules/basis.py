"""Each row's money put on Google's basis before it is read: `value` without tax or shipping.

Google's purchase reference: "Set value to the sum of (price * quantity) for all items in items.
Don't include shipping or tax" (developers.google.com/analytics/devguides/collection/ga4/reference/events#purchase);
`tax` and `shipping` are their own params. A refund is measured like the purchase it reverses
(…/ga4/ecommerce#make_a_purchase_or_issue_a_refund: a `refund` with the purchase's transaction_id), so
that purchase + refunds of one order net to what the shop kept. Three rewrites, each exact (Arrow
decimals, or integers of the currency's minor unit), each counted in the tally's notes:

- **value from Total** (`value_from_total`): an export without a `Subtotal` (or a row with it empty) but
  with `total` gets value = Total − Taxes − Shipping, never Total (tax and shipping counted twice).
- **value includes tax** (`options.value_includes_tax`, `value_net_of_tax`): a CRM/CSV amount that is
  gross gets value = amount − tax (its `tax` column), or amount / (1 + `options.tax_rate`) rounded to
  the minor unit, the rest becoming `tax`.
- **refunds on the purchase's basis** (`refunds_on_purchase_basis`): a row with `refunded` (Shopify's
  cumulative, tax-included `Refunded Amount`) carrying the purchase's value, tax, shipping and total:
  a full refund (refunded ≥ total) mirrors the purchase — value, tax, shipping (and the items, kept by
  the items rule) — so the order nets to exactly 0; a partial one is split over value, tax and
  shipping in proportion (refunded × value / total, …; largest remainder, so the three add up to the
  refunded amount to the cent). Its key ends in the cumulative refunded minor units
  (`etl.protocol.event_key.level_tail`): a new level is a new event, the same level a duplicate; the
  pipeline then sends only the delta over what the ledger holds (`etl.transform.refund_deltas`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.protocol import currency as cur
from etl.transform.allocation import shares
from etl.transform.context import RuleContext

DECIMAL = pa.decimal128(30, 9)  # 20 integer digits and 9 places; room for a few additions below 38
TAX, SHIPPING = "param.tax", "param.shipping"


LEVEL, FULL = "_refund_level", "_full_refund"  # frame columns this rule adds for refund rows


@dataclass(frozen=True)
class Basis:
    key_level: pd.Series | None  # refund rows: the cumulative refunded minor units (the key's level)
    full_refund: np.ndarray  # refund rows that mirror the whole purchase (its items ride too)

    @classmethod
    def of(cls, ctx: RuleContext) -> Basis:
        """What `apply` put in the frame, for the rows in scope."""
        if not ctx.has(LEVEL):
            return cls(None, np.zeros(ctx.n, dtype=bool))
        return cls(ctx.frame[LEVEL].astype("string"), ctx.frame[FULL].notna().to_numpy(dtype=bool))


#: At most 20 integer digits (amounts beyond 10^15 are rejected anyway) so the cast cannot overflow;
#: places past the ninth are cut (no currency has more than four).
_EXACT = r"^[+-]?(?:\d{1,20}(?:\.\d*)?|\.\d+)$"


def exact(values: pd.Series) -> pa.Array:
    """Plain decimal text as exact Arrow decimals (null where empty or not a plain decimal)."""
    text = pa.array(values.astype("string"), type=pa.string(), from_pandas=True)
    text = pc.utf8_trim_whitespace(text)
    ok = pc.fill_null(pc.match_substring_regex(text, _EXACT), False)
    return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), DECIMAL, safe=False)


def text_of(values: pa.Array, index: pd.Index) -> pd.Series:
    """Exact decimals back as plain text without trailing zeros ("41.600000000" → "41.6")."""
    text = pc.cast(values, pa.string())
    text = pc.replace_substring_regex(pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1"), r"\.$", "")
    return pd.Series(pd.arrays.ArrowStringArray(text.cast(pa.large_string()).cast(pa.string())), index=index).astype("string")


def apply(ctx: RuleContext) -> None:
    """Rewrite the frame's money columns onto Google's basis (see the module docstring)."""
    columns: dict[str, pd.Series] = {}
    if ctx.has("total"):
        columns.update(_value_from_total(ctx))
    if ctx.config.options.get("value_includes_tax"):
        columns.update(_net_of_tax(ctx, columns))
    if columns:
        ctx.frame = ctx.frame.assign(**columns)
    if ctx.has("refunded"):
        _refunds(ctx)


def _value_from_total(ctx: RuleContext) -> dict[str, pd.Series]:
    value = ctx.get("value")
    total = exact(ctx.frame["total"])
    derive = value.isna().to_numpy(dtype=bool) & pc.is_valid(total).to_numpy(zero_copy_only=False)
    if not derive.any():
        return {}
    zero = pa.scalar(0, DECIMAL)
    tax = pc.fill_null(exact(ctx.get(TAX)), zero)
    shipping = pc.fill_null(exact(ctx.get(SHIPPING)), zero)
    net = pc.cast(pc.subtract(pc.subtract(total, tax), shipping), DECIMAL)
    derived = text_of(net, ctx.frame.index)
    ctx.tally.notes = ctx.tally.notes + type(ctx.tally.notes)(value_from_total=int(derive.sum()))
    labels = dict(ctx.labels)
    taxes, ships = ctx.label(TAX) if ctx.has(TAX) else None, ctx.label(SHIPPING) if ctx.has(SHIPPING) else None
    labels["value"] = " − ".join(x for x in (ctx.label("total"), taxes, ships) if x)
    ctx.labels = labels
    return {"value": value.astype("string").where(~derive, derived)}


def _net_of_tax(ctx: RuleContext, columns: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """A gross amount → value net of tax (and `tax` when a rate gives it)."""
    value = columns.get("value", ctx.get("value"))
    gross = exact(value)
    given = pc.is_valid(gross).to_numpy(zero_copy_only=False)
    if not given.any():
        return {}
    rate = ctx.config.options.get("tax_rate")
    out: dict[str, pd.Series] = {}
    if ctx.has(TAX):
        tax = pc.fill_null(exact(ctx.frame[TAX]), pa.scalar(0, DECIMAL))
        net = pc.cast(pc.subtract(gross, tax), DECIMAL)
    else:
        # Rounded to the row's minor unit: net = round(gross / (1 + rate)), tax = gross − net, exact.
        currency = ctx.get("currency").astype("string").str.strip().str.upper().fillna("")
        factor = pa.scalar(1 + float(rate), pa.float64())
        approx = pc.divide(pc.cast(gross, pa.float64()), factor).to_numpy(zero_copy_only=False)
        net_text = pd.Series(pd.NA, index=ctx.frame.index, dtype="string")
        tax_text = pd.Series(pd.NA, index=ctx.frame.index, dtype="string")
        gross_text = pd.Series(value, index=ctx.frame.index).astype("string")
        for code in pd.unique(currency[given]):
            rows = given & (currency == code).to_numpy(dtype=bool)
            places = cur.exponent(code) if code else cur.DEFAULT_EXPONENT
            net_minor = np.round(approx[rows] * 10**places).astype("int64")
            net_dec = [cur.from_minor(int(m), code or "XXX") for m in net_minor]
            g = [cur.parse(t) for t in gross_text[rows]]
            net_text[rows] = [str(x) for x in net_dec]
            tax_text[rows] = [str(a - b) for a, b in zip(g, net_dec, strict=True)]
        out[TAX] = tax_text
        ctx.labels = {**ctx.labels, TAX: f"{ctx.label('value')} × tax_rate"}
        net = exact(net_text)
    out["value"] = pd.Series(value, index=ctx.frame.index).astype("string").where(~given, text_of(net, ctx.frame.index))
    ctx.tally.notes = ctx.tally.notes + type(ctx.tally.notes)(value_net_of_tax=int(given.sum()))
    return out


def _refunds(ctx: RuleContext) -> None:
    """Refund rows: value, tax and shipping as shares of the refunded amount on the purchase's basis."""
    refunded = ctx.frame["refunded"]
    rows = np.flatnonzero(refunded.notna().to_numpy(dtype=bool))
    full = np.zeros(ctx.n, dtype=bool)
    if not len(rows):
        return
    value, tax, shipping = ctx.get("value").astype("string"), ctx.get(TAX).astype("string"), ctx.get(SHIPPING).astype("string")
    total = ctx.get("total").astype("string")
    currency = ctx.get("currency").astype("string").str.strip().str.upper()
    level = pd.Series(pd.NA, index=ctx.frame.index, dtype="string")
    new_value, new_tax, new_ship = value.copy(), tax.copy(), shipping.copy()
    for pos in rows:
        code = currency.iat[pos] if isinstance(currency.iat[pos], str) else "XXX"
        amount = cur.parse(str(refunded.iat[pos]).lstrip("-"))  # refund exports may write it negative
        basis = [cur.parse(x) for x in (value.iat[pos], tax.iat[pos], shipping.iat[pos])]
        if amount is None or basis[0] is None:
            continue  # the money rule rejects what cannot be read
        v, t, s = (cur.to_minor(x, code) if x is not None else 0 for x in basis)
        r = cur.to_minor(amount, code)
        tot_text = cur.parse(total.iat[pos])
        tot = cur.to_minor(tot_text, code) if tot_text is not None else v + t + s
        level.iat[pos] = str(r)
        if r >= tot:
            full[pos] = True  # the whole order came back: the purchase, mirrored
            continue
        sv, st, ss = shares(r, [v, t, s]) if v + t + s > 0 else (r, 0, 0)
        new_value.iat[pos] = str(cur.from_minor(sv, code))
        new_tax.iat[pos] = str(cur.from_minor(st, code)) if t or st else pd.NA
        new_ship.iat[pos] = str(cur.from_minor(ss, code)) if s or ss else pd.NA
    update = {"value": new_value, LEVEL: level,
              FULL: pd.Series(pd.NA, index=ctx.frame.index, dtype="string").mask(full, "1")}
    if ctx.has(TAX) or new_tax.notna().any():
        update[TAX] = new_tax
    if ctx.has(SHIPPING) or new_ship.notna().any():
        update[SHIPPING] = new_ship
    ctx.frame = ctx.frame.assign(**update)
    ctx.tally.notes = ctx.tally.notes + type(ctx.tally.notes)(refunds_on_purchase_basis=int(level.notna().sum()))
