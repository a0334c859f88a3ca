"""The collector's store: one NDJSON file per event date, appended under a lock, read with DuckDB.

Why NDJSON appends flushed before answering: the sender treats a 204 as "delivered" and marks the
ledger. If the sender is killed right after, the stored line must already be in the file (the
collector process owns it, so an OS-buffered, flushed write is enough). One file per date mirrors
the export's daily ``events_YYYYMMDD`` tables, so reconciliation can select dates the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pandas as pd

_VALUE = "STRUCT(string_value VARCHAR, int_value BIGINT, float_value DOUBLE, double_value DOUBLE)"
_PARAMS = f"STRUCT(key VARCHAR, value {_VALUE})[]"

STORE_COLUMNS: dict[str, str] = {
    "event_date": "VARCHAR",
    "event_timestamp": "BIGINT",
    "event_name": "VARCHAR",
    "event_params": _PARAMS,
    "event_server_timestamp_offset": "BIGINT",
    "user_id": "VARCHAR",
    "user_pseudo_id": "VARCHAR",
    "privacy_info": "STRUCT(analytics_storage VARCHAR, ads_storage VARCHAR, uses_transient_token VARCHAR)",
    "user_properties": (
        "STRUCT(key VARCHAR, value STRUCT(string_value VARCHAR, int_value BIGINT, float_value DOUBLE,"
        " double_value DOUBLE, set_timestamp_micros BIGINT))[]"
    ),
    "stream_id": "VARCHAR",
    "platform": "VARCHAR",
    "ecommerce": (
        "STRUCT(total_item_quantity BIGINT, purchase_revenue_in_usd DOUBLE, purchase_revenue DOUBLE,"
        " refund_value_in_usd DOUBLE, refund_value DOUBLE, shipping_value_in_usd DOUBLE, shipping_value DOUBLE,"
        " tax_value_in_usd DOUBLE, tax_value DOUBLE, unique_items BIGINT, transaction_id VARCHAR, currency VARCHAR)"
    ),
    "items": (
        "STRUCT(item_id VARCHAR, item_name VARCHAR, item_brand VARCHAR, item_variant VARCHAR,"
        " item_category VARCHAR, item_category2 VARCHAR, item_category3 VARCHAR, item_category4 VARCHAR,"
        " item_category5 VARCHAR, coupon VARCHAR, affiliation VARCHAR, location_id VARCHAR,"
        " item_list_id VARCHAR, item_list_name VARCHAR, item_list_index VARCHAR, promotion_id VARCHAR,"
        " promotion_name VARCHAR, creative_name VARCHAR, creative_slot VARCHAR, price DOUBLE,"
        " price_in_usd DOUBLE, quantity BIGINT, item_revenue DOUBLE, item_revenue_in_usd DOUBLE,"
        f" item_refund DOUBLE, item_refund_in_usd DOUBLE, item_params {_PARAMS})[]"
    ),
    "collected_traffic_source": (
        "STRUCT(manual_campaign_id VARCHAR, manual_campaign_name VARCHAR, manual_source VARCHAR,"
        " manual_medium VARCHAR, manual_term VARCHAR, manual_content VARCHAR, gclid VARCHAR, dclid VARCHAR)"
    ),
}
"""The store's schema as DuckDB types (the BigQuery export's names and nesting)."""

STORE_GLOB = "events_*.ndjson"


def store_file(data_dir: Path, event_date: str) -> Path:
    return data_dir / f"events_{event_date}.ndjson"


class EventStore:
    """Appends export-shaped rows to ``DATA/events_YYYYMMDD.ndjson``; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, IO[bytes]] = {}

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write and flush every row before returning (the caller answers 204 only after)."""
        by_date: dict[str, list[bytes]] = {}
        for row in rows:
            by_date.setdefault(row["event_date"], []).append(orjson.dumps(row) + b"\n")
        with self._lock:
            for date, lines in by_date.items():
                handle = self._files.get(date)
                if handle is None:
                    handle = self._files[date] = open(store_file(self.data_dir, date), "ab")  # noqa: SIM115
                handle.write(b"".join(lines))
                handle.flush()

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def _columns_sql() -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in STORE_COLUMNS.items()) + "}"


def read_json_sql(files: list[Path]) -> str:
    """A DuckDB ``read_json(...)`` table expression over the given store files, with the schema."""
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_json([{quoted}], format = 'newline_delimited', columns = {_columns_sql()})"


def read_store(data_dir: Path | str) -> pd.DataFrame:
    """Every stored event as a DataFrame (export columns; structs as dicts, arrays as lists).

    An empty or missing store gives an empty frame with the same columns. DuckDB (and pandas) are
    imported here, not at module load: the collector process itself never needs them.
    """
    import duckdb
    files = sorted(Path(data_dir).glob(STORE_GLOB))
    with duckdb.connect() as con:
        if not files:
            empty = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in STORE_COLUMNS.items())
            return con.sql(f"SELECT {empty} LIMIT 0").df()
        return con.sql(f"SELECT * FROM {read_json_sql(files)}").df()
