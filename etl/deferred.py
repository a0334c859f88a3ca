"""`mpetl deferred`: hand every deferred event to GA4 Data Import exactly once.

Why a command of its own: an analyst who uploads on another rhythm (weekly, after a backfill) needs
"everything not yet exported" in one file, and the ledger must remember what was handed over, because
an import cannot be undone (short of a data-deletion request). The files of this command are their own
channel, next to the runs' deferred.csv files: upload one channel, not both.

Exactly once, crash or not (etl/load/outputs.py has the protocol and its crash points): the command
claims in the ledger every deferred event no `mpetl deferred` file has taken, writes them to a hidden
temporary name beside `--out F`, fsyncs, renames, and only then marks them taken. A kill at any point
leaves no F or a whole one, and the next export takes the rest. An existing F (or its index) is never
replaced: the command refuses (exit 2) before it claims anything.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import orjson

from etl.clock import wall_micros
from etl.config import Config
from etl.errors import EXIT_BAD_INPUT, LedgerError, MpetlError
from etl.load import deliver_data_import, open_ledger


class ExportExistsError(MpetlError):
    """`--out F` exists already: an export never replaces one (its events are marked exported)."""

    exit_code = EXIT_BAD_INPUT


def index_path(out_file: Path) -> Path:
    return out_file.with_name(out_file.stem + "_index.csv")


def _refuse_existing(out_file: Path) -> None:
    for path in (out_file, index_path(out_file)):
        if path.exists() or path.is_symlink():
            raise ExportExistsError(f"{path}: exists already; an export never replaces a file (its events are "
                                    "marked exported): choose a new --out file")


def export_deferred(config: Config, out_file: Path, *, since: date | None = None, clock=wall_micros) -> dict:
    """Write the deferred events no export has taken (event date ≥ since) to `out_file`; mark them taken."""
    from etl.pipeline import new_run_id

    out_file = Path(out_file)
    _refuse_existing(out_file)
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"{out_file.parent}: cannot create the output folder ({exc.strerror})") from None
    run_id = new_run_id(datetime.fromtimestamp(clock() / 1e6, UTC))
    with open_ledger(config.ledger_location, lock=True, clock=clock) as ledger:
        ledger.bind_property(config.property.mp_stream_id, config.destination.endpoint)
        _refuse_existing(out_file)  # again under the run lock: no other export can create it now
        ledger.begin_run(run_id, "export")
        delivery = deliver_data_import(ledger, run_id, out_file, index_path(out_file), config.property.mp_stream_id,
                                       kind="export", since_date=since.strftime("%Y%m%d") if since else None)
        summary = {"run_id": run_id, "exported": delivery.rows, "file": str(out_file), "index": str(index_path(out_file)),
                   "since": since.isoformat() if since else None, "recovered": delivery.recovered}
        ledger.finish_run(run_id, orjson.dumps(summary).decode())
    return summary
