"""Thread-safe counters behind ``GET /__stats``: what arrived, what was stored, what was lost and why."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()  # events, by reason
        self._dropped_requests: Counter[str] = Counter()  # requests dropped whole, by reason
        self._injected: Counter[str] = Counter()  # faults, by kind
        self._responses: Counter[str] = Counter()  # /mp/collect answers, by status

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._totals[name] += n

    def drop_events(self, reason: str, n: int) -> None:
        if n:
            with self._lock:
                self._dropped[reason] += n

    def drop_request(self, reason: str) -> None:
        with self._lock:
            self._dropped_requests[reason] += 1

    def injected(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1

    def response(self, status: int | str) -> None:
        with self._lock:
            self._responses[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._totals["requests"],
                "debug_requests": self._totals["debug_requests"],
                "events_received": self._totals["events_received"],
                "events_stored": self._totals["events_stored"],
                "events_redated": self._totals["events_redated"],  # stored, timestamp reset (RELAXED)
                "events_refused": self._totals["events_refused"],
                "live_traffic": self._totals["live_traffic"],  # the site's own page_views (POST /__live), not ours
                # The Data Manager API (etl/collector/datamanager.py)
                "dm_requests": self._totals["dm_requests"],
                "dm_unauthorized": self._totals["dm_unauthorized"],
                "dm_validate_requests": self._totals["dm_validate_requests"],
                "dm_events_invalid": self._totals["dm_events_invalid"],
                "tokens_issued": self._totals["tokens_issued"],
                "tokens_refused": self._totals["tokens_refused"],
                "dropped": dict(self._dropped),
                "dropped_requests": dict(self._dropped_requests),
                "injected": dict(self._injected),
                "responses": dict(self._responses),
            }
