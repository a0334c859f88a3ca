"""Errors reconciliation raises: each one stops the run with exit code 2 (bad input or config).

Why separate classes: a scheduler only sees the exit code, but the person reading the log needs to
know whether the ledger, the local store or BigQuery was the problem. Messages name paths, tables
and config keys, never a cell value.
"""

from __future__ import annotations

from etl.errors import MpetlError


class ReconcileError(MpetlError):
    """Base class: reconciliation could not compare what was sent with what arrived."""


class LedgerUnavailableError(ReconcileError):
    """The ledger file is missing, unreadable or lacks the documented `events` table."""


class ExportUnavailableError(ReconcileError):
    """The export (local store folder or BigQuery dataset) could not be read."""
