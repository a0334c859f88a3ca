"""Load: the ledger (state), request batching, sending with retries, and the deferred-events file.

Public surface: `open_ledger`, `Ledger` (the interface) and its states, `send_pending` with
`SendSettings`/`RetryPolicy`/`SendStats`/`Stopper`, `PrivacyManifest`, the transports
(`HttpTransport`, `OutboxTransport`), `redact`, `write_data_import` and `write_historical`.
"""

from etl.load.batching import Request, build_requests
from etl.load.data_import import write_data_import
from etl.load.historical import write_historical
from etl.load.ledger import DeferredEvent, Ledger, PendingEvent, RunOutcome, SqliteLedger, is_postgres_url, open_ledger
from etl.load.manifest import PrivacyManifest
from etl.load.sender import RetryPolicy, SendSettings, SendStats, Stopper, send_pending
from etl.load.transport import HttpTransport, OutboxTransport, redact

__all__ = [
    "DeferredEvent",
    "HttpTransport",
    "Ledger",
    "OutboxTransport",
    "PendingEvent",
    "PrivacyManifest",
    "Request",
    "RetryPolicy",
    "RunOutcome",
    "SendSettings",
    "SendStats",
    "SqliteLedger",
    "Stopper",
    "build_requests",
    "is_postgres_url",
    "open_ledger",
    "redact",
    "send_pending",
    "write_data_import",
    "write_historical",
]
