"""Extra params (`param.<name>` columns) and the allowlist of the core params, per row's event.

A param rides only where the row's event allows it: an extractor's default mapping (e.g. a CRM's Lead
Source) never rides on an event whose allowlist lacks it; configured params were checked against the
allowlist before the run started. A core param (transaction_id, value, items) on an event whose
allowlist lacks it rejects the row, naming the column: the sender would stop the whole run on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.policy import NUMERIC_PARAMS, allowed_params
from etl.protocol import rules
from etl.transform.arrow_text import blank, strip
from etl.transform.context import Param, RuleContext
from etl.transform.numbers import parse_decimal
from etl.transform.rules import privacy
from etl.transform.rules.money import Money, check_amount
from etl.transform.rules.names import EventNames

PREFIX = "param."


def apply(ctx: RuleContext, names: EventNames, transaction_id: pd.Series, money: Money) -> list[Param]:
    extra = _extra_params(ctx, names)
    present = {
        "transaction_id": transaction_id.notna().to_numpy(dtype=bool),
        "value": money.value_given,
        "items": ~blank(ctx.get("items")) if ctx.has("items") else np.zeros(ctx.n, dtype=bool),
    }
    _check_core_params(ctx, names, present)
    return extra


def _extra_params(ctx: RuleContext, names: EventNames) -> list[Param]:
    out = []
    extra_params = ctx.options.extra_params
    for column in ctx.frame.columns:
        if not column.startswith(PREFIX):
            continue
        pname = column.removeprefix(PREFIX)
        label = ctx.label(column)
        allowing = [e for e in names.distinct if pname in allowed_params(e, extra_params)]
        if not allowing:
            ctx.tally.params_not_allowed[pname] = int(ctx.frame[column].notna().sum())
            continue
        field_path = f"events[0].params.{pname}"
        if pname in NUMERIC_PARAMS:
            numbers, invalid = parse_decimal(ctx.frame[column])
            ctx.reasons.add(invalid, field_path, f"column {label!r} is not a number", "VALUE_INVALID")
            numbers = check_amount(numbers, label, field_path, ctx.reasons)
            out.append(Param(pname, numbers.where(names.names.isin(allowing)), "number"))
        else:
            text = strip(ctx.frame[column])
            ctx.reasons.add((text.str.len() > rules.MAX_PARAM_VALUE_LEN).fillna(False), field_path, f"column {label!r} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS")
            scanned = privacy.scan(ctx, text.where(names.names.isin(allowing)), label=label, field_path=field_path,
                                   droppable=True)
            out.append(Param(pname, scanned, "text"))
    return out


def _check_core_params(ctx: RuleContext, names: EventNames, present: dict[str, np.ndarray]) -> None:
    extra_params = ctx.options.extra_params
    for pname, given in present.items():
        if not given.any():
            continue
        # Only names that are allowed events yet lack this param (rows whose event name is itself outside
        # the allowlist already carry that reason); usually there are none and no row is looked at.
        lacking = [e for e in names.distinct if e in names.allowed and pname not in allowed_params(e, extra_params)]
        if not lacking:
            continue
        outside_list = given & names.names.isin(lacking).to_numpy(dtype=bool)
        ctx.reasons.add(outside_list, f"events[0].params.{pname}", f"column {ctx.label(pname)!r}: {pname} is not in the allowlist for this row's event (declare it under [privacy] extra_params)", "NOT_ALLOWED")
