"""POST `/v1/events:ingest` to the Data Manager API (or the local collector): OAuth, limits, errors mapped.

What the sender gets back is the same `Answer` as from the MP transport, with Google's words added:
`request_id` on a 200 (kept per event in the ledger), `reason` on a failure (`INVALID_ARGUMENT
NOT_ALLOWLISTED`), `event_errors` when a 400's violations all name single events (fast-fail: the
sender rejects those and resends the rest), `retry_after_s` from `Retry-After` or `RetryInfo.retryDelay`
on a 429 `RESOURCE_EXHAUSTED`, and `give_up` when this machine's daily quota is spent (never retried).
Driver errors (httpx) are mapped here; their text never holds the token (it is only in a header).

Every attempt first waits for the minute limiter and takes one request from the daily quota: Google
counts requests, retries included (limits page: 300/min, 100,000/day per Cloud project).
"""

from __future__ import annotations

import asyncio

import orjson

from etl.load.datamanager.auth import CredentialsError, TokenSource
from etl.load.datamanager.errors import parse_error, request_id_of
from etl.load.datamanager.quota import DailyQuota, MinuteLimiter
from etl.load.transport import Answer

INGEST_PATH = "/v1/events:ingest"


def _seconds(value: str | None) -> float | None:
    """`Retry-After: 3` → 3.0 (the HTTP-date form is not used by Google's APIs: ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class DataManagerTransport:
    """Bounded keep-alive connections (Google suggests ≤ 10 requests at once), bearer token per request."""

    def __init__(self, endpoint: str, tokens: TokenSource, *, concurrency: int, timeout_s: float,
                 limiter: MinuteLimiter, quota: DailyQuota) -> None:
        import httpx  # here, not at import time: a dry run never pays for it

        self._httpx = httpx
        self._tokens = tokens
        self._limiter = limiter
        self._quota = quota
        self._url = httpx.URL(endpoint.rstrip("/") + INGEST_PATH)
        self._timeout = httpx.Timeout(timeout_s)
        self._client = httpx.AsyncClient(http2=endpoint.startswith("https://"), timeout=self._timeout,
                                         limits=httpx.Limits(max_connections=concurrency,
                                                             max_keepalive_connections=concurrency))
        self.attempts = 0
        self.unauthorized = 0

    async def post(self, body: bytes) -> Answer:
        answer = await self._attempt(body)
        if answer.status == 401 and not answer.give_up:
            # An access token can be revoked or expire early: one fresh token, one more try.
            self._tokens.invalidate()
            answer = await self._attempt(body)
        return answer

    async def _attempt(self, body: bytes) -> Answer:
        try:
            token = await self._tokens.atoken()
        except CredentialsError as exc:
            return Answer(401, error=str(exc), reason="UNAUTHENTICATED", give_up=True)
        await self._limiter.acquire()
        if not await asyncio.to_thread(self._quota.take):
            return Answer(None, error="the daily request quota is spent", reason="DAILY_QUOTA", give_up=True)
        self.attempts += 1
        httpx = self._httpx
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "user-agent": "mpetl/0.1"}
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            never_left = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            return Answer(None, error=f"{type(exc).__name__}: {str(exc)[:200]}", maybe_delivered=not never_left)
        content = response.content
        if response.status_code == 200:
            try:
                request_id = request_id_of(orjson.loads(content).get("requestId"))
            except (orjson.JSONDecodeError, AttributeError):
                request_id = None
            return Answer(200, request_id=request_id)
        error = parse_error(response.status_code, content)
        if response.status_code == 401:
            self.unauthorized += 1
        retry_after = _seconds(response.headers.get("retry-after"))
        if retry_after is None:
            retry_after = error.retry_delay_s
        event_errors = None if error.request_level else error.by_event
        return Answer(response.status_code, retry_after, error=error.message or None, reason=error.summary(),
                      event_errors=event_errors)

    async def aclose(self) -> None:
        await self._client.aclose()
