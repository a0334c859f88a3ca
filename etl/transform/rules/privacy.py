"""Personal data in what leaves: a value that looks like an email, phone, card… rejects its row (or,
for a droppable param with `on_pii = "drop"`, is blanked and counted). Reasons name the column and
the detector, never the value.

`apply` scans the outgoing strings no param rule owns: `transaction_id` and `user_id` (sent only when
the source opts in, and shorter than GA4's limit). `scan` is what the param rules call for theirs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.protocol import rules
from etl.transform.arrow_text import strip
from etl.transform.context import RuleContext
from etl.transform.privacy import detect_personal_data


def apply(ctx: RuleContext, transaction_id: pd.Series) -> pd.Series | None:
    """Scan the transaction id; return the user_id to send (None: the source sends none)."""
    scan(ctx, transaction_id, label=ctx.label("transaction_id"), field_path="events[0].params.transaction_id")
    if not (ctx.config.send_user_id and ctx.has("user_id")):
        return None
    label = ctx.label("user_id")
    user_id = scan(ctx, strip(ctx.get("user_id")), label=label, field_path="user_id")
    ctx.reasons.add((user_id.str.len() >= rules.MAX_USER_ID_LEN).fillna(False), "user_id",
                    f"column {label!r} must be shorter than {rules.MAX_USER_ID_LEN} characters", "VALUE_OUT_OF_BOUNDS")
    return user_id


def scan(ctx: RuleContext, values: pd.Series, *, label: str, field_path: str, droppable: bool = False) -> pd.Series:
    """Reject (or blank, when droppable and the source says drop) values that look like personal data."""
    detected = detect_personal_data(values)
    hits = detected.notna().to_numpy(dtype=bool)
    if not hits.any():
        return values
    drop = droppable and ctx.config.on_pii == "drop"
    for name in pd.unique(detected[hits]):
        mask = hits & (detected == name).fillna(False).to_numpy(dtype=bool)
        ctx.tally.detectors[name] += int(mask.sum())
        if drop:
            ctx.tally.pii_dropped[label] += int(mask.sum())
        else:
            ctx.reasons.add(mask, field_path, f"column {label!r} looks like personal data (detector: {name}); the value is not shown and was not sent", "PERSONAL_DATA")
    return values.mask(hits) if drop else values


def rows_hit(ctx: RuleContext, strings: pd.Series, positions: np.ndarray) -> np.ndarray:
    """Rows (by position) of which any of `strings` looks like personal data; detectors counted."""
    hit_rows = np.zeros(ctx.n, dtype=bool)
    if not len(strings):
        return hit_rows
    detected = detect_personal_data(strings)
    hit_rows[positions[detected.notna().to_numpy(dtype=bool)]] = True
    if hit_rows.any():
        for name, count in detected.dropna().value_counts().items():
            ctx.tally.detectors[name] += int(count)
    return hit_rows
