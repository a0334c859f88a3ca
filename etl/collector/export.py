"""Turn an accepted MP event into one row shaped like GA4's BigQuery export (``events_YYYYMMDD``).

Why mimic the export: reconciliation runs the same SQL against this local store and against the
real BigQuery export, so column names, nesting and value typing must match what Google writes:
``event_params`` as key/value structs (str → string_value, int/bool → int_value, float →
double_value), MP's ``session_id`` as ``ga_session_id``, ``items`` as structs, ``ecommerce`` filled
from the event's params.

Deviations, kept deliberately small: ``ecommerce.currency`` (the real export keeps currency only in
``event_params``; docs/ARCHITECTURE.md asks for it here too) and ``*_in_usd`` fields, filled only
when the currency already is USD (no exchange rates offline). ``stream_id`` is the numeric
data-stream id (as in the export), never the measurement id. The collector keeps no sessions to
attribute from, so ``collected_traffic_source`` and ``session_traffic_source_last_click`` stay null.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from etl.protocol.ga4_row import ga4_row


def export_row(
    event: dict[str, Any],
    body: dict[str, Any],
    *,
    arrival_micros: int,
    zone: zoneinfo.ZoneInfo,
    stream_id: str,
    firebase_app_id: str | None = None,
) -> dict[str, Any]:
    """One stored row: etl.protocol.ga4_row, shared with the historical table so the two always union."""
    return ga4_row(event, body, zone=zone, stream_id=stream_id, arrival_micros=arrival_micros,
                   firebase_app_id=firebase_app_id)
