"""Is the export there to judge a date? Checked before any verdict.

Why first: an export that is paused, unlinked, expired or capped holds none (or only part) of a
day's events, and every sent event would read as "missing". A date can be judged only when its
daily table (`events_YYYYMMDD`) or its intraday table (`events_intraday_YYYYMMDD`) exists and holds
rows, and the daily table is below the daily export limit of a standard property (1M events a
day; above it Google stops the daily export). Otherwise the verdict for that date is "export not
available" (exit 6), never a list of missing events.
"""

from __future__ import annotations

from dataclasses import dataclass

STANDARD_DAILY_CAP = 1_000_000

EXPORT_DAILY = "daily"
EXPORT_INTRADAY = "intraday"
EXPORT_ABSENT = "absent"
EXPORT_CAPPED = "capped"
AVAILABLE = frozenset({EXPORT_DAILY, EXPORT_INTRADAY})


@dataclass(frozen=True)
class DateHealth:
    """The export's state for one event date; `reason` is a sentence for people when not available."""

    event_date: str
    state: str
    daily_rows: int
    intraday_rows: int
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.state in AVAILABLE


def check_export(counts: dict[str, int], dates: list[str], *, daily_cap: int) -> dict[str, DateHealth]:
    """One `DateHealth` per date from the rows per table suffix (`daily_cap` 0: no cap, e.g. GA4 360)."""
    out: dict[str, DateHealth] = {}
    for d in dates:
        daily, intraday = int(counts.get(d, 0)), int(counts.get(f"intraday_{d}", 0))
        if daily == 0 and intraday == 0:
            state, reason = EXPORT_ABSENT, (
                f"no events_{d} or events_intraday_{d} table with rows: the export is not linked, paused, "
                "expired, or has not written this date yet"
            )
        elif daily_cap and daily >= daily_cap:
            state, reason = EXPORT_CAPPED, (
                f"events_{d} holds {daily:,} rows, the daily export limit ({daily_cap:,}): Google stops "
                "exporting a standard property's day there, so events beyond it are not in the table"
            )
        else:
            state, reason = (EXPORT_DAILY if daily else EXPORT_INTRADAY), ""
        out[d] = DateHealth(d, state, daily, intraday, reason)
    return out
