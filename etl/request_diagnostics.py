"""`mpetl reconcile`'s early signal for the Data Manager API: what Google's request diagnostics say.

Reconciliation proves arrival from the export; with `api = "data_manager"` Google also reports, per
request, whether records failed in asynchronous processing (etl/load/datamanager/diagnostics.py). This
reads the request ids the ledger kept for the reconciled run's events (`request_id`), asks
`requestStatus:retrieve` for each, and writes `request_status.json` beside the reconciliation reports.
It is a signal, never a verdict: an unreachable endpoint or a refused token only says so. The local
endpoint that `endpoint = "local"` starts lives only during a run, so there is nothing to ask then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from etl.config import API_DATA_MANAGER, Config
from etl.errors import MpetlError
from etl.load import open_ledger


def early_signal(config: Config, out_dir: Path, *, run_id: str | None = None) -> dict[str, Any] | None:
    """Request statuses of the run's requests (the latest delivering run without `run_id`); None for MP."""
    if config.destination.api != API_DATA_MANAGER:
        return None
    from etl.load.datamanager import TokenSource, load_credentials, request_statuses

    if config.destination.endpoint == "local":
        result: dict[str, Any] = {"skipped": "the local endpoint runs only during a run"}
    else:
        with open_ledger(config.ledger_location, read_only=True) as ledger:
            rows = ledger.inspect()
        sent = rows[(rows["status"] == "sent") & rows["request_id"].notna()]
        if run_id is None and len(sent):
            run_id = sorted(sent["sent_run_id"].dropna())[-1]
        ids = sent.loc[sent["sent_run_id"] == run_id, "request_id"].tolist()
        try:
            tokens = TokenSource(load_credentials(config.destination.data_manager.credentials_file))
            result = {"run_id": run_id, **request_statuses(config.destination.endpoint, tokens, ids)}
        except MpetlError as exc:
            result = {"run_id": run_id, "unavailable": str(exc)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "request_status.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def describe(result: dict[str, Any] | None) -> str | None:
    """One line for the terminal."""
    if result is None:
        return None
    if "skipped" in result or "unavailable" in result:
        return f"request diagnostics: {result.get('skipped') or result.get('unavailable')}"
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(result["statuses"].items())) or "none"
    return (f"request diagnostics (Data Manager): {result['checked']}/{result['requests']} requests checked: {statuses}; "
            f"{result['failed_records']} records failed in processing")
