"""Deferred events → GA4 Data Import's offline-event CSV template, exactly once per event.

Why from the ledger: an event is deferred once, ever (by the run that planned it too old, or that
saw it expire), and each file *takes* its events there (etl/load/outputs.py): a run's `deferred.csv`
holds every deferred event no run's deferred.csv has taken yet (its own, and those of runs killed
before their file was whole), and `mpetl deferred` every one no `mpetl deferred` file has taken. GA
has no way to undo an import short of a data-deletion request.

The template (support.google.com/analytics/answer/10325025): `measurement_id, client_id, user_id,
timestamp_micros, event_name`, then `event_param.<name>` and `item<N>.<field>`. Numbers stay numbers
(`2`, not `2.0`), ids are written exactly as sent. Google uses the upload time when
`timestamp_micros` is absent and requires it "within 24 hours of event": imported offline events do
not land at an old true date (docs/deferred.md).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from etl import failpoints
from etl.load.ledger import DeferredEvent, Ledger, OutputKind, consent_json
from etl.load.outputs import Delivery, Staging, deliver
from etl.protocol.place import FIREBASE_APP_ID
from etl.safe_csv import neutralise_text

# Google's template puts the consents right after the time (answer 10325025's example header:
# `measurement_id, client_id, user_id, timestamp_micros, ad_personalization, ad_user_data, …`): consent
# follows the data, into an import as into a request.
HEAD = ["measurement_id", "client_id", "user_id", "timestamp_micros", "ad_personalization", "ad_user_data", "event_name"]
# An app stream's events: "app_instance_id (with firebase_app_id)" (answer 10325025) in the same places.
APP_HEAD = ["firebase_app_id", "app_instance_id", "user_id", "timestamp_micros", "ad_personalization", "ad_user_data",
            "event_name"]
INDEX_HEAD = ["source", "row", "event_name", "transaction_id", "reason", "deferred_by_run"]


def _cell(value: object) -> str:
    """A Data Import cell exactly as sent: GA4 reads this file, not a spreadsheet, so text is written as
    it is (`+49-ORDER`, `-20% Sale Item`, `=1+1`); a formula guard's apostrophe would land in GA."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return str(value)


def _guarded(value: object) -> str:
    """A cell of the index, which people open in spreadsheets: formula openers neutralised."""
    return neutralise_text(_cell(value))


def _consents(code: int) -> list[str]:
    consent = orjson.loads(consent_json(code) or b"{}")
    return [consent.get("ad_personalization", ""), consent.get("ad_user_data", "")]


def _flatten(event: DeferredEvent) -> tuple[dict[str, object], list[dict[str, object]]]:
    params = orjson.loads(event.params)
    items = params.pop("items", None) or []
    return params, [i for i in items if isinstance(i, dict)]


def write_data_import(path: Path, index_path: Path, events: Callable[[], Iterator[DeferredEvent]],
                      measurement_id: str, *, run_marker: str | None = None) -> list[int]:
    """Write the events (two streaming passes: columns, then rows); return the ids written.

    `events` is called twice so memory stays bounded by one page, however many events a backfill defers.
    """
    params: dict[str, None] = {}
    item_fields: dict[str, None] = {}
    max_items = 0
    for event in events():
        p, items = _flatten(event)
        params.update(dict.fromkeys(p))
        max_items = max(max_items, len(items))
        for item in items:
            item_fields.update(dict.fromkeys(item))
    if run_marker:
        params.setdefault("mpetl_run", None)
    header = (APP_HEAD if FIREBASE_APP_ID.match(measurement_id) else HEAD) + [f"event_param.{k}" for k in params]
    header += [f"item{i + 1}.{f}" for i in range(max_items) for f in item_fields]
    written: list[int] = []
    with path.open("w", newline="", encoding="utf-8") as out, index_path.open("w", newline="", encoding="utf-8") as idx:
        writer, index = csv.writer(out), csv.writer(idx)
        writer.writerow(header)
        index.writerow(INDEX_HEAD)
        for event in events():
            p, items = _flatten(event)
            if run_marker:
                p.setdefault("mpetl_run", event.run_id or run_marker)
            row = [measurement_id, event.client_id, event.user_id or "", str(event.timestamp_micros),
                   *_consents(event.consent), event.event_name]
            row += [_cell(p.get(k)) for k in params]
            for i in range(max_items):
                item = items[i] if i < len(items) else {}
                row += [_cell(item.get(f)) for f in item_fields]
            writer.writerow(row)
            index.writerow([_guarded(event.source), event.source_row or "", event.event_name,
                            _guarded(p.get("transaction_id")), event.reason, event.run_id or ""])
            written.append(event.id)
            if len(written) == 1000:  # a crash trial stops here: a half-written file on disk
                out.flush()
                idx.flush()
                failpoints.reached("data_import.writing")
    return written


def deliver_data_import(ledger: Ledger, run_id: str, path: Path, index_path: Path, measurement_id: str, *,
                        kind: OutputKind = "deferred_csv", dry: bool = False, since_date: str | None = None) -> Delivery:
    """Write `path` (and its index) holding every deferred event no file of `kind` has taken, exactly once.

    The index is renamed first: a whole CSV under its final name always has its index beside it.
    """
    def write(events: Callable[[], Iterator[DeferredEvent]], staging: Staging) -> int:
        index_tmp = staging.file(index_path)
        return len(write_data_import(staging.file(path), index_tmp, events, measurement_id))

    return deliver(ledger, run_id, kind, path.parent, write, dry=dry, since_date=since_date)

