"""Which event dates are still provisional in the export.

Why: GA4 keeps processing a day's events (late hits, the 72 h backdating window, intraday →
daily) for a while after the day ends, so a shortfall on a young day is expected and must not fail
a nightly job. A day is final once `provisional_hours` have passed since its end (midnight that
closes it, in the property's reporting zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def end_of_day(event_date: str, timezone: str) -> datetime:
    """The instant the YYYYMMDD day ends in `timezone` (the next local midnight), as UTC."""
    day = datetime.strptime(event_date, "%Y%m%d")
    next_midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone)) + timedelta(days=1)
    # Arithmetic on an aware datetime keeps wall time; rebuild so a DST day gets its true length.
    next_midnight = datetime(next_midnight.year, next_midnight.month, next_midnight.day, tzinfo=ZoneInfo(timezone))
    return next_midnight.astimezone(UTC)


def is_provisional(event_date: str, *, timezone: str, provisional_hours: float, now: datetime) -> bool:
    """True while fewer than `provisional_hours` have passed since `event_date` ended."""
    return now < end_of_day(event_date, timezone) + timedelta(hours=provisional_hours)


def as_utc(now: datetime | None) -> datetime:
    """`now` as an aware UTC instant; a naive value is taken to be UTC already."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
