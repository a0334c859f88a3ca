"""`mpetl resend`: send again exactly the events of a run the export lacks, while Google still takes them.

Why only these: reconciliation (marked proof only) names the events of the run that are *missing*
from the export; an event merely *not yet arrived* may still show up and resending it would
double it. The missing ones are re-queued (`requeue_for_resend`: sent → planned, flagged
`resent`) and drained by the normal sender, gate and ledger marks, which applies the one window
rule of every run: an event still inside the 72 h window minus its safety margin, by the wall
clock, is sent; an older one is deferred (`expired`), so `mpetl deferred` exports it for GA4 Data
Import. Those are listed in `resend_deferred.csv` too, and make the exit code 3.

Like the pipeline, this module wires stages together through their public surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from etl import log
from etl.canary import endpoint_url
from etl.config import API_DATA_MANAGER, Config, read_api_secret
from etl.errors import EXIT_NOT_RECONCILED, EXIT_OK, EXIT_SEND_FAILURES, ConfigError
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
    from etl.load import HttpTransport, PrivacyManifest, RetryPolicy, SendSettings, open_ledger, send_pending
    from etl.pipeline import max_age_micros, new_run_id
    from etl.reconcile import reconcile
    from etl.reconcile.compare import MISSING

    dm = None
    if config.destination.api == API_DATA_MANAGER:  # credentials first (docs/data-manager.md)
        from etl import data_manager

        dm = data_manager.prepare(config, "send", lambda: int(datetime.now(UTC).timestamp() * 1_000_000))
    secret = read_api_secret(config.destination)
    if not secret and dm is None:
        raise ConfigError(str(config.file), "destination.api_secret_file",
                          "no API secret: set MP_API_SECRET or point api_secret_file at a file holding it")
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
        destination = config.destination
        workers = concurrency or destination.concurrency
        ledger = open_ledger(config.ledger_location, lock=True)
        try:
            ledger.bind_property(config.property.measurement_id, destination.endpoint)
            ledger.begin_run(resend_run, "resend")
            ledger.recover_in_flight()
            requeued = ledger.requeue_for_resend(lacking["event_key"].astype(str).tolist(), resend_run)
            settings = SendSettings(
                run_id=resend_run,
                policy=RetryPolicy(destination.max_attempts, destination.backoff_base_s, destination.backoff_max_s),
                concurrency=workers,
                max_age_micros=max_age_micros(config),
                request_deadline_s=destination.request_deadline_s,
                extra_params=config.privacy_extra_params,
            )
            if dm is not None:
                settings = data_manager.send_settings(settings, config, dm, mode="send", concurrency=concurrency)
                with data_manager.transport(config, out_dir, dm, mode="send", concurrency=settings.concurrency) as transport:
                    stats = send_pending(ledger, transport, settings, manifest=PrivacyManifest())
            else:
                with endpoint_url(config, secret) as url:
                    transport = HttpTransport(url, config.property.measurement_id, secret, concurrency=workers,
                                              timeout_s=destination.timeout_s)
                    stats = send_pending(ledger, transport, settings, manifest=PrivacyManifest())
            ledger.finish_run(resend_run, orjson.dumps({"mode": "resend", "of_run": run_id}).decode())
        finally:
            ledger.close()

    failed = stats.events_failed if stats else 0
    deferred = stats.expired if stats else 0
    exit_code = EXIT_SEND_FAILURES if failed else (EXIT_NOT_RECONCILED if deferred else EXIT_OK)
    summary = {
        "run_id": resend_run if len(lacking) else None,
        "of_run": run_id,
        "verdict_before": before.verdict,
        "missing": len(lacking),
        "not_yet_arrived": int((events["state"] == "not_yet_arrived").sum()),
        "resent": stats.events_sent if stats else 0,
        "requeued": requeued,
        "failed": failed,
        "deferred": deferred,
        "predicted_resendable": len(resend),
        "safety_margin_minutes": config.window.safety_margin_minutes,
        "exit_code": exit_code,
        "files": {"reconcile_before": "reconcile_before/", "deferred": "resend_deferred.csv"},
    }
    (out_dir / "resend.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    log.emit("resend_finished", **{k: v for k, v in summary.items() if k != "files"})
    return ResendResult(summary)
