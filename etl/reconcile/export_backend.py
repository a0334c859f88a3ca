"""The small protocol both export readers follow, and the choice between them from config.

Why a protocol: reconciliation only needs "which of these events does the export hold for these
days"; whether the answer comes from a local folder or from BigQuery is configuration.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from etl.config import Config
from etl.reconcile.errors import ExportUnavailableError
from etl.reconcile.evidence import Watermark
from etl.reconcile.export_sql import EXPORT_COLUMNS


class ExportBackend(Protocol):
    """Reads GA4-export-shaped events for whole days."""

    name: str

    def events_for(self, dates: list[str], event_names: list[str]) -> pd.DataFrame:
        """Events of `event_names` on `dates` (YYYYMMDD), one row per exported event.

        Columns: event_date, event_name, transaction_id, run_marker, resend_marker, has_session,
        event_timestamp, intraday, session_source, collected_source, value, currency, geo_country.
        """
        ...

    def watermark(self, since: str) -> Watermark:
        """The export's newest event time and newest daily table among tables from `since` (YYYYMMDD) on."""
        ...

    def table_counts(self, dates: list[str]) -> dict[str, int]:
        """Rows per export table suffix (`YYYYMMDD` daily, `intraday_YYYYMMDD`) for `dates`.

        A table that does not exist is simply absent from the answer: that is what the export
        health check looks for, so it must not be an error.
        """
        ...


def find_export_backend(config: Config) -> ExportBackend:
    """The backend `config.reconcile.backend` names, checked for the settings it needs."""
    rec = config.reconcile
    if rec.backend == "duckdb":
        from etl.reconcile.duckdb_export import DuckDBExport

        if rec.store is None:
            raise ExportUnavailableError(f"{config.file}: [reconcile] store is required for backend 'duckdb'")
        return DuckDBExport(rec.store)
    if rec.backend == "bigquery":
        from etl.reconcile.bigquery_export import BigQueryExport

        if not (rec.project and rec.dataset):
            raise ExportUnavailableError(
                f"{config.file}: [reconcile] project and dataset are required for backend 'bigquery'"
            )
        return BigQueryExport(
            project=rec.project,
            dataset=rec.dataset,
            location=rec.location,
            api_endpoint=rec.api_endpoint,
            maximum_bytes_billed=rec.maximum_bytes_billed,
        )
    raise ExportUnavailableError(f"{config.file}: [reconcile] unknown backend {rec.backend!r}")


def empty_export() -> pd.DataFrame:
    """An answer with no rows but every column typed, for a selection the export has no table for."""
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in EXPORT_COLUMNS})
    return frame.astype({"has_session": bool, "intraday": bool, "value": "float64", "event_timestamp": "Int64"})


def watermark_from(frame: pd.DataFrame) -> Watermark:
    """The watermark query's one row as a `Watermark` (an empty export has neither figure)."""
    if frame.empty:
        return Watermark(None, None)
    row = frame.iloc[0]
    newest = pd.to_numeric(pd.Series([row["newest_event"]]), errors="coerce").iloc[0]
    daily = row["newest_daily"]
    return Watermark(None if pd.isna(newest) else int(newest), None if daily is None or pd.isna(daily) else str(daily))


def normalise_export(frame: pd.DataFrame, dates: list[str]) -> pd.DataFrame:
    """Typed columns, only the asked days, and the daily table preferred over intraday for a day.

    GA4 keeps `events_intraday_D` until `events_D` is complete; counting both would double every
    event of that day, so intraday rows are used only for days without a daily table.
    """
    out = pd.DataFrame(
        {
            "event_date": frame["event_date"].astype("string"),
            "event_name": frame["event_name"].astype("string"),
            "transaction_id": frame["transaction_id"].astype("string"),
            "run_marker": frame["run_marker"].astype("string"),
            "resend_marker": frame["resend_marker"].astype("string"),
            "has_session": frame["has_session"].fillna(False).astype(bool),
            "event_timestamp": pd.to_numeric(frame["event_timestamp"], errors="coerce").astype("Int64"),
            "intraday": frame["intraday"].fillna(False).astype(bool),
            "session_source": frame["session_source"].astype("string"),
            "collected_source": frame["collected_source"].astype("string"),
            "value": pd.to_numeric(frame["value"], errors="coerce").astype("float64"),
            "currency": frame["currency"].astype("string"),
            "geo_country": frame["geo_country"].astype("string") if "geo_country" in frame else pd.NA,
        },
        columns=list(EXPORT_COLUMNS),
    )
    out = out[out["event_date"].isin(dates)]
    daily_days = set(out.loc[~out["intraday"], "event_date"])
    out = out[~(out["intraday"] & out["event_date"].isin(daily_days))]
    return out.reset_index(drop=True)
