"""The local MP endpoint as a real HTTP server (stdlib, HTTP/1.1 keep-alive, one thread per connection).

Why the stdlib server: the sender under test is a real HTTP client with connection pooling,
timeouts and retries; it must meet real sockets, real keep-alive and real connection resets, not a
mock. Nothing here needs a framework.

Logging never shows a query string: it holds the api_secret. Access lines are ``METHOD PATH
STATUS`` on the ``etl.collector.access`` logger; the stdlib's own messages (which can quote the raw
request line) are replaced by ones that carry only the status code.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import struct
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from etl.collector.datamanager import MAX_BODY_BYTES as DM_MAX_BODY_BYTES
from etl.collector.datamanager import DataManagerEndpoint, Trust
from etl.collector.endpoint import DEFAULT_STREAM_ID, Answer, Endpoint
from etl.collector.faults import NO_FAULTS, FaultInjector, FaultOptions
from etl.collector.stats import Stats
from etl.collector.store import EventStore
from etl.protocol.rules import MAX_BODY_BYTES

log = logging.getLogger("etl.collector.access")

_MAX_READ = max(8 * MAX_BODY_BYTES, 2 * DM_MAX_BODY_BYTES)  # read oversized bodies (to refuse them as Google does), within bounds
_COLLECT_PATHS = ("/mp/collect", "/debug/mp/collect")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The stdlib default backlog (5) makes concurrent senders wait out SYN retries (~1 s each).
    request_queue_size = 1024
    endpoint: Endpoint
    data_manager: DataManagerEndpoint | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, no exception text: a message could quote request data."""
        exc = sys.exc_info()[1]
        tb = exc.__traceback__ if exc else None
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"
        log.error("handler error: %s at %s", type(exc).__name__, where)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mpetl-collector/1"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection (e.g. from a killed sender) is let go after this
    server: _Server

    # --- routing ---------------------------------------------------------------------------
    def do_POST(self) -> None:
        path, query = self._route()
        raw = self._read_body()
        if raw is None:
            return
        endpoint = self.server.endpoint
        if path == "/mp/collect":
            self._answer(endpoint.collect(query, raw))
        elif path == "/debug/mp/collect":
            self._answer(endpoint.debug(query, raw))
        elif path == "/__live":
            self._answer(endpoint.live_traffic(raw))
        elif path == "/__withhold":
            self._answer(endpoint.withhold(raw))
        elif path == "/__release":
            self._answer(endpoint.release())
        elif self.server.data_manager is not None and path in ("/v1/events:ingest", "/token"):
            dm = self.server.data_manager
            self._answer(dm.ingest(raw, self.headers.get("Authorization")) if path != "/token" else dm.token(raw))
        else:
            self._answer(Answer(404))

    def do_GET(self) -> None:
        path, query = self._route()
        if path == "/__stats":
            self._answer(self.server.endpoint.stats_answer())
        elif path == "/v1/requestStatus:retrieve" and self.server.data_manager is not None:
            self._answer(self.server.data_manager.request_status(query, self.headers.get("Authorization")))
        elif path in _COLLECT_PATHS:
            self._answer(Answer(405, {"Allow": "POST"}))
        else:
            self._answer(Answer(404))

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        return parts.path, parse_qs(parts.query)

    # --- body ------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 400/413 (the connection is then closed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return self._give_up(400)
        if length > _MAX_READ:
            return self._give_up(413)
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError:
                return self._give_up(400)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_READ:
                return self._give_up(413)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _give_up(self, status: int) -> None:
        self.close_connection = True
        self._answer(Answer(status))
        return None

    # --- answers ---------------------------------------------------------------------------
    def _answer(self, answer: Answer) -> None:
        if answer.reset:
            self._reset()
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 204:
            self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)

    def _reset(self) -> None:
        """Start an answer, then abort the connection (RST): the client gets no valid response."""
        log.info("%s %s reset", self.command, urlsplit(self.path).path)
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 20")
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # --- logging: method, path, status; never the query ------------------------------------
    def parse_request(self) -> bool:
        self.path = ""  # so a malformed request line never logs the previous request's path
        return super().parse_request()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s %s", self.command or "-", urlsplit(self.path).path or "-", int(code) if str(code).isdigit() else code)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        code = args[0] if args and isinstance(args[0], int) else "-"
        log.warning("request error %s", code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class CollectorServer:
    """The local MP endpoint, in process. ``start()`` serves on a background thread.

    ``port=0`` picks a free port; read it from ``.port`` / ``.url`` after ``start()``.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        measurement_id: str | None = None,
        api_secret: str,
        firebase_app_id: str | None = None,
        timezone: str = "UTC",
        now: dt.datetime | None = None,
        faults: FaultOptions = NO_FAULTS,
        stream_id: str = DEFAULT_STREAM_ID,
        daily_lag_s: float = 0.0,
        dm_trust: Trust | None = None,
        property_id: str = "123456789",
        dm_token_ttl_s: float = 3600.0,
        dm_requests_per_minute: int | None = None,
        dm_status_delay_s: float = 0.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_port = port
        self._stats = Stats()
        self._store = EventStore(self.data_dir, daily_lag_s=daily_lag_s)
        self._endpoint = Endpoint(
            self._store,
            measurement_id=measurement_id,
            firebase_app_id=firebase_app_id,
            api_secret=api_secret,
            timezone=timezone,
            now=now,
            faults=FaultInjector(faults),
            stats=self._stats,
            stream_id=stream_id,
        )
        # The Data Manager API beside the MP endpoint, when a test service account is trusted.
        self._data_manager = (DataManagerEndpoint(self._endpoint, dm_trust, property_id=property_id,
                                                  token_ttl_s=dm_token_ttl_s, per_minute=dm_requests_per_minute,
                                                  status_delay_s=dm_status_delay_s)
                              if dm_trust is not None else None)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> _Server:
        if self._server is None:
            cls = _Server6 if ":" in self.host else _Server
            self._server = cls((self.host, self._requested_port), _Handler)
            self._server.endpoint = self._endpoint
            self._server.data_manager = self._data_manager
        return self._server

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the collector is not listening yet: call start()")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def start(self) -> CollectorServer:
        server = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="mpetl-collector", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        """Serve on the calling thread until interrupted; ``ready(url)`` is called once listening."""
        server = self._bind()
        if ready is not None:
            ready(self.url)
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        self._store.close()

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

