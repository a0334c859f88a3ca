"""Load: the ledger (state), request batching, sending with retries, and the deferred-events file.

Public surface: `open_ledger`, `Ledger` (the interface) and its states, `send_pending` with
`SendSettings`/`RetryPolicy`/`SendStats`/`Stopper`, `PrivacyManifest`, the transports
(`HttpTransport`, `OutboxTransport`), `redact`, and the deferred events' outputs, each exactly once
(`deliver_data_import`, `deliver_historical`; the protocol is etl/load/outputs.py).
"""

from etl.load.batching import Request, build_requests
from etl.load.data_import import deliver_data_import, write_data_import
from etl.load.historical import deliver_historical
from etl.load.ledger import DeferredEvent, Ledger, PendingEvent, RunOutcome, SqliteLedger, is_postgres_url, open_ledger
from etl.load.manifest import PrivacyManifest
from etl.load.outputs import Delivery, is_partial, remove_partials, write_atomic
from etl.load.sender import RetryPolicy, SendSettings, SendStats, Stopper, send_pending
from etl.load.transport import HttpTransport, OutboxTransport, redact

__all__ = [
    "DeferredEvent",
    "Delivery",
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
    "deliver_data_import",
    "deliver_historical",
    "is_partial",
    "is_postgres_url",
    "open_ledger",
    "redact",
    "remove_partials",
    "send_pending",
    "write_atomic",
    "write_data_import",
]
