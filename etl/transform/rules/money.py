"""`value` and `currency`: a plain decimal the extractor normalised, and an ISO 4217 code.

An amount that is not a finite number of sane size (a 400-digit cell parses to infinity) rejects its
row: infinity is no JSON number, and left in it would crash the sender on every later run. So does
money that would be wrong in GA rather than merely odd (issue 23): a negative amount on anything but
a refund (`-10`, an accounting `(10.00)` or `10-`: the extractor reads all three as −10; returns are
`refund` events), and a currency mark that disagrees with the row's currency (`$10` in a EUR row was
sent as 10 EUR). A refund export that writes its amounts negative is read as their size.

`exact` keeps every value as an Arrow decimal, the money tally's (etl.accounting.Money) basis: floats
would not add up to the cent over a night of orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.accounting import sum_by_currency
from etl.protocol import rules
from etl.protocol.currency import CURRENCY_MARKS
from etl.transform.arrow_text import strip
from etl.transform.context import Param, RuleContext
from etl.transform.numbers import parse_decimal
from etl.transform.reasons import RejectReasons
from etl.transform.rules.basis import exact as exact_decimals
from etl.transform.rules.names import EventNames

FIELD = "events[0].params.value"


@dataclass(frozen=True)
class Money:
    value: pd.Series  # float64, NaN where absent or rejected (refunds: the positive size)
    exact: pa.Array  # the same values as exact decimals (null where absent or unreadable)
    value_given: np.ndarray  # the cell held something (a number or not): the param is present
    currency: pd.Series
    params: list[Param]


def apply(ctx: RuleContext, names: EventNames | None = None) -> Money:
    reasons = ctx.reasons
    text = ctx.get("value")
    value, value_invalid = parse_decimal(text)
    label = ctx.label("value")
    reasons.add(value_invalid, FIELD, f"column {label!r} is not a number", "VALUE_INVALID")
    value = check_amount(value, label, FIELD, reasons)
    exact = exact_decimals(text)
    negative = (value < 0).to_numpy(dtype=bool)
    if negative.any():
        refund = _refunds(ctx, names)
        reasons.add(negative & ~refund, FIELD, f"column {label!r} is negative (a minus sign, a trailing minus or "
                    "parentheses): only a refund may carry a negative amount; send returns as refund events", "VALUE_INVALID")
        value = value.where(~refund, value.abs())  # a refund export's −12.00 is a refund of 12.00
    currency = strip(ctx.get("currency")).str.upper()
    if ctx.config.options.get("currency"):
        currency = currency.fillna(str(ctx.config.options["currency"]).upper())
    has_value = value.notna().to_numpy(dtype=bool)
    cur_blank = currency.isna().to_numpy(dtype=bool)
    cur_label = ctx.label("currency")
    reasons.add(has_value & cur_blank, "events[0].params.currency", f"currency is required with value: column {cur_label!r} is empty", "VALUE_REQUIRED")
    reasons.add(~cur_blank & ~currency.isin(rules.ISO_4217_CODES).fillna(False).to_numpy(dtype=bool), "events[0].params.currency", f"column {cur_label!r} is not an ISO 4217 currency code", "VALUE_INVALID")
    if ctx.has("value_sign"):
        reasons.add(_mark_disagrees(ctx.frame["value_sign"], currency), FIELD, f"column {label!r} writes a currency sign "
                    f"that is not the row's currency (column {cur_label!r}); the amount was not sent", "VALUE_INVALID")
    given = has_value | value_invalid.to_numpy(dtype=bool)
    # Validated ISO 4217 codes need no escaping.
    return Money(value, exact, given, currency, [Param("value", value, "number"), Param("currency", currency, "plain")])


def _refunds(ctx: RuleContext, names: EventNames | None) -> np.ndarray:
    if names is None:
        return np.zeros(ctx.n, dtype=bool)
    return (names.names == "refund").fillna(False).to_numpy(dtype=bool)


def _mark_disagrees(marks: pd.Series, currency: pd.Series) -> np.ndarray:
    """Rows whose amount carried a mark (`$`, `€`, `USD`…) the row's currency does not use."""
    marks = marks.astype("string")
    out = np.zeros(len(marks), dtype=bool)
    present = marks.notna().to_numpy(dtype=bool) & currency.notna().to_numpy(dtype=bool)
    if not present.any():
        return out
    for mark in pd.unique(marks[present]):
        allowed = CURRENCY_MARKS.get(mark, frozenset({mark}))
        rows = present & (marks == mark).fillna(False).to_numpy(dtype=bool)
        out |= rows & ~currency.isin(allowed).fillna(False).to_numpy(dtype=bool)
    return out


def check_amount(numbers: pd.Series, label: str, field_path: str, reasons: RejectReasons) -> pd.Series:
    """Reject non-finite or absurd amounts; they become NA."""
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        absurd = np.isinf(values) | (np.abs(values) > rules.MAX_ABS_AMOUNT)
    if not absurd.any():
        return numbers
    reasons.add(absurd, field_path, f"column {label!r} is not a finite number of at most {rules.MAX_ABS_AMOUNT:.0e} in size (value not shown)", "VALUE_OUT_OF_BOUNDS")
    return numbers.mask(absurd)


def signed(exact: pa.Array, refund: np.ndarray) -> pa.Array:
    """Values as money moves in GA: purchases (and leads) as written (a negative one is rejected),
    refunds negative whatever sign the export wrote."""
    return pc.if_else(pa.array(refund, type=pa.bool_()), pc.negate(pc.abs(exact)), exact)


def row_money(frame: pd.DataFrame, options) -> tuple[pd.Series, pa.Array, np.ndarray]:
    """Rows the rules never see (outside the window, another shard's): their currency, signed value
    and whether a value was there but cannot be read. Read as the money rule reads them."""
    n = len(frame)
    text = frame["value"] if "value" in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="string")
    values = exact_decimals(text)
    currency = strip(frame["currency"]).str.upper() if "currency" in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="string")
    if options.source.options.get("currency"):
        currency = currency.fillna(str(options.source.options["currency"]).upper())
    refund = (frame["event_name"].astype("string").str.strip() == "refund").fillna(False).to_numpy(dtype=bool) \
        if "event_name" in frame.columns else np.zeros(n, dtype=bool)
    valid = currency.isin(rules.ISO_4217_CODES).fillna(False).to_numpy(dtype=bool)
    present = text.notna().to_numpy(dtype=bool)
    readable = pc.is_valid(values).to_numpy(zero_copy_only=False) & valid
    return currency.where(valid), signed(values, refund), present & ~readable


def count(tally, bucket: str, currency: pd.Series, values: pa.Array, mask: np.ndarray) -> None:
    """Add the rows in `mask` to `bucket` of the tally's money, per currency (one Arrow group-by)."""
    if not mask.any():
        return
    keep = pa.array(mask, type=pa.bool_())
    codes = pa.array(currency.astype("string"), type=pa.string(), from_pandas=True).filter(keep)
    for code, total in sum_by_currency(codes, values.filter(keep)).items():
        tally.add_value(bucket, code, total)
