"""`value` and `currency`: a plain decimal the extractor normalised, and an ISO 4217 code.

An amount that is not a finite number of sane size (a 400-digit cell parses to infinity) rejects its
row: infinity is no JSON number, and left in it would crash the sender on every later run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.protocol import rules
from etl.transform.arrow_text import strip
from etl.transform.context import Param, RuleContext
from etl.transform.numbers import parse_decimal
from etl.transform.reasons import RejectReasons


@dataclass(frozen=True)
class Money:
    value: pd.Series  # float64, NaN where absent or rejected
    value_given: np.ndarray  # the cell held something (a number or not): the param is present
    currency: pd.Series
    params: list[Param]


def apply(ctx: RuleContext) -> Money:
    reasons = ctx.reasons
    value, value_invalid = parse_decimal(ctx.get("value"))
    reasons.add(value_invalid, "events[0].params.value", f"column {ctx.label('value')!r} is not a number", "VALUE_INVALID")
    value = check_amount(value, ctx.label("value"), "events[0].params.value", reasons)
    currency = strip(ctx.get("currency")).str.upper()
    if ctx.config.options.get("currency"):
        currency = currency.fillna(str(ctx.config.options["currency"]).upper())
    has_value = value.notna().to_numpy(dtype=bool)
    cur_blank = currency.isna().to_numpy(dtype=bool)
    label = ctx.label("currency")
    reasons.add(has_value & cur_blank, "events[0].params.currency", f"currency is required with value: column {label!r} is empty", "VALUE_REQUIRED")
    reasons.add(~cur_blank & ~currency.isin(rules.ISO_4217_CODES).fillna(False).to_numpy(dtype=bool), "events[0].params.currency", f"column {label!r} is not an ISO 4217 currency code", "VALUE_INVALID")
    given = has_value | value_invalid.to_numpy(dtype=bool)
    # Validated ISO 4217 codes need no escaping.
    return Money(value, given, currency, [Param("value", value, "number"), Param("currency", currency, "plain")])


def check_amount(numbers: pd.Series, label: str, field_path: str, reasons: RejectReasons) -> pd.Series:
    """Reject non-finite or absurd amounts; they become NA."""
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        absurd = np.isinf(values) | (np.abs(values) > rules.MAX_ABS_AMOUNT)
    if not absurd.any():
        return numbers
    reasons.add(absurd, field_path, f"column {label!r} is not a finite number of at most {rules.MAX_ABS_AMOUNT:.0e} in size (value not shown)", "VALUE_OUT_OF_BOUNDS")
    return numbers.mask(absurd)
