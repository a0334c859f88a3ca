"""The local GA4 Measurement Protocol endpoint: mpetl's stand-in for Google, offline.

``POST /mp/collect`` behaves like GA4 (204 even for invalid bodies; invalid events dropped;
seeded fault injection), ``POST /debug/mp/collect`` validates without recording, ``GET /__stats``
counts. Accepted events land in ``DATA/events_YYYYMMDD.ndjson`` in the BigQuery export's shape, for
reconciliation to query with DuckDB exactly as it queries the real export.

The names below load on first use (PEP 562): `mpetl --help` lists `mpetl collector` without paying
for the HTTP server and the validator (~0.1 s) it never starts.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "CollectorServer": "server",
    "FaultOptions": "faults",
    "NO_FAULTS": "faults",
    "SpawnedCollector": "spawn",
    "spawn_collector": "spawn",
    "STORE_COLUMNS": "store",
    "STORE_GLOB": "store",
    "read_json_sql": "store",
    "read_store": "store",
    "export_row": "export",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'etl.collector' has no attribute {name!r}")
    return getattr(importlib.import_module(f"etl.collector.{_HOME[name]}"), name)
