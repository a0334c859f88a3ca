"""When: the event time as exact integer UTC micros (parsed once, in `scope`), checked here.

A time later than the wall clock plus `future_tolerance_minutes` is rejected, whatever `--now` or
`--until` select (`scope` keeps such rows in for this rule). One within the tolerance (clock skew
between the CRM and us) is sent timed at the wall clock: Google wants `timestamp_micros` ≤ the request
time (the MP use-cases guide's requirements table: "<= request time",
https://developers.google.com/analytics/devguides/collection/protocol/ga4/use-cases), and every request
leaves after this moment. The dedupe key keeps the time the row holds, so a rerun finds the same event.

Age is not judged here: the ledger defers what the wall clock says is too old when it plans, and the
sender expires what aged out before it could leave (Google's clock, not --now).
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass

import numpy as np

from etl.transform.arrow_text import blank, strip
from etl.transform.context import RuleContext, TransformOptions

MICROS_PER_MINUTE = 60_000_000


@dataclass(frozen=True)
class Times:
    micros: np.ndarray  # int64 per row as the row says, the wall clock where unreadable (rejected rows)
    sent: np.ndarray  # what the event carries: `micros`, but never after the wall clock


def future_limit(options: TransformOptions) -> int:
    """The latest event time accepted: the wall clock plus the tolerance for clock skew."""
    return options.wall_micros + int(options.window.future_tolerance_minutes * MICROS_PER_MINUTE)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def apply(ctx: RuleContext) -> Times:
    reasons, window, wall = ctx.reasons, ctx.options.window, ctx.options.wall_micros
    ts_blank = blank(ctx.get("timestamp"))
    if ctx.has("time_unknown"):  # a refund timed when first seen (scope): its empty time is no fault
        ts_blank &= ctx.frame["time_unknown"].isna().to_numpy(dtype=bool)
    ts_na = ctx.times.isna().to_numpy(dtype=bool)
    label = ctx.label("timestamp")
    bad_zone = np.zeros(ctx.n, dtype=bool)
    if ctx.has("timezone"):
        zones = strip(ctx.frame["timezone"])
        bad_zone = (zones.notna() & ~zones.isin(_known_zones())).to_numpy(dtype=bool)
        reasons.add(bad_zone, "events[0].timestamp_micros", f"column {ctx.label('timezone')!r} is not a time zone this tool knows", "VALUE_INVALID")
    reasons.add(ts_blank, "events[0].timestamp_micros", f"column {label!r} is empty: a conversion needs its time", "VALUE_REQUIRED")
    reasons.add(~ts_blank & ts_na & ~bad_zone, "events[0].timestamp_micros", f"column {label!r} is not a date/time this tool can read", "VALUE_INVALID")
    micros = ctx.times.fillna(wall).astype("int64").to_numpy()
    reasons.add(
        ~ts_na & (micros > future_limit(ctx.options)),
        "events[0].timestamp_micros",
        f"column {label!r} is in the future (beyond {window.future_tolerance_minutes:g} min of clock skew)",
        "VALUE_OUT_OF_BOUNDS",
    )
    return Times(micros, np.minimum(micros, wall) if (micros > wall).any() else micros)
