"""The local GA4 Measurement Protocol endpoint: mpetl's stand-in for Google, offline.

``POST /mp/collect`` behaves like GA4 (204 even for invalid bodies; invalid events dropped;
seeded fault injection), ``POST /debug/mp/collect`` validates without recording, ``GET /__stats``
counts. Accepted events land in ``DATA/events_YYYYMMDD.ndjson`` in the BigQuery export's shape, for
reconciliation to query with DuckDB exactly as it queries the real export.
"""

from etl.collector.export import export_row
from etl.collector.server import CollectorServer, serve_forever
from etl.collector.spawn import SpawnedCollector, spawn_collector
from etl.collector.store import STORE_COLUMNS, STORE_GLOB, read_json_sql, read_store

__all__ = [
    "STORE_COLUMNS",
    "STORE_GLOB",
    "CollectorServer",
    "SpawnedCollector",
    "export_row",
    "read_json_sql",
    "read_store",
    "serve_forever",
    "spawn_collector",
]
