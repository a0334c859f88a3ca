"""Deferred events → a GA4-export-shaped table at their true event date ([historical] in the config).

Why: an event older than MP's 72 h window can only reach GA through Data Import, and Google stamps
imported offline events with the upload time when the timestamp is missing and wants it "within 24
hours of event" (support.google.com/analytics/answer/10325025): GA's own reports will not show them
on the day they happened. Reports built on the BigQuery export can: this writes each deferred event
once, as the export would have (etl/protocol/ga4_row.py), carrying the `mpetl_run` marker (the run
that deferred it) and the consent the ledger holds (`privacy_info.ads_storage`), and
jobs/sql/historical_union_view.sql unions it with `events_*`.

Exactly once, crash or not (etl/load/outputs.py has the protocol and its crash points): a write
*claims* every deferred event no historical write has taken yet (this run's, and those a killed run
or a failed write left), writes them, and only then marks them taken in the ledger. Two backends:
- duckdb: files `<path>/<table>_YYYYMMDD.<run_id>.ndjson` (one per event date and writing run), each
  written to a hidden temporary name, fsync'ed and renamed: a crash leaves no half line, and the next
  run finishes or removes what a killed run left, so no row is ever there twice.
  DuckDB reads the folder with `read_json('<path>/<table>_*.ndjson', columns=historical_columns())`.
- bigquery: one load job per run (NDJSON, WRITE_APPEND, table created if missing), the table
  partitioned by `event_day` (DATE); `event_date` stays the export's YYYYMMDD STRING so the union
  with `events_*` needs no cast. The job's id is fixed by the run (`mpetl_historical_<run_id>`) and
  recorded before it is submitted: a load job lands whole or not at all, and the next run asks
  BigQuery which one it was before it offers those events again.

Only what the ledger holds is written (pseudonymous client id, user id only where the source sends
it, params the transform scanned and allowed), never the source rows. A failed write is reported in
the summary and logs (and makes the run exit 4), never raised: its events are released in the
ledger, and the next run (or `mpetl historical`) writes them.
"""

from __future__ import annotations

import re
import tempfile
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import orjson

from etl import failpoints, log
from etl.config import HistoricalConfig, PropertyConfig
from etl.load.ledger import DeferredEvent, Ledger, consent_json
from etl.load.outputs import Delivery, Staging, deliver, delivery_of, settle
from etl.protocol.ga4_row import ROW_SCHEMA, duckdb_columns, ga4_row

RUN_MARKER = "mpetl_run"
PARTITION_COLUMN = "event_day"
WRITER_COLUMN = "mpetl_written_by"
HISTORICAL_SCHEMA: list[dict[str, Any]] = [*ROW_SCHEMA, {"name": PARTITION_COLUMN, "type": "DATE", "mode": "NULLABLE"},
                                           {"name": WRITER_COLUMN, "type": "STRING", "mode": "NULLABLE"}]
"""The historical table: the export's columns (as the collector writes them), `event_day` DATE, and
`mpetl_written_by` (the run whose write holds the row: how a killed write is told apart from a landed one)."""

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def historical_columns() -> dict[str, str]:
    """Column → DuckDB type, to read the duckdb backend's files back with the export's nesting."""
    return duckdb_columns(HISTORICAL_SCHEMA)


def historical_row(event: DeferredEvent, *, zone: zoneinfo.ZoneInfo, stream_id: str,
                   firebase_app_id: str | None = None, written_by: str | None = None) -> dict[str, Any]:
    """One deferred event as an export row at its true date, with the `mpetl_run` marker (who deferred
    it) and `mpetl_written_by` (whose historical write this is)."""
    params = orjson.loads(event.params)
    if event.run_id:
        params[RUN_MARKER] = event.run_id
    consent = consent_json(event.consent)
    app = firebase_app_id is not None  # an app stream (`[property] firebase_app_id`)
    body = {"app_instance_id" if app else "client_id": event.client_id, "user_id": event.user_id or None,
            "consent": orjson.loads(consent) if consent else None}
    if event.place:  # the store's user_location / the device, as the request would have carried them
        body.update(orjson.loads(b"{" + event.place + b"}"))
    row = ga4_row({"name": event.event_name, "timestamp_micros": event.timestamp_micros, "params": params}, body,
                  zone=zone, stream_id=stream_id, firebase_app_id=firebase_app_id)
    day = row["event_date"]
    row[PARTITION_COLUMN] = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    row[WRITER_COLUMN] = written_by
    return row


def deliver_historical(ledger: Ledger, run_id: str, settings: HistoricalConfig, prop: PropertyConfig, *,
                       deferred_by: str | None = None) -> dict[str, Any]:
    """Write every deferred event no historical write has taken; return what the summary reports.

    Never raises: a failure is in the report (`error`), its events are released for the next write.
    """
    zone = zoneinfo.ZoneInfo(prop.timezone)
    # The export's `stream_id` is the web stream's numeric id, not the measurement id: the rows carry
    # `[property] stream_id` so the union with the export groups them with the stream's own rows.
    stream_id = prop.stream_id or prop.mp_stream_id
    app_id = prop.firebase_app_id
    report: dict[str, Any] = {"backend": settings.backend, "table": settings.table, "rows": 0}
    try:
        if settings.backend == "bigquery":
            delivery = _deliver_bigquery(ledger, run_id, settings, zone, stream_id, app_id, deferred_by)
        else:
            assert settings.path is not None
            folder = Path(settings.path)
            report["path"] = str(settings.path)
            delivery = deliver(ledger, run_id, "historical", folder, deferred_by=deferred_by, write=lambda events, staging:
                               _write_files(folder, settings.table, events, staging, zone, stream_id, app_id))
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the ledger still holds every event
        report["error"] = _short(exc)
        log.emit("historical_failed", backend=settings.backend, table=settings.table, error=report["error"])
        return report
    report["rows"] = delivery.rows
    report["earlier_runs"] = delivery.earlier_runs
    if delivery.recovered:
        report["recovered"] = delivery.recovered
    log.emit("historical_written", **report)
    return report


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


def _write_files(folder: Path, table: str, events: Callable[[], Iterator[DeferredEvent]], staging: Staging,
                 zone: zoneinfo.ZoneInfo, stream_id: str, app_id: str | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    writer = _UNSAFE_ID.sub("_", staging.run_id)
    handles: dict[str, IO[bytes]] = {}
    count = 0
    try:
        for event in events():
            row = historical_row(event, zone=zone, stream_id=stream_id, firebase_app_id=app_id, written_by=staging.run_id)
            day = row["event_date"]
            if day not in handles:
                handles[day] = staging.file(folder / f"{table}_{day}.{writer}.ndjson").open("wb")
            handles[day].write(orjson.dumps(row) + b"\n")
            count += 1
            if count == 1000:  # a crash trial stops here: half-written files on disk
                for handle in handles.values():
                    handle.flush()
                failpoints.reached("historical.writing")
    finally:
        for handle in handles.values():
            handle.close()
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


def _job_id(run_id: str) -> str:
    return f"mpetl_historical_{_UNSAFE_ID.sub('_', run_id)}"


def _deliver_bigquery(ledger: Ledger, run_id: str, settings: HistoricalConfig, zone: zoneinfo.ZoneInfo,
                      stream_id: str, app_id: str | None, deferred_by: str | None) -> Delivery:
    """The protocol with one load job as the "file": claimed → job recorded (written) → loaded → taken.

    Bounded memory: the NDJSON goes through a temporary file, whatever the backfill.
    """
    full = table_id(settings)
    recovered = settle(ledger, "historical", current_run=run_id, landed=lambda job: _job_landed(settings, job))
    claimed = ledger.claim_deferred(run_id, "historical", full, deferred_by=deferred_by)
    failpoints.reached("historical.claimed")
    job: dict[str, Any] = {"job_id": _job_id(run_id), "project": full.split(".")[0], "location": settings.location,
                           "table": full, "run_id": run_id, "rows": claimed}
    with tempfile.TemporaryFile() as buffer:
        try:
            days: set[str] = set()
            for event in ledger.claimed_events(run_id, "historical"):
                row = historical_row(event, zone=zone, stream_id=stream_id, firebase_app_id=app_id, written_by=run_id)
                buffer.write(orjson.dumps(row) + b"\n")
                days.add(row[PARTITION_COLUMN])
            client = _bigquery_client(settings, job["project"]) if days else None
            if client is not None:
                _create_table(client, settings, full)
                job.update(first=min(days), last=max(days))
            ledger.output_written(run_id, "historical", [job] if days else [])
        except BaseException:
            ledger.release_output(run_id, "historical")
            raise
        failpoints.reached("historical.written")
        if client is not None:
            try:
                _load(client, settings, full, buffer, job["job_id"])
            except Exception:
                # Release only what surely did not land; when BigQuery cannot tell, the record stays
                # written and the next run asks again (never offered twice while it might be there).
                landed = _job_landed(settings, job)
                if landed is False:
                    ledger.release_output(run_id, "historical")
                if not landed:
                    raise
    failpoints.reached("historical.renamed")
    ledger.output_taken(run_id, "historical")
    return delivery_of(ledger, run_id, "historical", claimed, recovered)


def _create_table(client: Any, settings: HistoricalConfig, full: str) -> None:
    """Created explicitly (not by the load job) so the partitioning is set however the table came to be."""
    from google.cloud import bigquery

    project, dataset, _ = full.split(".")
    deadline = settings.timeout_s
    retry = bigquery.DEFAULT_RETRY.with_deadline(deadline)
    client.create_dataset(bigquery.Dataset(f"{project}.{dataset}"), exists_ok=True, retry=retry, timeout=deadline)
    table = bigquery.Table(full, schema=_schema())
    table.time_partitioning = _partitioning()
    client.create_table(table, exists_ok=True, retry=retry, timeout=deadline)


def _schema() -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(f) for f in HISTORICAL_SCHEMA]


def _partitioning() -> Any:
    from google.cloud import bigquery

    return bigquery.TimePartitioning(type_=bigquery.TimePartitioningType.DAY, field=PARTITION_COLUMN)


def _load(client: Any, settings: HistoricalConfig, full: str, buffer: IO[bytes], job_id: str) -> None:
    """One load job under the run's fixed id: submitted twice (a retry after a lost answer), BigQuery
    refuses the second as a conflict, and the first is the one waited for."""
    from google.api_core.exceptions import Conflict
    from google.cloud import bigquery

    deadline = settings.timeout_s
    retry = bigquery.DEFAULT_RETRY.with_deadline(deadline)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        schema=_schema(),
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        time_partitioning=_partitioning(),
        # A table made before `mpetl_written_by` gets the column (NULL in its older rows).
        schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
    )
    try:
        job = client.load_table_from_file(buffer, full, job_config=config, rewind=True, timeout=deadline,
                                          job_id=job_id, location=settings.location)
    except Conflict:
        job = client.get_job(job_id, location=settings.location, retry=retry, timeout=deadline)
    job.result(retry=retry, timeout=deadline)


def _job_landed(settings: HistoricalConfig, job: dict[str, Any]) -> bool | None:
    """Did the recorded load job land? True (its rows are there), False (never submitted, or failed: a
    load job that fails loads nothing), None (cannot tell now: asked again next run).

    First by the job's id (a job still running is waited for: it could land after we re-offer its
    events); a job BigQuery does not know was never submitted — then its rows, by `mpetl_written_by`,
    say the same (a local BigQuery API that ignores our job ids is answered by them too).
    """
    from google.api_core.exceptions import NotFound

    try:
        client = _bigquery_client(settings, job["project"])
        found = client.get_job(job["job_id"], location=job.get("location"), timeout=settings.timeout_s)
    except NotFound:
        found = None
    except Exception:  # noqa: BLE001 - unreachable: cannot tell
        return None
    if found is not None:
        if found.state != "DONE":
            with suppress(Exception):  # a failed job raises here; its error_result says so below
                found.result(timeout=settings.timeout_s)
            if found.state != "DONE":
                return None
        return found.error_result is None
    try:
        rows = _rows_written(client, settings, job)
    except Exception:  # noqa: BLE001 - cannot tell
        return None
    return True if rows == job["rows"] else False if rows == 0 else None


def _rows_written(client: Any, settings: HistoricalConfig, job: dict[str, Any]) -> int:
    """Rows of the table a run's write holds (partition-pruned to the days it wrote)."""
    from google.api_core.exceptions import BadRequest, NotFound
    from google.cloud import bigquery

    sql = (f"SELECT COUNT(*) AS n FROM `{job['table']}` AS h WHERE h.{PARTITION_COLUMN} BETWEEN @first AND @last "
           f"AND h.{WRITER_COLUMN} = @run")
    params = [bigquery.ScalarQueryParameter("first", "DATE", job["first"]),
              bigquery.ScalarQueryParameter("last", "DATE", job["last"]),
              bigquery.ScalarQueryParameter("run", "STRING", job["run_id"])]
    try:
        result = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params),
                              timeout=settings.timeout_s).result(timeout=settings.timeout_s)
    except NotFound:
        return 0  # no table: nothing of this run's write is there
    except BadRequest as exc:
        if WRITER_COLUMN in str(exc):
            return 0  # a table from before the column: nothing of this run's write is there
        raise
    return int(next(iter(result))["n"])
