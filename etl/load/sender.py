"""Sends pending ledger events: bounded concurrency, retries with backoff, write-ahead group commits.

Why a producer/worker pool over one event loop: the ledger is touched from one thread only, memory
is bounded by the queue (2 × concurrency requests), and a slow endpoint never stalls the others.

Why group commits: two committed ledger writes per request were half the cost of a run. Now the
producer marks a *window* of requests `in_flight` in one transaction before any of them is queued
(still before their first byte), and results are committed in batches at most `flush_interval_s`
apart. The price is a bound, not a loss: after a kill -9, the events that may be sent twice are those
marked in flight (≤ 3 × concurrency requests: the window, the queue, the workers) plus those whose
`sent` mark was not yet flushed (≤ `flush_interval_s` of answers or `flush_events`); all come back
as failed + possible_duplicate and are sent again. Nothing is lost.

Google's clock decides age: before an event is batched, the wall clock (never `--now`) says whether
it is still inside the window; an event that aged out is split from its request (the client's fresh
events still go) and deferred as `expired`, once.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from etl.clock import wall_micros
from etl.load.batching import Oversized, Request, build_requests
from etl.load.ledger import Ledger, PendingEvent
from etl.load.manifest import PrivacyManifest
from etl.load.transport import Answer, Transport
from etl.policy import ITEM_PARAMS, PLACE_FIELDS, REQUEST_FIELDS, PrivacyViolation, allowed_params
from etl.protocol import scrub_message


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
    """Connection errors, timeouts, 429 and 5xx are worth another try; any other 4xx is not (nor a
    spent daily quota)."""
    if answer.give_up:
        return False
    return answer.status is None or answer.status == 429 or answer.status >= 500


class Stopper:
    """Why a run should stop early: its deadline, or SIGTERM/SIGINT from cron, Airflow or a person.

    Signal handlers only record the reason; the planner and the sender look at it between steps, so
    in-flight requests finish (or reach their own deadline), their events are marked, and the summary
    is written.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._deadline: float | None = None
        self._previous: dict[int, object] = {}

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def set_deadline(self, seconds: float | None) -> None:
        self._deadline = None if seconds is None else time.monotonic() + seconds

    @property
    def stopped(self) -> bool:
        if self.reason is None and self._deadline is not None and time.monotonic() >= self._deadline:
            self.reason = "deadline"
        return self.reason is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread (Airflow runs tasks there too)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, lambda signum, _frame: self.stop(signal.Signals(signum).name))

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


@dataclass
class SendStats:
    total_events: int = 0
    requests_sent: int = 0
    events_sent: int = 0
    events_failed: int = 0
    expired: int = 0
    rejected_at_send: int = 0
    retries: int = 0
    possible_duplicates: int = 0
    gate_messages: Counter[str] = field(default_factory=Counter)
    debug_messages: Counter[str] = field(default_factory=Counter)
    http_statuses: Counter[str] = field(default_factory=Counter)
    # Failed attempts by cause ("ConnectError", "HTTP 503"), and the last one's cause and (redacted) text:
    # why a send exits 4, told in the log, summary.json and Airflow's failure, not only "41 not delivered".
    errors: Counter[str] = field(default_factory=Counter)
    last_error_class: str | None = None
    last_error: str | None = None
    stopped: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events_sent / max(1e-9, time.monotonic() - self.started)

    def note_error(self, cause: str, message: str | None) -> None:
        """One failed attempt (a retry counts again): its cause counted, and kept as the last error."""
        self.errors[cause] += 1
        self.last_error_class, self.last_error = cause, message

    def to_dict(self) -> dict:
        return {
            "total_events": self.total_events,
            "requests_sent": self.requests_sent,
            "events_sent": self.events_sent,
            "events_failed": self.events_failed,
            "expired": self.expired,
            "rejected_at_send": self.rejected_at_send,
            "retries": self.retries,
            "possible_duplicates": self.possible_duplicates,
            "gate_messages": dict(self.gate_messages),
            "debug_messages": dict(self.debug_messages),
            "http_statuses": dict(self.http_statuses),
            "events_per_second": round(self.rate, 1),
            "errors": dict(self.errors.most_common()),
            "last_error": None if self.last_error_class is None else {
                "error": self.last_error_class, "count": self.errors[self.last_error_class], "message": self.last_error},
            "stopped": self.stopped,
        }


def error_class(error: str | None) -> str:
    """`ConnectError` from a transport's "ConnectError: All connection attempts failed" (its first word,
    when it names an exception class), else "no answer"."""
    head = (error or "").split(":", 1)[0].strip()
    return head if head.isidentifier() else "no answer"


def check_minimal(body: dict, extra: Mapping[str, Iterable[str]] | None) -> None:
    """The last line of defence: a field outside the allowlist means a bug upstream; stop the run."""
    outside = set(body) - REQUEST_FIELDS
    for name, allowed in PLACE_FIELDS.items():
        outside |= {f"{name}.{k}" for k in set(body.get(name) or {}) - allowed}
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


@dataclass(frozen=True)
class SendSettings:
    run_id: str
    policy: RetryPolicy
    concurrency: int
    max_age_micros: int  # the window minus its safety margin, measured from the wall clock
    clock: Callable[[], int] = wall_micros
    request_deadline_s: float = 60.0
    validation_behavior: str | None = None
    max_requests: int | None = None  # validate: a sample of this many requests; the rest stays pending
    shard: tuple[int, int] | None = None
    seed: int | None = None
    extra_params: Mapping[str, Iterable[str]] | None = None
    flush_interval_s: float = 0.25
    flush_events: int = 2000
    identity_field: str = "client_id"  # app_instance_id for an app stream ([property] firebase_app_id)
    # The Data Manager API (etl/load/datamanager): its request builder (default: MP's `build_requests`),
    # and why `max_requests` is set (`daily_quota`: what does not fit stays planned, the run says so).
    request_builder: Callable[..., Iterable] | None = None
    budget_reason: str | None = None


class _Marks:
    """Results waiting for their group commit; flushed by size, by age, and at the end."""

    def __init__(self, ledger: Ledger, settings: SendSettings) -> None:
        self.ledger, self.settings = ledger, settings
        self.sent: list[tuple[int, int, bool, str | None]] = []
        self.failed: dict[str | None, list[tuple[int, int, bool]]] = {}
        self.expired: list[int] = []
        self.pending = 0
        self.last_flush = time.monotonic()

    def add_sent(self, ids: Iterable[int], attempts: int, maybe: bool, request_id: str | None = None) -> None:
        rows = [(i, attempts, maybe, request_id) for i in ids]
        self.sent.extend(rows)
        self._added(len(rows))

    def add_failed(self, ids: Iterable[int], attempts: int, maybe: bool, reason: str | None) -> None:
        rows = [(i, attempts, maybe) for i in ids]
        self.failed.setdefault(reason, []).extend(rows)
        self._added(len(rows))

    def add_expired(self, event_id: int) -> None:
        self.expired.append(event_id)
        self._added(1)

    def _added(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.settings.flush_events:
            self.flush()

    def due(self) -> bool:
        return self.pending > 0 and time.monotonic() - self.last_flush >= self.settings.flush_interval_s

    def flush(self) -> None:
        run_id = self.settings.run_id
        if self.sent:
            ids, attempts, maybe, request_ids = zip(*self.sent, strict=True)
            extra = {"request_ids": request_ids} if any(request_ids) else {}
            self.ledger.mark_sent(ids, run_id, attempts=attempts, maybe_delivered=maybe, **extra)
        for reason, rows in self.failed.items():
            ids, attempts, maybe = zip(*rows, strict=True)
            self.ledger.mark_failed(ids, run_id, attempts=attempts, maybe_delivered=maybe, reason=reason)
        if self.expired:
            self.ledger.mark_expired(self.expired, run_id)
        self.sent, self.failed, self.expired, self.pending = [], {}, [], 0
        self.last_flush = time.monotonic()


async def _sleep_unless_stopped(seconds: float, stopper: Stopper) -> None:
    end = time.monotonic() + seconds
    while not stopper.stopped and (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.1))


async def _deliver(transport: Transport, request: Request, settings: SendSettings, rng: random.Random,
                   stats: SendStats, stopper: Stopper) -> Delivery:
    attempt = 0
    ambiguous = False
    while True:
        attempt += 1
        try:
            # The whole exchange, not each read: a server that dribbles a byte at a time cannot hold the run.
            async with asyncio.timeout(settings.request_deadline_s):
                answer = await transport.post(request.body)
        except TimeoutError:
            answer = Answer(None, error=f"TimeoutError: no complete answer within {settings.request_deadline_s:g} s",
                            maybe_delivered=True)
        if answer.status is not None:
            stats.http_statuses[str(answer.status)] += 1
            if not answer.ok:
                stats.note_error(f"HTTP {answer.status}", f"HTTP {answer.status}")
        else:
            stats.http_statuses["no_answer"] += 1
            stats.note_error(error_class(answer.error), answer.error)
            ambiguous = ambiguous or answer.maybe_delivered
        if answer.ok or not retryable(answer) or attempt >= settings.policy.max_attempts or stopper.stopped:
            return Delivery(answer, attempt, ambiguous)
        stats.retries += 1
        await _sleep_unless_stopped(settings.policy.delay(attempt, answer, rng), stopper)
        if stopper.stopped:
            return Delivery(answer, attempt, ambiguous)


def _fresh(events: Iterator[PendingEvent], settings: SendSettings, marks: _Marks, stats: SendStats) -> Iterator[PendingEvent]:
    """Pending events still inside the window by the wall clock now; the others expire (deferred, once)."""
    for event in events:
        if event.timestamp_micros < settings.clock() - settings.max_age_micros:
            marks.add_expired(event.id)
            stats.expired += 1
            continue
        yield event


def _refuse_events(ledger: Ledger, request, event_errors: dict, settings: SendSettings, stats: SendStats):
    """Reject the events an answer names (final, with Google's reason); the rest of the request, or None."""
    named = sorted(i for i in event_errors if 0 <= i < len(request.ids))
    if not named:
        return request  # indices outside the request: nothing to remove, the answer is the request's
    for i in named:
        ledger.mark_rejected([request.ids[i]], settings.run_id, request.refusal_reason(i, event_errors[i]))
        for error in event_errors[i]:
            stats.gate_messages[f"{error.reason} events: {error.field or 'event'} (Data Manager)"] += 1
    stats.rejected_at_send += len(named)
    return request.without(named)


async def _send_all(ledger: Ledger, transport: Transport, settings: SendSettings, manifest: PrivacyManifest,
                    stats: SendStats, stopper: Stopper, progress: Callable[[SendStats], None] | None) -> None:
    concurrency = settings.concurrency
    queue: asyncio.Queue[tuple[Request, dict] | None] = asyncio.Queue(maxsize=2 * concurrency)
    rng = random.Random(settings.seed)
    marks = _Marks(ledger, settings)
    done = asyncio.Event()

    async def launch(window: list[tuple[Request, dict]]) -> None:
        ledger.mark_in_flight([i for request, _ in window for i in request.ids])  # write-ahead, one transaction
        for job in window:
            await queue.put(job)

    async def produce() -> None:
        queued = 0
        window: list[tuple[Request, dict]] = []
        builder = settings.request_builder or functools.partial(build_requests, identity_field=settings.identity_field)
        requests = builder(_fresh(ledger.iter_pending(), settings, marks, stats), run_id=settings.run_id,
                           validation_behavior=settings.validation_behavior)
        for item in requests:
            if stopper.stopped:
                break
            if settings.max_requests is not None and queued >= settings.max_requests:
                budget_hit.append(settings.budget_reason)
                break  # a validation sample, or the daily quota: the rest stays pending
            if isinstance(item, Oversized):
                ledger.mark_rejected([item.event.id], settings.run_id,
                                     f"event is {item.size} bytes: larger than one request may be (130 kB)")
                stats.rejected_at_send += 1
                stats.gate_messages["VALUE_OUT_OF_BOUNDS events: event larger than one request may be"] += 1
                continue
            body = item.gate_body()
            check_minimal(body, settings.extra_params)
            window.append((item, body))
            queued += 1
            if len(window) >= concurrency:
                await launch(window)
                window = []
            if marks.due():
                marks.flush()
        if window:
            await launch(window)
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while (job := await queue.get()) is not None:
            request, body = job
            if stopper.stopped:
                # Marked in flight but never sent: back to pending, with no doubt about delivery.
                marks.add_failed(request.ids, 0, False, f"stopped: {stopper.reason}")
                stats.events_failed += len(request.ids)
                continue
            delivery = await _deliver(transport, request, settings, rng, stats, stopper)
            answer = delivery.answer
            while answer.event_errors and not stopper.stopped:
                # Fast-fail (Data Manager): the named events are refused, nothing else was processed.
                rest = _refuse_events(ledger, request, answer.event_errors, settings, stats)
                if rest is request:
                    break  # no event of this request is named: the request's own failure
                request = rest
                if request is None:
                    break
                body = request.gate_body()
                delivery = await _deliver(transport, request, settings, rng, stats, stopper)
                answer = delivery.answer
            if request is None:
                pass
            elif answer.ok:
                marks.add_sent(request.ids, delivery.attempts, delivery.ambiguous, answer.request_id)
                if delivery.ambiguous:
                    stats.possible_duplicates += len(request.ids)
                stats.requests_sent += 1
                stats.events_sent += len(request.ids)
                manifest.observe(body)
                for message in answer.validation_messages or []:
                    stats.debug_messages[_message_key(message)] += 1
            else:
                reason = f"http {answer.status}" if answer.status is not None else "no answer"
                if answer.reason:
                    reason += f" {answer.reason}"
                marks.add_failed(request.ids, delivery.attempts, delivery.ambiguous, reason)
                stats.events_failed += len(request.ids)
            if progress is not None:
                progress(stats)

    async def flusher() -> None:
        while not done.is_set():
            await asyncio.sleep(settings.flush_interval_s / 2)
            if marks.due():
                marks.flush()

    budget_hit: list[str | None] = []
    flush_task = asyncio.create_task(flusher())
    try:
        await asyncio.gather(produce(), *(work() for _ in range(concurrency)))
    finally:
        done.set()
        await flush_task
        marks.flush()
        await transport.aclose()
    stats.stopped = stopper.reason or next((r for r in budget_hit if r), None)


def send_pending(ledger: Ledger, transport: Transport, settings: SendSettings, *,
                 manifest: PrivacyManifest | None = None, progress: Callable[[SendStats], None] | None = None,
                 stopper: Stopper | None = None) -> SendStats:
    """Send every pending event in the ledger (this run's and any an earlier run left behind)."""
    stats = SendStats()
    stopper = stopper or Stopper()
    stats.total_events = ledger.snapshot_pending(shard=settings.shard)
    asyncio.run(_send_all(ledger, transport, settings, manifest if manifest is not None else PrivacyManifest(),
                          stats, stopper, progress))
    return stats
