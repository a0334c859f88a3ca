"""Where request bodies go: Google (or the local collector) over HTTP, or an outbox file.

Dry-run and validate go through exactly the same batching, ledger and gate code as a real send;
only the transport differs. The API secret lives only inside `HttpTransport`: it is passed to httpx
as a query param and scrubbed from anything that could be printed.
"""

from __future__ import annotations

import asyncio
import zlib
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


# What a response may cost. /mp/collect answers 2xx with an empty body (only the status line counts: MP
# "does not return HTTP error codes, even if an event is malformed",
# https://developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events), and the debug endpoint a few hundred bytes of
# JSON per request. A hostile or broken endpoint once answered 2 MB of gzip that inflated to 2 GB (RSS 6.5 GB):
# bodies are read as raw bytes and inflated here, within both caps; past either the body is dropped
# unread and the answer keeps its status.
MAX_BODY_WIRE_BYTES = 1 << 20  # 1 MiB as sent
MAX_BODY_BYTES = 4 << 20  # 4 MiB inflated
MAX_DEBUG_MESSAGES = 100  # Google lists a few per request; more is an endpoint gone wrong


def _unreadable(why: str) -> list[dict]:
    return [{"fieldPath": "", "description": f"debug endpoint answered {why}", "validationCode": "VALUE_INVALID"}]


async def read_capped(response: httpx.Response, *, wire_cap: int = MAX_BODY_WIRE_BYTES,
                      inflated_cap: int = MAX_BODY_BYTES) -> bytes | None:
    """The body of a streamed response, inflated (gzip, deflate or none); None when it is over a cap or in an
    encoding this reader does not inflate. Memory stays within the caps plus one network chunk."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
    elif encoding in ("", "identity"):
        inflater = None
    else:
        return None
    wire = 0
    body = bytearray()
    async for chunk in response.aiter_raw():
        wire += len(chunk)
        if wire > wire_cap:
            return None
        if inflater is None:
            body += chunk
        else:
            try:
                body += inflater.decompress(chunk, inflated_cap + 1 - len(body))
            except zlib.error:
                return None
            if inflater.unconsumed_tail:
                return None  # more output is waiting than the cap allows
        if len(body) > inflated_cap:
            return None
    return bytes(body)


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


def _debug_messages(content: bytes | None) -> list[dict]:
    """The debug endpoint's validationMessages (at most MAX_DEBUG_MESSAGES), or one message saying why not."""
    if content is None:
        return _unreadable(f"a body over {MAX_BODY_WIRE_BYTES >> 20} MiB sent or {MAX_BODY_BYTES >> 20} MiB inflated, "
                           "or in an encoding mpetl does not read (not read)")
    try:
        messages = orjson.loads(content).get("validationMessages", [])
    except (orjson.JSONDecodeError, AttributeError):
        return _unreadable("non-JSON")
    if not isinstance(messages, list):
        return _unreadable("validationMessages that are not a list")
    return messages[:MAX_DEBUG_MESSAGES]


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
                 debug: bool = False, stream_param: str = "measurement_id") -> None:
        """`measurement_id` is the stream's id; for an app stream it is the Firebase App ID and
        `stream_param` is "firebase_app_id" (MP reference: the query names the stream one way or the other)."""
        import ssl

        import certifi
        import httpx  # here, not at import time: a dry run never pays for httpx (and the rich it pulls in)

        self._httpx = httpx
        self._secret = api_secret
        path = "/debug/mp/collect" if debug else "/mp/collect"
        # Built once: parsing the URL and merging params per request was a third of httpx's CPU.
        self._url = httpx.URL(endpoint.rstrip("/") + path, params={stream_param: measurement_id,
                                                                   "api_secret": api_secret})
        # gzip at most: the body is inflated by read_capped, which reads no other encoding.
        self._headers = {"content-type": "application/json", "user-agent": "mpetl/0.1", "accept-encoding": "gzip"}
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
        httpx = self._httpx
        try:
            request = httpx.Request("POST", self._url, headers=self._headers, content=body, extensions=self._extensions)
            response = await client.send(request, stream=True)
            try:
                content = await read_capped(response)
            except httpx.HTTPError:
                content = None  # the status line arrived: the request was answered, its body is lost
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            # httpx messages can embed the URL, which holds the secret: keep the class name and a scrubbed text.
            never_left = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            return Answer(None, error=redact(f"{type(exc).__name__}: {exc}", self._secret),
                          maybe_delivered=not never_left)
        finally:
            self._idle.put_nowait(client)
        messages = None
        if self._debug and response.status_code == 200:
            messages = _debug_messages(content)
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
