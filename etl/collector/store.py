"""The collector's store: NDJSON files per event date, appended under a lock, read with DuckDB.

Why NDJSON appends flushed before answering: the sender treats a 204 as "delivered" and marks the
ledger. If the sender is killed right after, the stored line must already be in the file (the
collector process owns it, so an OS-buffered, flushed write is enough).

Why two kinds of file: the GA4 export streams events into ``events_intraday_YYYYMMDD`` first and
writes the daily ``events_YYYYMMDD`` table later, then deletes the intraday one; late events for a
day that already has its daily table go into that table. The store does the same with files:
with ``daily_lag_s > 0`` a date's rows land in ``events_intraday_D.ndjson`` and are moved into
``events_D.ndjson`` (atomically, by rename) ``daily_lag_s`` seconds after the first of them
arrived; later rows for D go straight into the daily file. With ``daily_lag_s == 0`` (the default)
rows go straight into the daily file. A reader therefore uses the daily file of a date when it
exists, else the intraday one, and never counts a row twice.

For tests of reconciliation's evidence rules, `withhold` takes given rows out of their tables and
`release` puts them back later: the late update Google makes to a daily table within three days.
"""

from __future__ import annotations

import os
import threading
import time
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
    "app_info": "STRUCT(id VARCHAR, version VARCHAR, firebase_app_id VARCHAR)",
    "geo": "STRUCT(city VARCHAR, country VARCHAR, continent VARCHAR, region VARCHAR, sub_continent VARCHAR, metro VARCHAR)",
    "device": (
        "STRUCT(category VARCHAR, mobile_brand_name VARCHAR, mobile_model_name VARCHAR, operating_system VARCHAR,"
        " operating_system_version VARCHAR, language VARCHAR, web_info STRUCT(browser VARCHAR, browser_version VARCHAR))"
    ),
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
    "session_traffic_source_last_click": (
        "STRUCT(manual_campaign STRUCT(campaign_name VARCHAR, source VARCHAR, medium VARCHAR),"
        " cross_channel_campaign STRUCT(campaign_name VARCHAR, source VARCHAR, medium VARCHAR,"
        " default_channel_group VARCHAR))"
    ),
}
"""The store's schema as DuckDB types (the BigQuery export's names and nesting)."""

STORE_GLOB = "events_*.ndjson"
WITHHELD_FILE = ".withheld.ndjson"  # rows `withhold` took out; no reader's glob matches it


def store_file(data_dir: Path, event_date: str) -> Path:
    return data_dir / f"events_{event_date}.ndjson"


def intraday_file(data_dir: Path, event_date: str) -> Path:
    return data_dir / f"events_intraday_{event_date}.ndjson"


class EventStore:
    """Appends export-shaped rows to the intraday or daily file of their date; thread-safe."""

    def __init__(self, data_dir: Path, *, daily_lag_s: float = 0.0) -> None:
        if daily_lag_s < 0:
            raise ValueError("daily_lag_s must not be negative")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.daily_lag_s = daily_lag_s
        self._lock = threading.Lock()
        self._files: dict[Path, IO[bytes]] = {}
        self._pending: dict[str, float] = {}  # date -> monotonic time its first intraday row arrived
        self._stop = threading.Event()
        self._promoter: threading.Thread | None = None
        if daily_lag_s > 0:
            self._promoter = threading.Thread(target=self._promote_loop, name="mpetl-store-daily", daemon=True)
            self._promoter.start()

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write and flush every row before returning (the caller answers 204 only after)."""
        by_date: dict[str, list[bytes]] = {}
        for row in rows:
            by_date.setdefault(row["event_date"], []).append(orjson.dumps(row) + b"\n")
        with self._lock:
            self._write(by_date)

    def _write(self, by_date: dict[str, list[bytes]]) -> None:
        for date, lines in by_date.items():
            daily = store_file(self.data_dir, date)
            if self.daily_lag_s > 0 and not daily.exists():
                target = intraday_file(self.data_dir, date)
                self._pending.setdefault(date, time.monotonic())
            else:
                target = daily
            handle = self._files.get(target)
            if handle is None:
                handle = self._files[target] = open(target, "ab")  # noqa: SIM115
            handle.write(b"".join(lines))
            handle.flush()

    def withhold(self, transaction_ids: set[str]) -> int:
        """Take our marked rows with these ids out of their tables, kept aside for `release` (a late update).

        Why: Google updates daily tables "for up to three days after the dates of the events"; an
        event processed late is absent from the export first and appears later. Rows without our
        `mpetl_run` marker (the site's own tag) stay. Returns the rows withheld.
        """
        held: list[bytes] = []
        with self._lock:
            for path in store_files(self.data_dir):
                kept: list[bytes] = []
                lines = path.read_bytes().splitlines(keepends=True)
                for line in lines:
                    (held if _is_ours_with_id(orjson.loads(line), transaction_ids) else kept).append(line)
                if len(kept) != len(lines):
                    handle = self._files.pop(path, None)
                    if handle is not None:
                        handle.close()
                    _replace(path, b"".join(kept))
            with open(self.data_dir / WITHHELD_FILE, "ab") as aside:
                aside.write(b"".join(held))
        return len(held)

    def release(self) -> int:
        """Put every withheld row back into the table of its date (as Google's late update would)."""
        aside = self.data_dir / WITHHELD_FILE
        with self._lock:
            lines = aside.read_bytes().splitlines(keepends=True) if aside.exists() else []
            by_date: dict[str, list[bytes]] = {}
            for line in lines:
                by_date.setdefault(orjson.loads(line)["event_date"], []).append(line)
            self._write(by_date)
            aside.unlink(missing_ok=True)
        return len(lines)

    def promote_due(self, *, now: float | None = None) -> list[str]:
        """Move every intraday file older than the lag into its daily file; returns the dates moved."""
        moment = time.monotonic() if now is None else now
        moved = []
        with self._lock:
            for date, first in sorted(self._pending.items()):
                if moment - first >= self.daily_lag_s:
                    self._promote(date)
                    moved.append(date)
        return moved

    def _promote(self, date: str) -> None:
        """Daily := daily + intraday (written aside, then renamed into place); the intraday file goes."""
        intraday, daily = intraday_file(self.data_dir, date), store_file(self.data_dir, date)
        for path in (intraday, daily):
            handle = self._files.pop(path, None)
            if handle is not None:
                handle.close()
        aside = daily.with_name(f".{daily.name}.tmp")
        with open(aside, "wb") as out:
            for part in (daily, intraday):
                if part.exists():
                    out.write(part.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, daily)
        intraday.unlink(missing_ok=True)
        del self._pending[date]

    def _promote_loop(self) -> None:
        tick = min(0.5, max(0.02, self.daily_lag_s / 4))
        while not self._stop.wait(tick):
            self.promote_due()

    def close(self) -> None:
        self._stop.set()
        if self._promoter is not None and self._promoter is not threading.current_thread():
            self._promoter.join(timeout=5)
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def _is_ours_with_id(row: dict[str, Any], transaction_ids: set[str]) -> bool:
    params = {p["key"]: p["value"]["string_value"] for p in row.get("event_params") or []}
    tid = (row.get("ecommerce") or {}).get("transaction_id") or params.get("transaction_id")
    return tid in transaction_ids and params.get("mpetl_run") is not None


def _replace(path: Path, data: bytes) -> None:
    """Rewrite a table file whole: written aside, fsynced, renamed over it."""
    aside = path.with_name(f".{path.name}.tmp")
    with open(aside, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(aside, path)


def _columns_sql() -> str:
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in STORE_COLUMNS.items()) + "}"


def read_json_sql(files: list[Path]) -> str:
    """A DuckDB ``read_json(...)`` table expression over the given store files, with the schema."""
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_json([{quoted}], format = 'newline_delimited', columns = {_columns_sql()})"


def store_files(data_dir: Path) -> list[Path]:
    """The files a reader should use: per date the daily file when it exists, else the intraday one."""
    chosen: dict[str, Path] = {}
    for path in sorted(data_dir.glob(STORE_GLOB)):
        date = path.stem.removeprefix("events_").removeprefix("intraday_")
        if path.stem.startswith("events_intraday_"):
            chosen.setdefault(date, path)
        else:
            chosen[date] = path
    return [chosen[d] for d in sorted(chosen)]


def read_store(data_dir: Path | str) -> pd.DataFrame:
    """Every stored event (per date: daily, else intraday) as a DataFrame.

    Export columns; structs as dicts, arrays as lists.
    An empty or missing store gives an empty frame with the same columns. DuckDB (and pandas) are
    imported here, not at module load: the collector process itself never needs them.
    """
    import duckdb

    files = store_files(Path(data_dir))
    with duckdb.connect() as con:
        if not files:
            empty = ", ".join(f"CAST(NULL AS {kind}) AS {name}" for name, kind in STORE_COLUMNS.items())
            return con.sql(f"SELECT {empty} LIMIT 0").df()
        return con.sql(f"SELECT * FROM {read_json_sql(files)}").df()
