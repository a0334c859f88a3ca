"""Reconciliation: prove which sent events arrived in the GA4 export (or the local collector's store).

Public surface:
- `reconcile(config, *, out_dir, run_id=None, since=None, until=None, now=None) -> Reconciliation`
- `Reconciliation` (`.verdict`, `.exit_code`, `.to_dict()`, `.summary_text()`): verdicts reconciled,
  provisional, not_reconciled, duplicated (exit 3 like not_reconciled), export_unavailable
- `find_export_backend(config) -> ExportBackend`, with `DuckDBExport` and `BigQueryExport`
- errors: `ReconcileError` (also an unknown `--run-id`), `LedgerUnavailableError`, `ExportUnavailableError` (all exit 2)

`BigQueryExport` imports google-cloud-bigquery only when it queries, so importing this package
stays cheap.
"""

from __future__ import annotations

from etl.reconcile.bigquery_export import BigQueryExport
from etl.reconcile.duckdb_export import DuckDBExport
from etl.reconcile.errors import ExportUnavailableError, LedgerUnavailableError, ReconcileError
from etl.reconcile.export_backend import ExportBackend, find_export_backend
from etl.reconcile.result import DUPLICATED, NOT_RECONCILED, PROVISIONAL, RECONCILED, Reconciliation
from etl.reconcile.run import reconcile

__all__ = [
    "DUPLICATED",
    "NOT_RECONCILED",
    "PROVISIONAL",
    "RECONCILED",
    "BigQueryExport",
    "DuckDBExport",
    "ExportBackend",
    "ExportUnavailableError",
    "LedgerUnavailableError",
    "ReconcileError",
    "Reconciliation",
    "find_export_backend",
    "reconcile",
]
