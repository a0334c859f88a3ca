"""Sends pending ledger events: bounded concurrency, retries with backoff, write-ahead marks.

Why a producer/worker pool over one event loop: the ledger (SQLite) is touched from one thread only,
memory is bounded by the queue (2 × concurrency requests), and a slow endpoint never stalls the
others. Every body passes the local MP validator (strict: no user_data, no ip_override) before it may
leave; what fails the gate is marked failed with the reasons, never sent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from etl.load.batching import Oversized, Request, build_requests
from etl.load.ledger import Ledger
from etl.load.manifest import PrivacyManifest
from etl.load.transport import Answer, Transport
from etl.policy import ITEM_PARAMS, REQUEST_FIELDS, PrivacyViolation, allowed_params
from etl.protocol import scrub_message, validate_request


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, answer: Answer, rng: random.Random) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins (capped at max_s)."""
        if answer.retry_after_s is not None:
            return min(self.max_s, answer.retry_after_s)
        return rng.uniform(0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))


def retryable(answer: Answer) -> bool:
    """Connection errors, timeouts, 429 and 5xx are worth another try; any other 4xx is not."""
    return answer.status is None or answer.status == 429 or answer.status >= 500


@dataclass
class SendStats:
    total_events: int = 0
    requests_sent: int = 0
    events_sent: int = 0
    events_failed: int = 0
    retries: int = 0
    possible_duplicates: int = 0
    oversized: int = 0
    gate_rejected: int = 0
    gate_messages: Counter[str] = field(default_factory=Counter)
    debug_messages: Counter[str] = field(default_factory=Counter)
    http_statuses: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events_sent / max(1e-9, time.monotonic() - self.started)

    def to_dict(self) -> dict:
        return {
            "total_events": self.total_events,
            "requests_sent": self.requests_sent,
            "events_sent": self.events_sent,
            "events_failed": self.events_failed,
            "retries": self.retries,
            "possible_duplicates": self.possible_duplicates,
            "oversized": self.oversized,
            "gate_rejected": self.gate_rejected,
            "gate_messages": dict(self.gate_messages),
            "debug_messages": dict(self.debug_messages),
            "http_statuses": dict(self.http_statuses),
            "events_per_second": round(self.rate, 1),
            "last_error": self.last_error,
        }


def check_minimal(body: dict, extra: Mapping[str, Iterable[str]] | None) -> None:
    """The last line of defence: a field outside the allowlist means a bug upstream; stop the run."""
    outside = set(body) - REQUEST_FIELDS
    for event in body.get("events", []):
        params = event.get("params", {})
        outside |= {f"{event.get('name')}.{p}" for p in set(params) - allowed_params(event.get("name", ""), extra)}
        for item in params.get("items", []) or []:
            outside |= {f"items.{k}" for k in set(item) - ITEM_PARAMS}
    if outside:
        raise PrivacyViolation(f"refusing to send fields outside the allowlist: {', '.join(sorted(outside))}")


def _message_key(message: dict) -> str:
    # Scrubbed: the debug endpoint quotes values (and a hostile one echoes anything) into summary.json.
    message = scrub_message(message)
    return f"{message['validationCode']} {message['fieldPath']}: {message['description']}"


@dataclass(frozen=True)
class Delivery:
    answer: Answer
    attempts: int
    # An attempt got no answer (reset, timeout): the endpoint may have recorded it, so a later
    # success may have delivered these events twice. GA has no idempotency key to prevent it.
    ambiguous: bool


async def _deliver(transport: Transport, request: Request, policy: RetryPolicy, rng: random.Random,
                   stats: SendStats) -> Delivery:
    attempt = 0
    ambiguous = False
    while True:
        attempt += 1
        answer = await transport.post(request.body)
        if answer.status is not None:
            stats.http_statuses[str(answer.status)] += 1
        else:
            stats.http_statuses["no_answer"] += 1
            stats.last_error = answer.error
            ambiguous = ambiguous or answer.maybe_delivered
        if answer.ok:
            return Delivery(answer, attempt, ambiguous)
        if not retryable(answer) or attempt >= policy.max_attempts:
            return Delivery(answer, attempt, ambiguous)
        stats.retries += 1
        await asyncio.sleep(policy.delay(attempt, answer, rng))


async def _send_all(ledger: Ledger, transport: Transport, *, run_id: str, policy: RetryPolicy, concurrency: int,
                    now_micros: int, manifest: PrivacyManifest, stats: SendStats,
                    progress: Callable[[SendStats], None] | None, seed: int | None,
                    extra_params: Mapping[str, Iterable[str]] | None, max_requests: int | None) -> None:
    queue: asyncio.Queue[tuple[Request, dict] | None] = asyncio.Queue(maxsize=2 * concurrency)
    rng = random.Random(seed)

    async def produce() -> None:
        queued = 0
        for item in build_requests(ledger.iter_pending()):
            if max_requests is not None and queued >= max_requests:
                break  # a validation sample: the rest stays pending
            if isinstance(item, Oversized):
                ledger.mark([item.key], "failed", http_status=413)
                stats.oversized += 1
                stats.events_failed += 1
                continue
            body = orjson.loads(item.body)
            check_minimal(body, extra_params)
            messages = validate_request(body, now_micros=now_micros, strict=True)
            if messages:
                ledger.mark(list(item.keys), "failed")
                stats.gate_rejected += len(item.keys)
                stats.events_failed += len(item.keys)
                stats.gate_messages.update(_message_key(m) for m in messages)
                continue
            await queue.put((item, body))
            queued += 1
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while (job := await queue.get()) is not None:
            request, body = job
            keys = list(request.keys)
            ledger.mark(keys, "in_flight", request_hash=request.body_hash)
            delivery = await _deliver(transport, request, policy, rng, stats)
            answer, attempts = delivery.answer, delivery.attempts
            if answer.ok:
                ledger.mark(keys, "sent", http_status=answer.status, attempts=attempts, sent_run_id=run_id,
                            possible_duplicate=delivery.ambiguous or None)
                if delivery.ambiguous:
                    stats.possible_duplicates += len(keys)
                stats.requests_sent += 1
                stats.events_sent += len(keys)
                manifest.observe(body)
                for message in answer.validation_messages or []:
                    stats.debug_messages[_message_key(message)] += 1
            else:
                ledger.mark(keys, "failed", http_status=answer.status, attempts=attempts)
                stats.events_failed += len(keys)
            if progress is not None:
                progress(stats)

    await asyncio.gather(produce(), *(work() for _ in range(concurrency)))
    await transport.aclose()


def send_pending(ledger: Ledger, transport: Transport, *, run_id: str, now_micros: int, policy: RetryPolicy,
                 concurrency: int, manifest: PrivacyManifest | None = None,
                 progress: Callable[[SendStats], None] | None = None, seed: int | None = None,
                 extra_params: Mapping[str, Iterable[str]] | None = None,
                 max_requests: int | None = None) -> SendStats:
    """Send every pending event in the ledger (this run's and any an earlier run left behind).

    `max_requests` stops after that many requests (a sample for the debug endpoint).
    """
    stats = SendStats()
    stats.total_events = ledger.snapshot_pending()
    asyncio.run(
        _send_all(ledger, transport, run_id=run_id, policy=policy, concurrency=concurrency, now_micros=now_micros,
                  manifest=manifest if manifest is not None else PrivacyManifest(), stats=stats, progress=progress,
                  seed=seed, extra_params=extra_params, max_requests=max_requests)
    )
    return stats
