"""Where request bodies go: Google (or the local collector) over HTTP, or an outbox file.

Dry-run and validate go through exactly the same batching, ledger and gate code as a real send;
only the transport differs. The API secret lives only inside `HttpTransport`: it is passed to httpx
as a query param and scrubbed from anything that could be printed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection error, timeout)
    retry_after_s: float | None = None
    error: str | None = None  # already redacted
    validation_messages: list[dict] | None = None
    # No answer, but the request may have reached the endpoint (a reset or a read timeout after the
    # body went out). False for errors before the first byte (connection refused, connect timeout).
    maybe_delivered: bool = False
    # Data Manager answers (etl/load/datamanager): the request id of a success, Google's reason for a
    # failure, the violations of single events (index in the request → list), and a refusal that no
    # retry can help (the daily quota is spent).
    request_id: str | None = None
    reason: str | None = None
    event_errors: dict[int, list] | None = None
    give_up: bool = False

    @property
    def ok(self) -> bool:
        """A 2xx: GA took the request (which, for /mp/collect, says nothing about what it kept)."""
        return self.status is not None and 200 <= self.status < 300


class Transport(Protocol):
    async def post(self, body: bytes) -> Answer: ...
    async def aclose(self) -> None: ...


def redact(text: str, secret: str | None) -> str:
    """Remove the secret (and its URL-encoded form) from a message before anyone can see it."""
    if not secret:
        return text
    from urllib.parse import quote, quote_plus

    for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
        text = text.replace(form, "***")
    return text


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpTransport:
    """POST to `<endpoint>/mp/collect` (or `/debug/mp/collect`): keep-alive, HTTP/2 where offered.

    One small client per concurrency slot, each keeping its own connection alive: httpcore's shared
    pool scans every connection for every request, which made CPU, not the network, the limit at
    32+ requests in flight.
    """

    def __init__(self, endpoint: str, measurement_id: str, api_secret: str, *, concurrency: int, timeout_s: float,
                 debug: bool = False) -> None:
        import ssl

        import certifi
        import httpx  # here, not at import time: a dry run never pays for httpx (and the rich it pulls in)

        self._httpx = httpx
        self._secret = api_secret
        path = "/debug/mp/collect" if debug else "/mp/collect"
        # Built once: parsing the URL and merging params per request was a third of httpx's CPU.
        self._url = httpx.URL(endpoint.rstrip("/") + path, params={"measurement_id": measurement_id,
                                                                   "api_secret": api_secret})
        self._headers = {"content-type": "application/json", "user-agent": "mpetl/0.1"}
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        self._debug = debug
        # One TLS context for every slot: building one per client cost ~2 s of CPU at the start of a send.
        tls = ssl.create_default_context(cafile=certifi.where())
        self._clients = [
            httpx.AsyncClient(
                verify=tls,
                http2=endpoint.startswith("https://"),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            for _ in range(concurrency)
        ]
        self._idle: asyncio.Queue[httpx.AsyncClient] | None = None

    async def post(self, body: bytes) -> Answer:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for client in self._clients:
                self._idle.put_nowait(client)
        client = await self._idle.get()
        try:
            httpx = self._httpx
            request = httpx.Request("POST", self._url, headers=self._headers, content=body, extensions=self._extensions)
            response = await client.send(request)
        except self._httpx.HTTPError as exc:
            # httpx messages can embed the URL, which holds the secret: keep the class name and a scrubbed text.
            httpx = self._httpx
            never_left = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            return Answer(None, error=redact(f"{type(exc).__name__}: {exc}", self._secret),
                          maybe_delivered=not never_left)
        finally:
            self._idle.put_nowait(client)
        messages = None
        if self._debug and response.status_code == 200:
            try:
                messages = orjson.loads(response.content).get("validationMessages", [])
            except (orjson.JSONDecodeError, AttributeError):
                messages = [{"fieldPath": "", "description": "debug endpoint answered non-JSON", "validationCode": "VALUE_INVALID"}]
        return Answer(response.status_code, _retry_after(response), validation_messages=messages)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class OutboxTransport:
    """Dry-run: write each exact body as one line of `requests.ndjson` and answer as GA would (204)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    async def post(self, body: bytes) -> Answer:
        self._file.write(body + b"\n")
        return Answer(204)

    async def aclose(self) -> None:
        self._file.close()
