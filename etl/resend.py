"""`mpetl resend`: send again exactly the events of a run the export lacks, while Google still takes them.

Why only these: reconciliation (marked proof only) names the events of the run that are *missing*
from the export, which it does only once the export shows it processed hits received after their
send plus the arrival grace (etl/reconcile/evidence.py); an event merely *not yet arrived* may still
show up and resending it would double it, so it is left alone and the summary says from when the
export can judge it. Events the BigQuery link excludes are never resent. The missing ones are re-queued (`requeue_for_resend`: sent → planned, flagged
`resent`) and drained by the normal sender, gate and ledger marks, which applies the one window
rule of every run: an event still inside the 72 h window minus its safety margin, by the wall
clock, is sent; an older one is deferred (`expired`), so `mpetl deferred` exports it for GA4 Data
Import. Those are listed in `resend_deferred.csv` too, and make the exit code 3. Every event
sent again carries `mpetl_resend` = this resend's run id (beside `mpetl_run`), so a later
reconciliation tells a late original from its copy and counts the copy with its value.

Like the pipeline, this module wires stages together through their public surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from etl import log
from etl.config import Config
from etl.errors import EXIT_NOT_RECONCILED, EXIT_OK, EXIT_SEND_FAILURES
from etl.policy import RESEND_MARKER_PARAM
from etl.safe_csv import write_csv

DEFERRED_COLUMNS = ["event_date", "event_name", "transaction_id", "source", "sent_run_id", "resend_window_left_h"]


@dataclass(frozen=True)
class ResendResult:
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return int(self.summary["exit_code"])


def run_resend(config: Config, *, run_id: str, out_dir: Path, concurrency: int | None = None) -> ResendResult:
    """Reconcile `run_id`, re-queue its resendable missing events, send them; write resend.json."""
    from etl.destination import credentials, open_transport, send_settings
    from etl.load import PrivacyManifest, open_ledger, send_pending
    from etl.pipeline import new_run_id
    from etl.reconcile import reconcile
    from etl.reconcile.compare import EXCLUDED, MISSING, NOT_YET

    creds = credentials(config)  # first: a wrong one is one line (exit 2) before the ledger is touched
    out_dir.mkdir(parents=True, exist_ok=True)
    wall = datetime.now(UTC)  # Google's clock decides the window: never --now
    before = reconcile(config, out_dir=out_dir / "reconcile_before", run_id=run_id, now=wall)
    events = before.events
    lacking = events[events["state"] == MISSING]
    resend = lacking[lacking["resendable"]]
    too_late = lacking[~lacking["resendable"]]
    write_csv(too_late[DEFERRED_COLUMNS].reset_index(drop=True), out_dir / "resend_deferred.csv")

    resend_run = new_run_id(wall)
    requeued, stats = 0, None
    if len(lacking):
        ledger = open_ledger(config.ledger_location, lock=True)
        try:
            ledger.bind_property(config.property.mp_stream_id, config.destination.endpoint)
            ledger.begin_run(resend_run, "resend")
            ledger.recover_in_flight()
            requeued = ledger.requeue_for_resend(lacking["event_key"].astype(str).tolist(), resend_run)
            settings = send_settings(config, resend_run, concurrency=concurrency, creds=creds)
            with open_transport(config, creds, concurrency=settings.concurrency) as transport:
                stats = send_pending(ledger, transport, settings, manifest=PrivacyManifest())
            ledger.finish_run(resend_run, orjson.dumps({"mode": "resend", "of_run": run_id}).decode())
        finally:
            ledger.close()

    failed = stats.events_failed if stats else 0
    deferred = stats.expired if stats else 0
    exit_code = EXIT_SEND_FAILURES if failed else (EXIT_NOT_RECONCILED if deferred else EXIT_OK)
    waiting = int((events["state"] == NOT_YET).sum())
    summary = {
        "run_id": resend_run if len(lacking) else None,
        "of_run": run_id,
        "verdict_before": before.verdict,
        "missing": len(lacking),
        "not_yet_arrived": waiting,
        "evidence_expected_after": before.totals.get("evidence_expected_after"),
        "watermark": before.evidence.get("watermark"),
        "excluded_from_export": int((events["state"] == EXCLUDED).sum()),
        "missing_value": {c: m["missing_value"] for c, m in before.money_totals.items()},
        "resend_marker": RESEND_MARKER_PARAM,
        "resent": stats.events_sent if stats else 0,
        "requeued": requeued,
        "failed": failed,
        "deferred": deferred,
        "predicted_resendable": len(resend),
        "safety_margin_minutes": config.window.safety_margin_minutes,
        "exit_code": exit_code,
        "note": _note(len(lacking), waiting, before.totals.get("evidence_expected_after"), before.evidence.get("watermark")),
        "files": {"reconcile_before": "reconcile_before/", "deferred": "resend_deferred.csv"},
    }
    (out_dir / "resend.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    log.emit("resend_finished", **{k: v for k, v in summary.items() if k != "files"})
    return ResendResult(summary)


def _note(missing: int, waiting: int, expected_after: str | None, watermark: str | None) -> str:
    """One sentence for the operator: what was resent, and why the rest was left alone."""
    parts = [f"{missing} missing event(s) re-queued" if missing else "nothing proven missing: nothing resent"]
    if waiting:
        parts.append(f"{waiting} not yet arrived left alone: the export shows hits up to {watermark or 'nothing yet'}; "
                     f"they can be judged once it shows hits received after {expected_after} (live traffic, "
                     "`mpetl check`, or the next daily table once its day ends)")
    return "; ".join(parts)
