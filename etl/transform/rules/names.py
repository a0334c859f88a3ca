"""Each row's event name: the source's one event, or a per-row name (a refund, an export's event type).

A per-row name can hold anything a source system put there, personal data included, so reasons name
the column and the rule only, never the name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from etl.policy import EVENT_PARAMS
from etl.protocol import rules
from etl.transform.arrow_text import strip
from etl.transform.context import RuleContext


@dataclass(frozen=True)
class EventNames:
    names: pd.Series  # per row
    allowed: frozenset[str]  # the names this source may send
    distinct: list[str]  # the names that occur (usually one)


def apply(ctx: RuleContext) -> EventNames:
    event = ctx.config.event
    if ctx.has("event_name"):
        names = strip(ctx.get("event_name")).fillna(event)
        label = ctx.label("event_name")
    else:  # the source's one event: built once, not filled row by row
        names = pd.Series(pd.arrays.ArrowStringArray(pa.repeat(pa.scalar(event, pa.string()), ctx.n)),
                          index=ctx.frame.index)
        label = "event (config)"
    allowed = frozenset({event, *EVENT_PARAMS, *(ctx.options.extra_params or {})})
    reasons = ctx.reasons
    for name in names.dropna().unique():
        mask = (names == name).to_numpy(dtype=bool)
        if len(name) > rules.MAX_EVENT_NAME_LEN:
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is longer than {rules.MAX_EVENT_NAME_LEN} characters (value not shown)", "VALUE_OUT_OF_BOUNDS")
        elif not rules.NAME_PATTERN.fullmatch(name):
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name must start with a letter and hold only letters, digits and underscores (value not shown)", "NAME_INVALID")
        elif name in rules.RESERVED_EVENT_NAMES or name.startswith(rules.RESERVED_PREFIXES):
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is reserved by Google Analytics (value not shown)", "NAME_RESERVED")
        elif name not in allowed:
            reasons.add(mask, "events[0].name", f"column {label!r}: the event name is not in this source's allowlist (its configured event, purchase, refund, the lead events, or [privacy] extra_params) (value not shown)", "NOT_ALLOWED")
    return EventNames(names=names, allowed=allowed, distinct=[str(x) for x in names.dropna().unique()])
