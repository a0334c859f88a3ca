"""`transaction_id`: required for purchase and refund, the dedupe key for every event, and the join
key of reconciliation (so an id holding control characters is corrupt, not merely odd)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from etl.protocol import rules
from etl.transform.arrow_text import arrow_strings, bool_numpy, holds_any_byte, strip
from etl.transform.context import RuleContext
from etl.transform.rules.names import EventNames

ECOMMERCE_EVENTS = ("purchase", "refund")
FIELD = "events[0].params.transaction_id"


def apply(ctx: RuleContext, names: EventNames) -> pd.Series:
    tid = strip(ctx.get("transaction_id"))
    label = ctx.label("transaction_id")
    is_ecommerce = names.names.isin(ECOMMERCE_EVENTS).to_numpy(dtype=bool)
    ctx.reasons.add(is_ecommerce & tid.isna().to_numpy(dtype=bool), FIELD, f"transaction_id is required for purchase and refund: column {label!r} is empty", "VALUE_REQUIRED")
    ctx.reasons.add((tid.str.len() > rules.MAX_PARAM_VALUE_LEN).fillna(False), FIELD, f"column {label!r} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS")
    ctx.reasons.add(_holds_control_characters(tid), FIELD, f"column {label!r} holds control characters", "VALUE_INVALID")
    return tid


def _holds_control_characters(values: pd.Series) -> np.ndarray:
    text = arrow_strings(values)
    if not holds_any_byte(text, "\x7f", controls=True):
        return np.zeros(len(values), dtype=bool)
    return bool_numpy(pc.match_substring_regex(text, r"[\x00-\x1f\x7f]"))
