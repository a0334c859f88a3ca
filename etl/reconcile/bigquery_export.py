"""Reads the GA4 BigQuery export (`{project}.{dataset}.events_*`) with google-cloud-bigquery.

Why the import lives inside the method: the client library is heavy and only this backend needs it,
so every other command starts fast. Only bound query parameters reach the SQL; project and dataset
are checked ids from config. `maximum_bytes_billed` caps what one reconciliation can cost. Results
come back over the REST API (`create_bqstorage_client=False`) so a local API endpoint is enough.
"""

from __future__ import annotations

import pandas as pd

from etl.reconcile.errors import ExportUnavailableError
from etl.reconcile.evidence import Watermark
from etl.reconcile.export_backend import normalise_export, watermark_from
from etl.reconcile.export_sql import (
    bigquery_counts_sql,
    bigquery_sql,
    bigquery_watermark_sql,
    counts_parameters,
    query_parameters,
)

_REQUEST_DEADLINE_S = 120.0


class BigQueryExport:
    """The export backend over a GA4 BigQuery export dataset."""

    name = "bigquery"

    def __init__(
        self,
        *,
        project: str,
        dataset: str,
        location: str | None = None,
        api_endpoint: str | None = None,
        maximum_bytes_billed: int = 10 * 1024**3,
    ) -> None:
        self.project, self.dataset, self.location = project, dataset, location
        self.api_endpoint = api_endpoint
        self.maximum_bytes_billed = maximum_bytes_billed

    def _client(self):  # -> google.cloud.bigquery.Client (imported lazily)
        from google.cloud import bigquery

        if self.api_endpoint:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials

            return bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=self.api_endpoint),
            )
        return bigquery.Client(project=self.project, location=self.location)

    def events_for(self, dates: list[str], event_names: list[str]) -> pd.DataFrame:
        from google.cloud import bigquery

        names = self._schema_names(dates)
        traffic = {"session_traffic_source_last_click", "collected_traffic_source"} <= names
        sql = self._checked(lambda: bigquery_sql(self.project, self.dataset, traffic_sources=traffic, geo="geo" in names))
        values = query_parameters(dates, list(event_names))
        params = self._date_params(values)
        params.append(bigquery.ArrayQueryParameter("event_names", "STRING", values["event_names"]))
        return normalise_export(self._run(sql, params), dates)

    def table_counts(self, dates: list[str]) -> dict[str, int]:
        """Rows per table suffix; an export with no `events_*` table at all has none (not an error)."""
        from google.api_core import exceptions as google_exceptions

        sql = self._checked(lambda: bigquery_counts_sql(self.project, self.dataset))
        try:
            frame = self._run(sql, self._date_params(counts_parameters(dates)), not_found_ok=True)
        except google_exceptions.NotFound:
            return {}
        return {str(r.suffix): int(r.n) for r in frame.itertuples(index=False)}

    def watermark(self, since: str) -> Watermark:
        """The export's newest event_timestamp and daily table from `since` on (reads one INT64 column)."""
        from google.api_core import exceptions as google_exceptions
        from google.cloud import bigquery

        sql = self._checked(lambda: bigquery_watermark_sql(self.project, self.dataset))
        try:
            frame = self._run(sql, [bigquery.ScalarQueryParameter("start", "STRING", since)], not_found_ok=True)
        except google_exceptions.NotFound:
            return Watermark(None, None)
        return watermark_from(frame)

    def _schema_names(self, dates: list[str]) -> set[str]:
        """The columns of the newest export table among `dates` (schema only; none when it cannot be read):
        whether it has the traffic-source columns (added in 2024) and `geo` (every GA4 export has it)."""
        from google.api_core import exceptions as google_exceptions

        client = self._client()
        for suffix in sorted(({d for d in dates} | {f"intraday_{d}" for d in dates}), reverse=True):
            try:
                table = client.get_table(f"{self.project}.{self.dataset}.events_{suffix}", timeout=30)
            except google_exceptions.NotFound:
                continue
            except (google_exceptions.GoogleAPIError, OSError):
                return set()
            return {f.name for f in table.schema}
        return set()

    @staticmethod
    def _checked(render):  # -> str
        try:
            return render()
        except ValueError as exc:
            raise ExportUnavailableError(str(exc)) from None

    @staticmethod
    def _date_params(values: dict[str, object]) -> list:
        from google.cloud import bigquery

        return [
            bigquery.ScalarQueryParameter(name, "STRING", values[name])
            for name in ("start", "end", "intraday_start", "intraday_end")
        ]

    def _run(self, sql: str, params: list, *, not_found_ok: bool = False) -> pd.DataFrame:
        from google.api_core import exceptions as google_exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud import bigquery

        job_config = bigquery.QueryJobConfig(query_parameters=params, maximum_bytes_billed=self.maximum_bytes_billed)
        retry = bigquery.DEFAULT_RETRY.with_deadline(_REQUEST_DEADLINE_S)
        where = f"BigQuery {self.project}.{self.dataset}.events_*"
        try:
            client = self._client()
            if not_found_ok:
                client.get_dataset(f"{self.project}.{self.dataset}", timeout=_REQUEST_DEADLINE_S)
            job = client.query(sql, job_config=job_config, retry=retry, timeout=_REQUEST_DEADLINE_S)
            table = job.result(retry=retry, timeout=_REQUEST_DEADLINE_S).to_arrow(create_bqstorage_client=False)
        except google_exceptions.NotFound as exc:
            if not_found_ok and "dataset" not in _short(exc).lower():
                raise
            raise ExportUnavailableError(f"{where}: query failed: {_short(exc)}") from None
        except (google_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
            raise ExportUnavailableError(f"{where}: query failed: {_short(exc)}") from None
        except OSError as exc:
            raise ExportUnavailableError(f"{where}: cannot reach the BigQuery API: {type(exc).__name__}") from None
        return table.to_pandas()


def _short(exc: Exception) -> str:
    """The API's own message, first line only: it names tables and SQL positions, not row values."""
    text = getattr(exc, "message", None) or str(exc)
    return str(text).splitlines()[0][:300]
