"""Seeded fault injection for the local MP endpoint.

Why seeded and one draw set per request: a reliability test must be repeatable. Every request to
``/mp/collect`` draws the same three numbers from one ``random.Random(seed)`` whatever happens to
it, so the same seed and the same request order give the same sequence of outcomes.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class FaultOptions:
    """The seven fault knobs of the local endpoint, in one place for the CLI, the server and spawn.

    Each field's `help` is what `mpetl collector --help` shows; the CLI's options are made from these
    fields, so a new knob is one line here. Rates are shares of /mp/collect requests in [0, 1] and add
    up to at most 1; latencies are milliseconds added to every /mp/collect request.
    """

    fail_rate: float = field(default=0.0, metadata={"help": "share of requests answered 500/503"})
    throttle_rate: float = field(default=0.0, metadata={"help": "share of requests answered 429 with Retry-After: 1"})
    drop_rate: float = field(default=0.0, metadata={
        "help": "share of requests answered 204 but not recorded (what GA does to bad events)"})
    reset_rate: float = field(default=0.0, metadata={
        "help": "share of requests recorded, then the connection cut before the answer"})
    latency_ms: float = field(default=0.0, metadata={"help": "latency added to every /mp/collect request"})
    latency_jitter_ms: float = field(default=0.0, metadata={"help": "extra random latency, up to this"})
    seed: int = field(default=0, metadata={"help": "seed of the fault injection: same seed, same outcomes"})

    def __post_init__(self) -> None:
        rates = {"fail_rate": self.fail_rate, "throttle_rate": self.throttle_rate, "drop_rate": self.drop_rate,
                 "reset_rate": self.reset_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fail_rate + throttle_rate + drop_rate + reset_rate must not exceed 1")
        if not (0 <= self.latency_ms < math.inf and 0 <= self.latency_jitter_ms < math.inf):
            raise ValueError("latency_ms and latency_jitter_ms must be finite and not negative")


NO_FAULTS = FaultOptions()


class FaultInjector:
    def __init__(self, options: FaultOptions = NO_FAULTS) -> None:
        fail_rate, throttle_rate = options.fail_rate, options.throttle_rate
        reset_rate, drop_rate = options.reset_rate, options.drop_rate
        # Bands on [0, 1): fail | throttle | reset | drop | normal.
        self._bands = (
            (fail_rate, FAIL),
            (fail_rate + throttle_rate, THROTTLE),
            (fail_rate + throttle_rate + reset_rate, RESET),
            (fail_rate + throttle_rate + reset_rate + drop_rate, DROP),
        )
        self._latency_s = options.latency_ms / 1000
        self._jitter_s = options.latency_jitter_ms / 1000
        self._rng = random.Random(options.seed)
        self._lock = threading.Lock()

    def next_plan(self) -> FaultPlan:
        with self._lock:
            u_fault, u_status, u_jitter = self._rng.random(), self._rng.random(), self._rng.random()
        kind = next((k for edge, k in self._bands if u_fault < edge), None)
        status = (500 if u_status < 0.5 else 503) if kind == FAIL else None
        return FaultPlan(kind, status, self._latency_s + self._jitter_s * u_jitter)
