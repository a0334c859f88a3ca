"""`reconcile()`: read the ledger, check the export is there, ask it, compare, decide, write reports.

Why the export is asked for one day either side of the sent dates: an event whose date the export
places across midnight (a zone mismatch between sender and property) should be reported as found
on another date, not as missing. Its watermark (evidence.py) is read over every table from the day before
the first send on: live traffic of today proves what yesterday's events could not.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from etl.config import Config
from etl.reconcile.compare import Scope, Timing, Tolerance, compare
from etl.reconcile.evidence import Watermark, evidence_of
from etl.reconcile.export_backend import ExportBackend, empty_export, find_export_backend
from etl.reconcile.export_scope import ExportScope, export_scope
from etl.reconcile.health import DateHealth, check_export
from etl.reconcile.ledger_reader import known_keys, open_ledger_for_reconcile, read_sent
from etl.reconcile.presentation import not_sent_of_runs, reconcile_next_steps
from etl.reconcile.provisional import as_utc, end_of_day, is_provisional
from etl.reconcile.reports import write_reports
from etl.reconcile.result import Reconciliation, decide_verdict


def reconcile(
    config: Config,
    *,
    out_dir: Path,
    run_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
    now: datetime | None = None,
    backend: ExportBackend | None = None,
) -> Reconciliation:
    """Compare the ledger's sent events (of `run_id` and/or event dates `since`..`until`) with the export.

    Raises an `MpetlError` subclass (exit 2) when the ledger or the export cannot be read. With
    neither a run nor dates, the most recent delivering run is reconciled.
    """
    now_utc = as_utc(now)
    export_backend = backend or find_export_backend(config)
    zone = config.property.timezone
    con = open_ledger_for_reconcile(config.ledger_location)
    try:
        selection = read_sent(con, run_id=run_id, since=since, until=until)
        sent = selection.events
        dates = sorted(sent["event_date"].dropna().unique().tolist())
        health: dict[str, DateHealth] = {}
        counts = export_backend.table_counts(_with_neighbours(dates)) if dates else {}
        if dates:
            health = check_export(counts, dates, daily_cap=_daily_cap(config))
        if counts:  # with no table at all, asking for events would only fail
            export = export_backend.events_for(_with_neighbours(dates), sent["event_name"].dropna().unique().tolist())
            watermark = export_backend.watermark(_watermark_since(sent, zone))
        else:
            export, watermark = empty_export(), Watermark(None, None)
        evidence = evidence_of(watermark, timezone=zone, now=now_utc)
        scope = export_scope(config) if dates else ExportScope(Scope(), "-")
        run_ids = {selection.run_id} if selection.run_id else set(sent["sent_run_id"].dropna())
        hours = config.reconcile.provisional_hours
        provisional = {d: is_provisional(d, timezone=zone, provisional_hours=hours, now=now_utc) for d in dates}
        final_at = {d: (end_of_day(d, zone) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in dates}
        comparison = compare(
            sent,
            export,
            run_ids=run_ids,
            provisional=provisional,
            available={d: h.available for d, h in health.items()},
            tolerance=Tolerance(config.reconcile.tolerance, config.reconcile.tolerance_value),
            timing=Timing(
                now=now_utc,
                wall_now=datetime.now(UTC),
                arrival_grace_minutes=_arrival_grace(config),
                max_age_hours=config.window.max_age_hours,
                safety_margin_minutes=config.window.safety_margin_minutes,
                evidence_micros=evidence.micros,
            ),
            ledger_knows=lambda keys: known_keys(con, keys),
            scope=scope.scope,
            final_at=final_at,
        )
        per_date = comparison.dates
        per_date["export"] = per_date["event_date"].map(lambda d: health[d].state)
        per_date["export_available"] = per_date["event_date"].map(lambda d: health[d].available).astype(bool)
        per_date["export_rows"] = per_date["event_date"].map(lambda d: health[d].daily_rows + health[d].intraday_rows)
        per_date["export_reason"] = per_date["event_date"].map(lambda d: health[d].reason)
        # The runs that planned or delivered these events: their summaries say what they did not send.
        behind = {selection.run_id} | set(sent["run_id"].dropna()) | set(sent["sent_run_id"].dropna())
        runs = con.run_summaries([str(r) for r in behind if r])
    finally:
        con.close()

    result = Reconciliation(
        verdict=decide_verdict(comparison.dates),
        run_id=selection.run_id,
        selection={
            "run_id": run_id,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        settings={
            "backend": getattr(export_backend, "name", type(export_backend).__name__),
            "tolerance": config.reconcile.tolerance,
            "tolerance_value": config.reconcile.tolerance_value,
            "provisional_hours": config.reconcile.provisional_hours,
            "timezone": zone,
            "arrival_grace_minutes": _arrival_grace(config),
            "daily_export_cap": _daily_cap(config),
            "export_scope": scope.to_dict(),
        },
        generated_at=now_utc.isoformat(timespec="seconds"),
        dates=comparison.dates,
        rows=comparison.rows,
        missing=comparison.missing,
        duplicates=comparison.duplicates,
        extras=comparison.extras,
        totals=comparison.totals,
        events=comparison.events,
        money=comparison.money,
        money_totals=comparison.money_totals,
        evidence=evidence.to_dict(_arrival_grace(config)),
        not_sent=not_sent_of_runs(runs),
    )
    result.next_steps = reconcile_next_steps(result, config_file=config.file, out_dir=out_dir)
    write_reports(result, Path(out_dir))
    return result


def _arrival_grace(config: Config) -> float:
    """Minutes after sending before an absent event counts as missing ([reconcile] arrival_grace_minutes)."""
    return float(config.reconcile.arrival_grace_minutes)


def _daily_cap(config: Config) -> int:
    """Rows at which a daily table is taken as capped ([reconcile] daily_export_cap; 0 = no cap, GA4 360)."""
    return int(config.reconcile.daily_export_cap)


def _watermark_since(sent, zone: str) -> str:
    """The first table that can hold evidence: the day before the earliest send, in the property zone.

    Hits received after a send are stamped on or after its day, so older tables cannot move the
    watermark; on BigQuery this bounds what the watermark query reads (one INT64 column a row).
    """
    first_send = pd.to_datetime(pd.to_numeric(sent["sent_at_micros"], errors="coerce").min(), unit="us", utc=True)
    return (first_send.tz_convert(zone) - timedelta(days=1)).strftime("%Y%m%d")


def _with_neighbours(dates: list[str]) -> list[str]:
    """The dates plus the day before and after each."""
    out: set[str] = set()
    for d in dates:
        day = datetime.strptime(d, "%Y%m%d")
        out.update((day + timedelta(days=k)).strftime("%Y%m%d") for k in (-1, 0, 1))
    return sorted(out)
