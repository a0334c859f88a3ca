"""Rows that are not conversions: the extractor's `skip_reason` (a deal not in a won stage, an order
not paid: `NOT_A_CONVERSION`) and `[sources.filter]` (only the rows whose column holds one of the
allowed values: `FILTERED`). Both are *filtered*, not rejected: nothing is wrong with the data.

Why here and not in the extract: a row left out must not vanish. It is counted in `filtered`, by
reason, so `rows_in` still balances and the summary says how many were left out and why. The reason names the
column and the rule, never the cell (a CRM column may hold anything). Filter values match
case-insensitively and trimmed, the way a person reads "Closed Won" vs " closed won".
"""

from __future__ import annotations

from etl.transform.context import RuleContext

FILTER_PREFIX = "filter."  # the extract carries each filter column as `filter.<column>`


def apply(ctx: RuleContext) -> None:
    if ctx.has("skip_reason"):
        skip = ctx.get("skip_reason").astype("string")
        for why in skip.dropna().unique():
            ctx.reasons.filter((skip == why).fillna(False), "events[0].name", f"not a conversion: {why}",
                               "NOT_A_CONVERSION")
    for column, allowed in ctx.config.filter.items():
        name = FILTER_PREFIX + column
        if not ctx.has(name):
            continue  # the extract refuses a source whose filter column is missing: nothing to do here
        wanted = {str(v).strip().casefold() for v in allowed}
        values = ctx.frame[name].astype("string").str.strip().str.casefold()
        keep = values.isin(wanted).fillna(False).to_numpy(dtype=bool)
        shown = ", ".join(repr(v) for v in allowed)
        ctx.reasons.filter(~keep, "events[0]", f"column {column!r} is not one of the allowed values ({shown}) in "
                           "[sources.filter]", "FILTERED")
