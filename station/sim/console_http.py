"""The simulated console's HTTP side: reads requests (Content-Length or chunked, bounded), hands them
to a ``SimConsole`` and writes its answer, or drops the connection when a fault says so."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from station.sim.console import SimConsole

log = logging.getLogger("station.sim.console")

MAX_REQUEST_BODY = 64 * 1024 * 1024
_MAX_CHUNK_LINE = 1024


class BodyError(ValueError):
    """The request body is malformed or too large."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiRequest:
    """One request as the console's routes see it. Header names are lower-case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    client: str


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None  # sent instead of JSON (a corrupt reply)

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.status == 204 else json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Reply:
    """What the HTTP layer should do: wait ``delay`` seconds, then answer, or drop the connection."""

    response: ApiResponse | None
    delay: float = 0.0

    @property
    def drop(self) -> bool:
        return self.response is None


class _Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...


def read_chunked(stream: _Readable, limit: int) -> bytes:
    """A chunked request body (node's form-data uploads use it), at most ``limit`` bytes."""
    out = bytearray()
    while True:
        line = stream.readline(_MAX_CHUNK_LINE)
        if not line.endswith(b"\n"):
            raise BodyError("chunk size line missing or too long")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError("bad chunk size") from None
        if size < 0:
            raise BodyError("bad chunk size")
        if size == 0:
            break
        if len(out) + size > limit:
            raise BodyError(f"request body larger than {limit} bytes", status=413)
        data = stream.read(size)
        if len(data) != size:
            raise BodyError("request body ended inside a chunk")
        out += data
        if stream.readline(_MAX_CHUNK_LINE).strip():
            raise BodyError("chunk not followed by CRLF")
    for _ in range(64):  # trailers, up to the blank line
        line = stream.readline(_MAX_CHUNK_LINE)
        if line in (b"\r\n", b"\n", b""):
            return bytes(out)
    raise BodyError("too many trailer lines")


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # a client that stops sending mid-request must not hold a thread forever
    server_version = "benchflash-sim-console"
    # Headers and body go out in two writes; with Nagle on, each answer waits out a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except BodyError as exc:
            self.close_connection = True
            self._send(ApiResponse(exc.status, {"error": "invalid_request", "error_description": str(exc)}))
            return
        except (OSError, TimeoutError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = ApiRequest(
            method=self.command,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client=self.client_address[0],
        )
        reply = self.server.console.handle(request)
        if reply.delay > 0 and self.server.stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.response is None:
            # A dropped connection: no status line, no body.
            self.close_connection = True
            return
        self._send(reply.response)

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return read_chunked(self.rfile, limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        if not (raw_length.strip().isascii() and raw_length.strip().isdigit()):
            raise BodyError("bad Content-Length")
        length = int(raw_length)
        if length > limit:
            raise BodyError(f"request body larger than {limit} bytes", status=413)
        data = self.rfile.read(length)
        if len(data) != length:
            raise BodyError("request body shorter than its Content-Length")
        return data

    def _send(self, response: ApiResponse) -> None:
        payload = response.encode()
        try:
            self.send_response(response.status)
            own_type = any(name.lower() == "content-type" for name, _ in response.headers)
            if response.status != 204 and not own_type:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        # Request lines only (never headers): the Authorization header is not logged.
        log.debug("%s " + format, self.client_address[0], *args)


class ConsoleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], console: SimConsole, *, max_body: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.console = console
        self.max_body = max_body
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client that hangs up mid-answer (a timeout, Ctrl-C, a killed station) is part of the
        # job, not a server fault: no traceback on stderr for it. Anything else is still shown.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s hung up", client_address)
            return
        super().handle_error(request, client_address)


class ConsoleServer:
    """Serves a ``SimConsole`` on ``host:port`` (port 0 picks a free one); ``url`` is where it listens."""

    def __init__(
        self, console: SimConsole, host: str = "127.0.0.1", port: int = 0, *, max_body: int = MAX_REQUEST_BODY
    ) -> None:
        self.console = console
        self._httpd = ConsoleHTTPServer((host, port), console, max_body=max_body)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ConsoleServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-console", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` or KeyboardInterrupt."""
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ConsoleServer:
        return self.start() if self._thread is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
