"""The wall clock, in one place: Google measures the 72 h window from when a request arrives.

Why a module of its own: every age decision (defer when planning, expire before sending, the resend
window) must read the same clock, and tests inject another one here instead of a `--now` flag that
could make an event look fresher than it is. To simulate another night for a whole process, pin the
process clock (libfaketime, docs/ledger.md, "Google's clock"); nothing in mpetl can.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

MICROS_PER_HOUR = 3_600_000_000


def wall_micros() -> int:
    """Now, as integer microseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1000


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)
