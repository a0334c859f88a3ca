"""`timestamp_micros`: an instant as integer microseconds since the Unix epoch.

Integer arithmetic on the timedelta, never `timestamp() * 1e6`: a float loses the microseconds that
reconciliation matches events by. A naive datetime is taken as UTC, as the CLI documents for --now.
"""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
