"""Google's Data Manager API as the second destination (`[destination] api = "data_manager"`).

Only the request builder and the transport differ from the Measurement Protocol path; the ledger,
the sender, accounting and reconciliation are the same. docs/data-manager.md holds Google's facts.

Public surface: `Destination`, `build_dm_requests` (request.py), `DataManagerTransport`
(transport.py), `load_credentials`/`TokenSource`/`CredentialsError`/`SCOPE` (auth.py),
`MinuteLimiter`/`DailyQuota` (quota.py), `reject_reasons` (rejects.py) and `request_statuses`
(diagnostics.py).
"""

from etl.load.datamanager.auth import SCOPE, CredentialsError, TokenSource, load_credentials
from etl.load.datamanager.diagnostics import request_statuses
from etl.load.datamanager.quota import DailyQuota, MinuteLimiter
from etl.load.datamanager.rejects import reject_reasons
from etl.load.datamanager.request import Destination, build_dm_requests, rfc3339_micros
from etl.load.datamanager.transport import DataManagerTransport

__all__ = [
    "SCOPE",
    "CredentialsError",
    "DailyQuota",
    "DataManagerTransport",
    "Destination",
    "MinuteLimiter",
    "TokenSource",
    "build_dm_requests",
    "load_credentials",
    "reject_reasons",
    "request_statuses",
    "rfc3339_micros",
]
