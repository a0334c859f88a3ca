"""`items` (POS exports): JSON arrays of item objects, parsed per order — only sources with line items
pay for it. Only item params in the allowlist leave; every kept value is checked the way GA4's
validator will check it at send time, so a row that would fail is rejected here, with the item field
named, instead of failing the send gate every night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from etl.policy import ITEM_PARAMS
from etl.protocol import rules
from etl.transform.context import Param, RuleContext
from etl.transform.rules import privacy

FIELD = "events[0].params.items"
_ITEM_AMOUNT_KEYS = frozenset({"price", "discount"})
_ITEM_INTEGER_KEYS = frozenset({"quantity", "index"})


@dataclass(frozen=True)
class Items:
    items: pd.Series | None  # the kept items as JSON text per row; None: the source maps no items
    params: list[Param]


def apply(ctx: RuleContext) -> Items:
    if not ctx.has("items"):
        return Items(None, [])
    label = ctx.label("items")
    items, strings, positions = _normalise(ctx, ctx.frame["items"], label)
    hit_rows = privacy.rows_hit(ctx, strings, positions)
    ctx.reasons.add(hit_rows, FIELD, f"column {label!r} holds personal data in an item; the value is not shown and was not sent", "PERSONAL_DATA")
    return Items(items, [Param("items", items, "json")])


def _normalise(ctx: RuleContext, items: pd.Series, label: str) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Parse, check and re-serialise item arrays; also every kept string value with its row position,
    for the personal-data scan (collected here, so each order's items are parsed once).

    No nested lists or objects are kept: they could carry personal data the scan does not reach.
    """
    n = len(items)
    out = pd.Series(pd.NA, index=items.index, dtype="string")
    strings: list[str] = []
    positions: list[int] = []
    bad_json = np.zeros(n, dtype=bool)
    too_many = np.zeros(n, dtype=bool)
    no_id = np.zeros(n, dtype=bool)
    problems: dict[tuple[str, str], np.ndarray] = {}
    dropped_keys = ctx.tally.item_keys_not_sent
    for pos, text in enumerate(items.to_numpy()):
        if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
            continue
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            bad_json[pos] = True  # also numbers too large for a double ("number is infinity")
            continue
        if not isinstance(parsed, list) or not all(isinstance(i, dict) for i in parsed):
            bad_json[pos] = True
            continue
        if len(parsed) > rules.MAX_ITEMS_PER_EVENT:
            too_many[pos] = True
            continue
        clean = []
        for item in parsed:
            kept = {k: v for k, v in item.items() if k in ITEM_PARAMS and v is not None and v != ""}
            for k in item.keys() - ITEM_PARAMS:
                dropped_keys[k] += 1
            if "item_id" not in kept and "item_name" not in kept:
                no_id[pos] = True
            for k, v in kept.items():
                problem = _value_problem(k, v)
                if problem is not None:
                    problems.setdefault(problem, np.zeros(n, dtype=bool))[pos] = True
                elif isinstance(v, str):
                    strings.append(v)
                    positions.append(pos)
                elif k in _ITEM_INTEGER_KEYS and type(v) is float:
                    kept[k] = int(v)  # a spreadsheet's 2.0: GA4 wants the integer 2
            clean.append(kept)
        out.iat[pos] = orjson.dumps(clean).decode()
    reasons = ctx.reasons
    reasons.add(bad_json, FIELD, f"column {label!r} does not hold a list of items (or holds a number too large to read)", "VALUE_INVALID")
    reasons.add(too_many, FIELD, f"more than {rules.MAX_ITEMS_PER_EVENT} items in one event", "EXCEEDED_MAX_ENTITIES")
    reasons.add(no_id, FIELD, "every item needs item_id or item_name", "VALUE_REQUIRED")
    for (rule, code), mask in problems.items():
        reasons.add(mask, FIELD, f"column {label!r}: {rule} (value not shown)", code)
    return out, pd.Series(strings, dtype="string"), np.asarray(positions, dtype=np.int64)


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
        return None
    if key in _ITEM_INTEGER_KEYS:
        if kind is bool or kind not in (int, float) or (kind is float and not (math.isfinite(v) and v.is_integer())):
            return f"item field {key} is not a whole number", "VALUE_INVALID"
        if abs(v) > rules.MAX_ITEM_QUANTITY:
            return f"item field {key} is larger than {rules.MAX_ITEM_QUANTITY:,}", "VALUE_OUT_OF_BOUNDS"
        return None
    if kind is str:
        if len(v) > rules.MAX_PARAM_VALUE_LEN:
            return f"item field {key} is longer than {rules.MAX_PARAM_VALUE_LEN} characters", "VALUE_OUT_OF_BOUNDS"
        return None
    if kind is bool or kind not in (int, float) or not math.isfinite(v):
        return f"item field {key} is not text or a finite number", "VALUE_INVALID"
    return None
