"""Seeded fault injection for the local MP endpoint.

Why seeded and one draw set per request: a reliability test must be repeatable. Every request to
``/mp/collect`` draws the same three numbers from one ``random.Random(seed)`` whatever happens to
it, so the same seed and the same request order give the same sequence of outcomes.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

FAIL = "fail"  # answer 500 or 503, record nothing
THROTTLE = "throttle"  # answer 429 with Retry-After: 1, record nothing
RESET = "reset"  # store, then cut the connection mid-response: the answer is lost, not the request
DROP = "drop"  # answer 204, record nothing (what GA4 does to an event it does not like)


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request: ``kind`` is None for a normal answer."""

    kind: str | None
    status: int | None  # for FAIL: 500 or 503
    delay_s: float


class FaultInjector:
    def __init__(
        self,
        *,
        fail_rate: float = 0.0,
        throttle_rate: float = 0.0,
        drop_rate: float = 0.0,
        reset_rate: float = 0.0,
        latency_ms: float = 0,
        latency_jitter_ms: float = 0,
        seed: int = 0,
    ) -> None:
        rates = {"fail_rate": fail_rate, "throttle_rate": throttle_rate, "drop_rate": drop_rate, "reset_rate": reset_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fail_rate + throttle_rate + drop_rate + reset_rate must not exceed 1")
        if latency_ms < 0 or latency_jitter_ms < 0:
            raise ValueError("latency_ms and latency_jitter_ms must not be negative")
        # Bands on [0, 1): fail | throttle | reset | drop | normal.
        self._bands = (
            (fail_rate, FAIL),
            (fail_rate + throttle_rate, THROTTLE),
            (fail_rate + throttle_rate + reset_rate, RESET),
            (fail_rate + throttle_rate + reset_rate + drop_rate, DROP),
        )
        self._latency_s = latency_ms / 1000
        self._jitter_s = latency_jitter_ms / 1000
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def next_plan(self) -> FaultPlan:
        with self._lock:
            u_fault, u_status, u_jitter = self._rng.random(), self._rng.random(), self._rng.random()
        kind = next((k for edge, k in self._bands if u_fault < edge), None)
        status = (500 if u_status < 0.5 else 503) if kind == FAIL else None
        return FaultPlan(kind, status, self._latency_s + self._jitter_s * u_jitter)
