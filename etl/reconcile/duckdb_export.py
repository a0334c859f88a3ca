"""Reads the local collector's store (and GA4 exports a user saved there) with DuckDB.

Why DuckDB: it reads newline-delimited JSON and Parquet with the export's nested types directly, so
the same SQL as for BigQuery runs over a view named `events`, and only the day files needed are
opened. Files are chosen by name (`events_YYYYMMDD.ndjson`, `.jsonl`, `.json`, `.parquet`, and the
`events_intraday_YYYYMMDD.*` variants), never by scanning contents.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from etl.reconcile.errors import ExportUnavailableError
from etl.reconcile.evidence import Watermark
from etl.reconcile.export_backend import normalise_export, watermark_from
from etl.reconcile.export_sql import (
    counts_parameters,
    duckdb_counts_sql,
    duckdb_sql,
    duckdb_watermark_sql,
    query_parameters,
)

_FILE_NAME = re.compile(r"^events_(?P<suffix>(?:intraday_)?(?P<date>\d{8}))\.(?P<ext>ndjson|jsonl|json|parquet)$")

# Only the fields the query reads; other keys in the files are ignored.
_PARAM_TYPE = "STRUCT(key VARCHAR, value STRUCT(string_value VARCHAR, int_value BIGINT, float_value DOUBLE, double_value DOUBLE))[]"
_ECOMMERCE_TYPE = "STRUCT(transaction_id VARCHAR, purchase_revenue DOUBLE, refund_value DOUBLE)"
_JSON_COLUMNS = {
    "event_date": "VARCHAR",
    "event_timestamp": "BIGINT",
    "event_name": "VARCHAR",
    "event_params": _PARAM_TYPE,
    "ecommerce": _ECOMMERCE_TYPE,
    "collected_traffic_source": "STRUCT(manual_source VARCHAR, gclid VARCHAR)",
    "session_traffic_source_last_click": "STRUCT(cross_channel_campaign STRUCT(source VARCHAR))",
    "geo": "STRUCT(country VARCHAR)",
}
_TRAFFIC_TYPES = {
    "collected_traffic_source": _JSON_COLUMNS["collected_traffic_source"],
    "session_traffic_source_last_click": _JSON_COLUMNS["session_traffic_source_last_click"],
}
_COLUMNS_SELECTED = (
    "event_date, event_timestamp, event_name, event_params, ecommerce, collected_traffic_source, "
    "session_traffic_source_last_click, geo"
)
_SUFFIX_FROM_FILENAME = r"regexp_extract(filename, 'events_((?:intraday_)?[0-9]{8})\.[a-z]+$', 1)"
_EMPTY_VIEW = (
    "SELECT NULL::VARCHAR AS event_date, NULL::BIGINT AS event_timestamp, NULL::VARCHAR AS event_name, "
    f"NULL::{_PARAM_TYPE} AS event_params, NULL::{_ECOMMERCE_TYPE} AS ecommerce, "
    + ", ".join(f"NULL::{kind} AS {name}" for name, kind in _TRAFFIC_TYPES.items())
    + f", NULL::{_JSON_COLUMNS['geo']} AS geo, NULL::VARCHAR AS _TABLE_SUFFIX WHERE false"
)


class DuckDBExport:
    """The export backend over a folder of GA4-shaped day files."""

    name = "duckdb"

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        if not self.store.is_dir():
            raise ExportUnavailableError(f"{self.store}: the export store folder does not exist ([reconcile] store)")

    def day_files(self, dates: list[str], *, since: str | None = None) -> list[Path]:
        """The store's files for the given YYYYMMDD dates (or every date from `since` on), sorted by name."""
        wanted = set(dates)
        files = []
        for path in self.store.iterdir():
            match = _FILE_NAME.match(path.name)
            if match and (match["date"] in wanted or (since is not None and match["date"] >= since)) and path.is_file():
                files.append(path)
        return sorted(files)

    def watermark(self, since: str) -> Watermark:
        """The newest event time and daily file among the store's files from `since` (YYYYMMDD) on."""
        return watermark_from(self._query([], duckdb_watermark_sql("events"), {"start": since}, since=since))

    def events_for(self, dates: list[str], event_names: list[str]) -> pd.DataFrame:
        frame = self._query(dates, duckdb_sql("events"), query_parameters(dates, list(event_names)))
        return normalise_export(frame, dates)

    def table_counts(self, dates: list[str]) -> dict[str, int]:
        """Rows per table suffix (`YYYYMMDD`, `intraday_YYYYMMDD`) among the files of `dates`."""
        frame = self._query(dates, duckdb_counts_sql("events"), counts_parameters(dates))
        return {str(r.suffix): int(r.n) for r in frame.itertuples(index=False)}

    def _query(self, dates: list[str], sql: str, params: dict[str, object], *, since: str | None = None) -> pd.DataFrame:
        files = self.day_files(dates, since=since)
        con = duckdb.connect(":memory:")
        try:
            self._register_events_view(con, files)
            return con.execute(sql, params).df()
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0][:300]
            raise ExportUnavailableError(f"{self.store}: could not read the export files: {message}") from None
        finally:
            con.close()

    @staticmethod
    def _register_events_view(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
        """Create view `events`: the files' rows with the export's columns plus `_TABLE_SUFFIX`."""
        ndjson = [str(f) for f in files if f.suffix in (".ndjson", ".jsonl")]
        json_any = [str(f) for f in files if f.suffix == ".json"]
        parquet = [str(f) for f in files if f.suffix == ".parquet"]
        parts: list[str] = []
        for name, paths, fmt in (("store_ndjson", ndjson, "newline_delimited"), ("store_json", json_any, "auto")):
            if paths:
                con.read_json(paths, columns=_JSON_COLUMNS, format=fmt, filename=True).create_view(name)
                parts.append(f"SELECT {_COLUMNS_SELECTED}, {_SUFFIX_FROM_FILENAME} AS _TABLE_SUFFIX FROM {name}")
        if parquet:
            rel = con.read_parquet(parquet, union_by_name=True, filename=True)
            rel.create_view("store_parquet")
            has = set(rel.columns)
            ecommerce = (
                "struct_pack(transaction_id := ecommerce.transaction_id::VARCHAR, "
                "purchase_revenue := ecommerce.purchase_revenue::DOUBLE, refund_value := ecommerce.refund_value::DOUBLE)"
                if "ecommerce" in has
                else f"NULL::{_ECOMMERCE_TYPE}"
            )
            params = (
                "list_transform(event_params, x -> struct_pack(key := x.key::VARCHAR, "
                "value := struct_pack(string_value := x.value.string_value::VARCHAR, int_value := x.value.int_value::BIGINT, "
                "float_value := x.value.float_value::DOUBLE, double_value := x.value.double_value::DOUBLE)))"
                if "event_params" in has
                else f"NULL::{_PARAM_TYPE}"
            )
            collected = (
                "struct_pack(manual_source := collected_traffic_source.manual_source::VARCHAR, "
                "gclid := collected_traffic_source.gclid::VARCHAR)"
                if "collected_traffic_source" in has
                else f"NULL::{_TRAFFIC_TYPES['collected_traffic_source']}"
            )
            last_click = (
                "struct_pack(cross_channel_campaign := struct_pack(source := "
                "session_traffic_source_last_click.cross_channel_campaign.source::VARCHAR))"
                if "session_traffic_source_last_click" in has
                else f"NULL::{_TRAFFIC_TYPES['session_traffic_source_last_click']}"
            )
            geo = ("struct_pack(country := geo.country::VARCHAR)" if "geo" in has else f"NULL::{_JSON_COLUMNS['geo']}")
            parts.append(
                "SELECT event_date::VARCHAR AS event_date, event_timestamp::BIGINT AS event_timestamp, "
                f"event_name::VARCHAR AS event_name, {params} AS event_params, {ecommerce} AS ecommerce, "
                f"{collected} AS collected_traffic_source, {last_click} AS session_traffic_source_last_click, "
                f"{geo} AS geo, {_SUFFIX_FROM_FILENAME} AS _TABLE_SUFFIX FROM store_parquet"
            )
        con.execute("CREATE VIEW events AS " + (" UNION ALL ".join(parts) if parts else _EMPTY_VIEW))
