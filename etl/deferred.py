"""`mpetl deferred`: hand every deferred event to GA4 Data Import exactly once.

Why a command of its own: a run's `deferred.csv` holds what that run deferred; an analyst who
uploads on another rhythm (weekly, after a backfill) needs "everything not yet exported", and the
ledger must remember what was handed over, because an import cannot be undone.
The file is written completely before the events are marked exported: a crash in between exports
them again next time (the command exited non-zero, so that file was never valid), never loses them.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import orjson

from etl.clock import wall_micros
from etl.config import Config
from etl.errors import LedgerError
from etl.load import open_ledger, write_data_import


def export_deferred(config: Config, out_file: Path, *, since: date | None = None, clock=wall_micros) -> dict:
    """Write the unexported deferred events (event date ≥ since) to `out_file`; mark them exported."""
    from etl.pipeline import new_run_id

    out_file = Path(out_file)
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"{out_file.parent}: cannot create the output folder ({exc.strerror})") from None
    index_file = out_file.with_name(out_file.stem + "_index.csv")
    run_id = new_run_id(datetime.fromtimestamp(clock() / 1e6, UTC))
    with open_ledger(config.ledger_location, lock=True, clock=clock) as ledger:
        ledger.bind_property(config.property.stream_id, config.destination.endpoint)
        ledger.begin_run(run_id, "export")
        since_text = since.strftime("%Y%m%d") if since else None
        tmp = out_file.with_name(out_file.name + ".partial")
        written = write_data_import(tmp, index_file, lambda: ledger.deferred_events(unexported=True, since_date=since_text),
                                    config.property.stream_id)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(out_file)
        ledger.mark_exported(written, run_id)
        summary = {"run_id": run_id, "exported": len(written), "file": str(out_file), "index": str(index_file),
                   "since": since.isoformat() if since else None}
        ledger.finish_run(run_id, orjson.dumps(summary).decode())
    return summary
