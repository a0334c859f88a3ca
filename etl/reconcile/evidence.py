"""When may an absent event be called missing? Only once the export shows it processed later hits.

Why evidence and not a clock: Google's daily tables are updated "for up to three days after the
dates of the events" (GA4 BigQuery export schema, developers.google.com/analytics/bigquery/event-schema),
and the streaming export is best effort with minutes of latency. An event sent at T and absent at
T + 3 h may simply not be processed yet; resending it then puts a late original beside the copy
(the export keeps both rows). So an event sent at T is `missing` (and resendable) only when the export
shows it has processed hits *received after* T + `arrival_grace`; before that it is `not_yet_arrived`.

The export's evidence is its **watermark**: the newest instant it has provably processed, the later of
- the newest `event_timestamp` in any export table (daily or intraday) from the day before the first
  send on.
  Live site traffic is stamped at about its receipt time, so a hit stamped W was received at ≥ W:
  the export has processed hits received up to W. Our own backdated events never move it past their
  own send (their timestamps lie before it), and `mpetl check`'s canary, stamped when sent, counts
  like live traffic.
- the end (property zone) of the newest **daily** table's date, once that day has ended: Google
  writes `events_D` after D ends, with everything received by then. This is the evidence an
  MP-only property (no live traffic) gets: a later date's daily table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from etl.reconcile.provisional import end_of_day


@dataclass(frozen=True)
class Watermark:
    """What a backend reads: the export's newest event time (µs UTC) and newest daily table (YYYYMMDD)."""

    newest_event_micros: int | None
    newest_daily: str | None


@dataclass(frozen=True)
class Evidence:
    """The instant up to which the export has provably processed hits (None: no evidence at all)."""

    micros: int | None
    source: str
    newest_event_micros: int | None
    newest_daily: str | None

    def to_dict(self, arrival_grace_minutes: float) -> dict[str, object]:
        """reconciliation.json's `evidence`: the watermark, where it comes from, what it can judge."""
        judged = None if self.micros is None else self.micros - int(arrival_grace_minutes * 60_000_000)
        return {
            "watermark": iso(self.micros),
            "from": self.source,
            "newest_event_timestamp": iso(self.newest_event_micros),
            "newest_daily_table": f"events_{self.newest_daily}" if self.newest_daily else None,
            "arrival_grace_minutes": arrival_grace_minutes,
            "judges_events_sent_before": iso(judged),
        }


def evidence_of(watermark: Watermark, *, timezone: str, now: datetime) -> Evidence:
    """The watermark's evidence instant: the newest event time, or a finished day's daily table."""
    candidates: list[tuple[int, str]] = []
    if watermark.newest_event_micros is not None:
        candidates.append((watermark.newest_event_micros, "newest event_timestamp in the export"))
    if watermark.newest_daily:
        ended = end_of_day(watermark.newest_daily, timezone)
        if ended <= now:  # a daily table of a day not yet over (fresh daily, the local store) proves no more than its rows
            candidates.append((int(ended.timestamp() * 1_000_000), f"daily table events_{watermark.newest_daily}"))
    if not candidates:
        return Evidence(None, "none: the export holds nothing from these dates on", watermark.newest_event_micros,
                        watermark.newest_daily)
    micros, source = max(candidates)
    return Evidence(micros, source, watermark.newest_event_micros, watermark.newest_daily)


def iso(micros: int | None) -> str | None:
    """µs since the epoch as `2026-11-23T12:00:00Z` (seconds), None stays None."""
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
