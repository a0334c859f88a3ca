"""Deferred events → GA4 Data Import's offline-event CSV template, exactly once per event.

Why from the ledger: an event is deferred once, ever (by the run that planned it too old, or that
saw it expire), so a run's `deferred.csv` holds only what *that* run deferred and `mpetl deferred`
only what no export has taken yet. GA has no way to undo an import short of a data-deletion request.

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

from etl.load.ledger import DeferredEvent
from etl.safe_csv import neutralise_text

HEAD = ["measurement_id", "client_id", "user_id", "timestamp_micros", "event_name"]
INDEX_HEAD = ["source", "row", "event_name", "transaction_id", "reason", "deferred_by_run"]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return neutralise_text(str(value))


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
    header = HEAD + [f"event_param.{k}" for k in params]
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
            row = [measurement_id, event.client_id, event.user_id or "", str(event.timestamp_micros), event.event_name]
            row += [_cell(p.get(k)) for k in params]
            for i in range(max_items):
                item = items[i] if i < len(items) else {}
                row += [_cell(item.get(f)) for f in item_fields]
            writer.writerow(row)
            index.writerow([_cell(event.source), event.source_row or "", event.event_name,
                            _cell(p.get("transaction_id")), event.reason, event.run_id or ""])
            written.append(event.id)
    return written

