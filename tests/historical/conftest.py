"""The bqemulator fixture is the reconcile suite's (one way to start it, one set of quirks)."""

from tests.reconcile.conftest import bigquery_emulator  # noqa: F401
