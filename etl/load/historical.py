"""Deferred events → a GA4-export-shaped table at their true event date ([historical] in the config).

Why: an event older than MP's 72 h window can only reach GA through Data Import, and Google stamps
imported offline events with the upload time when the timestamp is missing and wants it "within 24
hours of event" (support.google.com/analytics/answer/10325025): GA's own reports will not show them
on the day they happened. Reports built on the BigQuery export can: this writes each deferred event
once, as the export would have (etl/protocol/ga4_row.py), carrying the `mpetl_run` marker (the run
that deferred it), and jobs/sql/historical_union_view.sql unions it with `events_*`.

Two backends:
- bigquery: one load job per run (NDJSON, WRITE_APPEND, table created if missing), the table
  partitioned by `event_day` (DATE). `event_date` stays the export's YYYYMMDD STRING so the union
  with `events_*` needs no cast. A run whose marker is already in the table is not loaded again.
- duckdb: files `<path>/<table>_YYYYMMDD.<run_id>.ndjson` (one per event date and run), each written
  to a temporary name and renamed, so a crash leaves no half line and writing a run again replaces
  that run's own files (never adds a second copy);
  DuckDB reads the folder with `read_json('<path>/<table>_*.ndjson', columns=historical_columns())`.

Only what the ledger holds is written (pseudonymous client id, user id only where the source sends
it, params the transform scanned and allowed), never the source rows. A failed write is reported in
the summary and logs, never raised: the events stay `deferred` in the ledger and in deferred.csv.
"""

from __future__ import annotations

import os
import re
import tempfile
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from etl import log
from etl.config import HistoricalConfig, PropertyConfig
from etl.load.ledger import DeferredEvent
from etl.protocol.ga4_row import ROW_SCHEMA, duckdb_columns, ga4_row
from etl.protocol.place import FIREBASE_APP_ID

RUN_MARKER = "mpetl_run"
PARTITION_COLUMN = "event_day"
HISTORICAL_SCHEMA: list[dict[str, Any]] = [*ROW_SCHEMA, {"name": PARTITION_COLUMN, "type": "DATE", "mode": "NULLABLE"}]
"""The historical table: the export's columns (as the collector writes them) plus `event_day` DATE."""

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def historical_columns() -> dict[str, str]:
    """Column → DuckDB type, to read the duckdb backend's files back with the export's nesting."""
    return duckdb_columns(HISTORICAL_SCHEMA)


def historical_row(event: DeferredEvent, *, zone: zoneinfo.ZoneInfo, stream_id: str) -> dict[str, Any]:
    """One deferred event as an export row at its true date, with the `mpetl_run` marker."""
    params = orjson.loads(event.params)
    if event.run_id:
        params[RUN_MARKER] = event.run_id
    app = FIREBASE_APP_ID.match(stream_id) is not None  # an app stream's id (`[property] firebase_app_id`)
    body = {"app_instance_id" if app else "client_id": event.client_id, "user_id": event.user_id or None}
    if event.place:  # the store's user_location / the device, as the request would have carried them
        body.update(orjson.loads(b"{" + event.place + b"}"))
    row = ga4_row({"name": event.event_name, "timestamp_micros": event.timestamp_micros, "params": params}, body,
                  zone=zone, stream_id=stream_id, firebase_app_id=stream_id if app else None)
    day = row["event_date"]
    row[PARTITION_COLUMN] = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return row


def write_historical(settings: HistoricalConfig, events: Callable[[], Iterator[DeferredEvent]],
                     prop: PropertyConfig) -> dict[str, Any]:
    """Write the events to the historical table; return what the summary reports (never raises)."""
    zone = zoneinfo.ZoneInfo(prop.timezone)
    report: dict[str, Any] = {"backend": settings.backend, "table": settings.table, "rows": 0}
    try:
        if settings.backend == "bigquery":
            report["rows"], already = _load_bigquery(settings, events, zone, prop.stream_id)
            if already:
                report["already_loaded"] = already
        else:
            assert settings.path is not None
            report["rows"] = _write_files(Path(settings.path), settings.table, events, zone, prop.stream_id)
            report["path"] = str(settings.path)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the ledger still holds every event
        report["error"] = _short(exc)
        log.emit("historical_failed", backend=settings.backend, table=settings.table, error=report["error"])
        return report
    log.emit("historical_written", **report)
    return report


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


def _write_files(folder: Path, table: str, events: Callable[[], Iterator[DeferredEvent]],
                 zone: zoneinfo.ZoneInfo, stream_id: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[tuple[str, str], tuple[IO[bytes], Path]] = {}
    count = 0
    try:
        for event in events():
            row = historical_row(event, zone=zone, stream_id=stream_id)
            run = _UNSAFE_ID.sub("_", event.run_id or "unknown")
            key = (row["event_date"], run)
            if key not in handles:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{table}_{key[0]}.", suffix=".tmp")
                handles[key] = (os.fdopen(fd, "wb"), Path(tmp))
            handles[key][0].write(orjson.dumps(row) + b"\n")
            count += 1
        for (day, run), (handle, tmp) in handles.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(tmp, folder / f"{table}_{day}.{run}.ndjson")
    finally:
        for handle, tmp in handles.values():
            handle.close()
            tmp.unlink(missing_ok=True)
    return count


def _bigquery_client(settings: HistoricalConfig, project: str) -> Any:
    from google.cloud import bigquery

    if settings.api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, location=settings.location, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=settings.api_endpoint))
    return bigquery.Client(project=project, location=settings.location)


def table_id(settings: HistoricalConfig) -> str:
    """project.dataset.table, the project from the table name or from [historical] project."""
    parts = settings.table.split(".")
    if len(parts) == 2:
        parts = [str(settings.project), *parts]
    return ".".join(parts)


def _load_bigquery(settings: HistoricalConfig, events: Callable[[], Iterator[DeferredEvent]],
                   zone: zoneinfo.ZoneInfo, stream_id: str) -> tuple[int, int]:
    """One load job (NDJSON from a temporary file: bounded memory whatever the backfill).

    Returns (rows loaded, rows found already loaded). A run's events are loaded once: before loading,
    the table is asked for rows carrying this run's marker on this run's event days (partition-pruned),
    so writing a run again (a retry after a timeout whose job did land) loads nothing.
    """
    from google.cloud import bigquery

    count, days, runs = 0, set(), set()
    with tempfile.TemporaryFile() as buffer:
        for event in events():
            row = historical_row(event, zone=zone, stream_id=stream_id)
            buffer.write(orjson.dumps(row) + b"\n")
            days.add(row[PARTITION_COLUMN])
            runs.add(event.run_id)
            count += 1
        if count == 0:
            return 0, 0
        buffer.seek(0)
        full = table_id(settings)
        project, dataset, _ = full.split(".")
        client = _bigquery_client(settings, project)
        deadline = settings.timeout_s
        retry = bigquery.DEFAULT_RETRY.with_deadline(deadline)
        schema = [bigquery.SchemaField.from_api_repr(f) for f in HISTORICAL_SCHEMA]
        partitioning = bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=PARTITION_COLUMN)
        # Created explicitly (not by the load job) so the partitioning is set however the table came to be.
        client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True, retry=retry, timeout=deadline)
        table = bigquery.Table(full, schema=schema)
        table.time_partitioning = partitioning
        client.create_table(table, exists_ok=True, retry=retry, timeout=deadline)
        (run_id,) = runs if len(runs) == 1 else (None,)
        if run_id is not None:
            already = _rows_of_run(client, full, run_id, min(days), max(days), retry, deadline)
            if already:
                return 0, already
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            time_partitioning=partitioning,
        )
        job = client.load_table_from_file(buffer, full, job_config=config, rewind=True, timeout=deadline,
                                          job_id_prefix=f"mpetl_historical_{_UNSAFE_ID.sub('_', run_id or 'runs')}_")
        job.result(retry=retry, timeout=deadline)
    return count, 0


def _rows_of_run(client: Any, full: str, run_id: str, first: str, last: str, retry: Any, deadline: float) -> int:
    from google.cloud import bigquery

    sql = (f"SELECT COUNT(*) AS n FROM `{full}` AS h WHERE h.{PARTITION_COLUMN} BETWEEN @first AND @last "
           f"AND EXISTS(SELECT 1 FROM UNNEST(h.event_params) AS p WHERE p.key = '{RUN_MARKER}' "
           "AND p.value.string_value = @run)")
    params = [bigquery.ScalarQueryParameter("first", "DATE", first), bigquery.ScalarQueryParameter("last", "DATE", last),
              bigquery.ScalarQueryParameter("run", "STRING", run_id)]
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params), retry=retry, timeout=deadline)
    return int(next(iter(job.result(retry=retry, timeout=deadline)))["n"])
