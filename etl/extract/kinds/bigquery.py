"""`bigquery`: a table or a query in BigQuery (CRM/POS data landed by Fivetran, Airbyte, dbt), read in
chunks into the same canonical columns as a file.

How it reads:
- the schema first (the table's metadata, or a dry run of the query, which is free and returns the
  result schema: https://cloud.google.com/bigquery/docs/samples/bigquery-query-dry-run), so the `columns` mapping
  is resolved and a missing column fails before any row is read or billed;
- only the mapped columns (BigQuery bills by the columns read);
- a table with no window: `list_rows` (no query, no query cost); with `--since/--until`, or for a
  query or a view: a query whose WHERE holds the window as parameters (`etl.extract.bigquery_sql`);
- rows arrive as Arrow record batches: over the Storage Read API when `google-cloud-bigquery-storage`
  is installed and allowed (parallel streams, a bounded queue), otherwise over the REST API one page
  of `chunk_rows` rows at a time. Either way memory holds a page or a few stream messages, never the
  result. A credential without `bigquery.readsessions.create` falls back to REST pages.

Credentials: Application Default Credentials in production; with `api_endpoint` (a local API for
tests) anonymous ones. `row` numbers count rows in the order BigQuery returns them: add an
ORDER BY to a query for stable numbers. Errors are one `SourceError` line naming the table (or
"query") and the column; a message from BigQuery is quoted only when no row data was read (schema,
dry run), since an execution error can quote a cell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from etl import log
from etl.config import SourceConfig
from etl.errors import SourceError
from etl.extract.arrow_text import column_text
from etl.extract.bigquery_sql import TableName, WindowFilter, parse_table, query_text, select_sql, window_filter
from etl.extract.fields import ResolvedColumns
from etl.extract.kinds.generic import Generic
from etl.extract.raw import RawChunk, position_name

REQUEST_TIMEOUT_S = 120.0
MAX_STREAMS = 4  # Storage Read API streams in parallel; the queue holds at most this many messages
_FIRST_LINE_CHARS = 200
_REQUEST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


class BigQuery(Generic):
    """Same mapping rules as `csv`/`parquet` (the config's `columns` and `params`)."""


def source_label(source: SourceConfig) -> str:
    return f"bigquery:{source.table}" if source.table else f"bigquery:query ({source.name})"


class BigQueryReader:
    """One source's client, schema and reads. Construction reads the schema (it may raise SourceError)."""

    def __init__(self, source: SourceConfig) -> None:
        self.source = source
        self.label = source_label(source)
        self.client = self._call("cannot create a BigQuery client", lambda: _client(source), quote=True)
        self.table: TableName | None = None
        self.listable = False
        if source.table:
            try:
                self.table = parse_table(source.table, source.project or self.client.project)
            except ValueError as exc:
                raise SourceError(self.label, None, None, str(exc)) from None
            meta = self._call("cannot read the table", lambda: self.client.get_table(str(self.table)), quote=True)
            self.schema = list(meta.schema)
            self.listable = meta.table_type == "TABLE"  # a view or an external table must be queried
            self.from_sql = self.table.sql()
        else:
            try:
                self.query = query_text(source.query or "")
            except ValueError as exc:
                raise SourceError(self.label, None, None, str(exc)) from None
            self.schema = self._call("the query is not valid", self._dry_run, quote=True)
            self.from_sql = f"(\n{self.query}\n)"
        self.header = [field.name for field in self.schema]

    # -- reading -------------------------------------------------------------------------------

    def iter_raw(self, cols: ResolvedColumns, *, since: datetime | None, until: datetime | None,
                 page_rows: int, future_after: datetime | None = None) -> Iterator[RawChunk]:
        """Numbered raw records of the mapped columns, in Arrow batches (a REST page or a stream message)."""
        positions = sorted(set(cols.positions.values()))
        if not positions:
            raise SourceError(self.label, None, None, "no column is mapped (set [sources.columns])")
        names = [self.header[p] for p in positions]
        where = self._window(cols, since, until, future_after)
        try:
            read_client = _read_client(self.source)
        except Exception as exc:  # noqa: BLE001 — no read client (credentials, transport): REST pages will do
            log.emit("bigquery_storage_api_unavailable", source=self.source.name, reason=type(exc).__name__)
            read_client = None
        if where is None and self.listable:
            selected = [self.schema[p] for p in positions]
            method = "list_rows"

            def rows() -> Any:
                return self.client.list_rows(str(self.table), selected_fields=selected, page_size=page_rows)
        else:
            sql = select_sql(names, self.from_sql, where)
            method = "query"
            job = self._call("the query failed", lambda: self._start_query(sql, where), quote=False)

            def rows() -> Any:
                return job.result(page_size=page_rows, timeout=REQUEST_TIMEOUT_S)
        log.emit("bigquery_read", source=self.source.name, table=str(self.table or "query"), method=method,
                 window_pushed_down=where is not None, storage_api=read_client is not None)
        next_row = 1
        batches = self._batches(rows, read_client)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 — google-api-core, auth, grpc and transport errors alike
                raise SourceError(self.label, next_row, None,
                                  f"reading failed from this row on ({_reason(exc)})") from None
            n = batch.num_rows
            if n == 0:
                continue
            frame = pa.table({position_name(p): column_text(batch.column(name))
                              for p, name in zip(positions, names, strict=True)}).to_pandas()
            yield RawChunk(frame, np.arange(next_row, next_row + n, dtype=np.int64))
            next_row += n

    def _window(self, cols: ResolvedColumns, since: datetime | None, until: datetime | None,
                future_after: datetime | None) -> WindowFilter | None:
        if "timestamp" not in cols.positions:
            return None
        field = self.schema[cols.positions["timestamp"]]
        hint = self.source.options.get("timestamp_type")
        try:
            return window_filter(field.name, field.field_type, since, until, zone=self.source.timezone,
                                 row_zones="timezone" in cols.positions, hint=None if hint is None else str(hint),
                                 future_after=future_after)
        except ValueError as exc:
            raise SourceError(self.label, None, field.name, str(exc)) from None

    def _batches(self, rows: Callable[[], Any], read_client: Any) -> Iterator[pa.RecordBatch]:
        """Arrow batches over the Storage Read API, or REST pages when it is unavailable or refused."""
        if read_client is not None:
            from google.api_core import exceptions as api

            stream = iter(rows().to_arrow_iterable(bqstorage_client=read_client, max_queue_size=MAX_STREAMS,
                                                   max_stream_count=MAX_STREAMS))
            try:
                first = next(stream)
            except StopIteration:
                return
            except (api.PermissionDenied, api.Forbidden, api.MethodNotImplemented) as exc:
                log.emit("bigquery_storage_api_refused", source=self.source.name, reason=type(exc).__name__)
            else:
                yield first
                yield from stream
                return
        yield from rows().to_arrow_iterable()

    def _start_query(self, sql: str, where: WindowFilter | None) -> Any:
        from google.cloud import bigquery

        params = [bigquery.ScalarQueryParameter(name, kind, value) for name, kind, value in (where.params if where else ())]
        config = bigquery.QueryJobConfig(query_parameters=params)
        limit = self.source.options.get("maximum_bytes_billed")
        if limit is not None:
            config.maximum_bytes_billed = int(limit)
        job = self.client.query(sql, job_config=config, location=self.source.job_location, timeout=REQUEST_TIMEOUT_S)
        job.result(max_results=0, timeout=REQUEST_TIMEOUT_S)  # wait here: a failed query is one error, before any row
        return job

    def _dry_run(self) -> list[Any]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        job = self.client.query(self.query, job_config=config, location=self.source.job_location, timeout=REQUEST_TIMEOUT_S)
        if not job.schema:
            raise SourceError(self.label, None, None, "the query's dry run returned no columns")
        return list(job.schema)

    def _call(self, what: str, action: Callable[[], Any], *, quote: bool) -> Any:
        """One API call before any row is read; its failure is one line (BigQuery's text only if `quote`)."""
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        try:
            return action()
        except SourceError:
            raise
        except api.NotFound as exc:
            raise SourceError(self.label, None, None, _first_line(exc) if quote else "not found") from None
        except auth.GoogleAuthError:
            raise SourceError(self.label, None, None,
                              f"{what}: no usable Google credentials (set up Application Default Credentials)") from None
        except Exception as exc:  # noqa: BLE001 — one line, whatever the client raised
            raise SourceError(self.label, None, None, f"{what}: {_first_line(exc) if quote else _reason(exc)}") from None


def _client(source: SourceConfig) -> Any:
    from google.cloud import bigquery

    if source.api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=source.project, location=source.job_location, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=source.api_endpoint))
    return bigquery.Client(project=source.project, location=source.job_location)


def _read_client(source: SourceConfig) -> Any:
    """A Storage Read API client, or None for REST pages.

    `options.storage_api = false` turns it off. With `api_endpoint` (a local API) it is used only
    when `options.read_api_endpoint` ("host:port", plain gRPC) points at the local read API too.
    """
    if source.options.get("storage_api", True) is False:
        return None
    endpoint = source.options.get("read_api_endpoint")
    if source.api_endpoint and not endpoint:
        return None
    try:
        from google.cloud import bigquery_storage
    except ImportError:
        return None
    if endpoint:
        import grpc
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

        # As the library's own transport: no cap on a message's size (a stream message can exceed 4 MB).
        channel = grpc.insecure_channel(str(endpoint), options=[("grpc.max_receive_message_length", -1),
                                                                ("grpc.max_send_message_length", -1)])
        return bigquery_storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    return bigquery_storage.BigQueryReadClient()


def _first_line(exc: BaseException) -> str:
    """BigQuery's own words (first line, without the request's "GET https://…:" prefix)."""
    text = getattr(exc, "message", None) or str(exc)
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return _REQUEST_PREFIX.sub("", line)[:_FIRST_LINE_CHARS]


def _reason(exc: BaseException) -> str:
    """The error's type and BigQuery reason code (`invalidQuery`, `quotaExceeded`…): never its text."""
    errors = getattr(exc, "errors", None) or []
    reason = errors[0].get("reason") if errors and isinstance(errors[0], dict) else None
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
