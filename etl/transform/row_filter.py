"""`[sources.filter]`: keep only the rows whose column holds one of the allowed values.

Why in the transform and not the extract: a filtered row must not vanish. It leaves as a reject with
code `FILTERED` so `rows_in` still balances and the summary says how many were filtered. The reason
names the column and the rule, never the cell (a CRM column may hold anything).
Values match case-insensitively and trimmed, the way a person reads "Closed Won" vs " closed won".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from etl.transform.reasons import RejectReasons

FILTER_PREFIX = "filter."  # the extract carries each filter column as `filter.<column>`


def apply_row_filter(frame: pd.DataFrame, filters: Mapping[str, Sequence[str]], reasons: RejectReasons) -> None:
    """Add a FILTERED reason for each row whose filter column is not one of its allowed values."""
    for column, allowed in filters.items():
        name = FILTER_PREFIX + column
        if name not in frame.columns:
            continue  # the extract refuses a source whose filter column is missing: nothing to do here
        wanted = {str(v).strip().casefold() for v in allowed}
        values = frame[name].astype("string").str.strip().str.casefold()
        keep = values.isin(wanted).fillna(False).to_numpy(dtype=bool)
        shown = ", ".join(repr(v) for v in allowed)
        reasons.add(~keep, "events[0]", f"column {column!r} is not one of the allowed values ({shown}) in [sources.filter]",
                    "FILTERED")
