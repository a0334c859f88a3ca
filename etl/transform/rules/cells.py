"""Cells the reader refused: a cell over the source's `max_field_bytes` (default 1 MiB) rejects its row.

Why a rule and not an extract error: one 9 MB cell used to cost its whole 1,000-row source. The
extractor blanks such a cell and says why in `cell_problem` (column named, never the value); the row is
rejected here and the file goes on.
"""

from __future__ import annotations

from etl.transform.context import RuleContext


def apply(ctx: RuleContext) -> None:
    if not ctx.has("cell_problem"):
        return
    problem = ctx.get("cell_problem").astype("string")
    for why in problem.dropna().unique():
        ctx.reasons.add((problem == why).fillna(False).to_numpy(dtype=bool), "events[0]", why, "VALUE_OUT_OF_BOUNDS")
