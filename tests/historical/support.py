"""The documented union query, run the way docs/deferred.md tells an offline user to run it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from etl.load.historical import historical_columns
from etl.protocol.ga4_row import duckdb_columns
from tests.support import REPO

VIEW_SQL = REPO / "jobs" / "sql" / "historical_union_view.sql"
MARKER_SQL = "(SELECT p.value.string_value FROM UNNEST(event_params) AS u(p) WHERE p.key = 'mpetl_run')"


def _columns(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"


def duckdb_view_sql() -> str:
    """The shipped BigQuery view with its three placeholders turned into DuckDB view names."""
    text = VIEW_SQL.read_text()
    for placeholder, name in (("`PROJECT.MPETL_DATASET.mpetl_events_with_historical`", "events_with_historical"),
                              ("`PROJECT.EXPORT_DATASET.events_*`", "events"),
                              ("`PROJECT.MPETL_DATASET.mpetl_historical`", "historical")):
        assert placeholder in text
        text = text.replace(placeholder, name)
    return text


def _view(con: duckdb.DuckDBPyConnection, name: str, folder: Path, pattern: str, columns: dict[str, str]) -> None:
    """A view over the folder's files with the given columns; typed and empty when there is none yet."""
    if any(folder.glob(pattern)):
        source = (f"SELECT * FROM read_json('{folder}/{pattern}', format = 'newline_delimited', "
                  f"columns = {_columns(columns)})")
    else:
        source = "SELECT " + ", ".join(f"CAST(NULL AS {kind}) AS {col}" for col, kind in columns.items()) + " LIMIT 0"
    con.execute(f"CREATE VIEW {name} AS {source}")


def union_rows(store: Path, historical: Path, table: str = "historical") -> list[dict]:
    """Every row of the union view over the collector's store and the historical folder."""
    with duckdb.connect() as con:
        con.execute("CREATE MACRO parse_date(fmt, s) AS CAST(strptime(s, fmt) AS DATE)")  # BigQuery's PARSE_DATE
        _view(con, "events", store, "events_*.ndjson", duckdb_columns())
        _view(con, "historical", historical, f"{table}_*.ndjson", historical_columns())
        con.execute(duckdb_view_sql())
        frame = con.sql(f"SELECT *, {MARKER_SQL} AS mpetl_run FROM events_with_historical").df()
    return frame.to_dict("records")
