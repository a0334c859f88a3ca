"""Load: the ledger (state), request batching, and sending with retries.

Public surface: `Ledger`, `send_pending`, `RetryPolicy`, `SendStats`, `PrivacyManifest`, the
transports (`HttpTransport`, `OutboxTransport`) and `redact`.
"""

from etl.load.batching import Request, build_requests
from etl.load.ledger import Ledger, PendingEvent
from etl.load.manifest import PrivacyManifest
from etl.load.sender import RetryPolicy, SendStats, send_pending
from etl.load.transport import HttpTransport, OutboxTransport, redact

__all__ = [
    "HttpTransport",
    "Ledger",
    "OutboxTransport",
    "PendingEvent",
    "PrivacyManifest",
    "Request",
    "RetryPolicy",
    "SendStats",
    "build_requests",
    "redact",
    "send_pending",
]
