"""The HTTP side of one port: read a request as API Gateway does (its body cap, never a partial body), hand it to
the page or to the gateway, write the answer, and print the one request line `make run` shows."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from local.apigw import HttpResponse
from local.site import is_page

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway HTTP APIs refuse larger request bodies

Api = Callable[[str, str, str, list[tuple[str, str]], bytes, str], HttpResponse]


def handler_class(*, api: Api | None, page: Callable[[str], HttpResponse], log: Callable[[str], None],
                  client_timeout: Callable[[], float]) -> type[BaseHTTPRequestHandler]:
    """`api` None: a page-only port (a second origin, as the deployed page is on CloudFront, not on the API)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: without this, each answer waits ~40 ms
        server_version = "local-gateway"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            self.timeout = client_timeout()  # a stalled client loses its connection, not a thread
            super().setup()

        def _handle(self) -> None:
            started = time.perf_counter()
            path, _, query = self.path.partition("?")
            body = self._body()
            if body is None:
                return
            reads = self.command in ("GET", "HEAD")
            if reads and (api is None or is_page(path)):
                self._send(page(path))
                return
            if api is None:
                self._send(HttpResponse(405, [("content-type", "text/plain")], b"method not allowed"))
                return
            response = api(self.command, path, query, list(self.headers.items()), body, self.client_address[0])
            self._send(response)
            caller = _caller_label(self.headers.get("authorization") or "", self.client_address[0])
            log(f"{self.command:6} {path:14} {response.status}  {caller:24} "
                f"{(time.perf_counter() - started) * 1000:7.1f} ms")

        def _body(self) -> bytes | None:
            """The whole body, or None when the request was answered (or dropped) already."""
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():  # wins over Content-Length
                return self._chunked_body()
            try:
                length = int(self.headers.get("content-length") or 0)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                return self._refuse(400, b'{"message":"Bad Request"}')
            if length > MAX_PAYLOAD_BYTES:  # API Gateway's own cap, before reading (or allocating) anything
                return self._refuse(413, b'{"message":"Request Entity Too Large"}')
            return self._read(length)

        def _chunked_body(self) -> bytes | None:
            """A body sent in chunks (no Content-Length), assembled before the function sees it, as API Gateway
            does; the same cap on the whole."""
            parts: list[bytes] = []
            total = 0
            while True:
                line = self._line()
                if line is None:
                    return None
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size < 0:
                        raise ValueError(size)
                except ValueError:
                    return self._refuse(400, b'{"message":"Bad Request"}')
                total += size
                if total > MAX_PAYLOAD_BYTES:
                    return self._refuse(413, b'{"message":"Request Entity Too Large"}')
                if size == 0:
                    break
                chunk = self._read(size)
                end = None if chunk is None else self._line()
                if chunk is None or end is None:
                    return None
                if end != b"":
                    return self._refuse(400, b'{"message":"Bad Request"}')
                parts.append(chunk)
            while True:  # trailer fields, read and dropped, up to the empty line
                trailer = self._line()
                if trailer is None:
                    return None
                if trailer == b"":
                    return b"".join(parts)

        def _line(self) -> bytes | None:
            try:
                line = self.rfile.readline(1026)
            except (TimeoutError, ConnectionError):
                line = b""
            if not line.endswith(b"\n"):
                self.close_connection = True  # gone, stalled or garbage: never a partial body
                return None
            return line.rstrip(b"\r\n")

        def _read(self, length: int) -> bytes | None:
            try:
                body = self.rfile.read(length) if length else b""
            except (TimeoutError, ConnectionError):
                body = b""
            if len(body) < length:
                # The client went away or stalled mid-body: like API Gateway, never invoke with a partial body.
                self.close_connection = True
                return None
            return body

        def _refuse(self, status: int, body: bytes) -> None:
            self.close_connection = True
            self._send(HttpResponse(status, [("content-type", "application/json")], body))

        def _send(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    return Handler


def _caller_label(authorization: str, ip: str) -> str:
    """Who called, for the request line: a key is shown only as a short hash of itself."""
    if authorization:
        return f"key#{hashlib.sha256(authorization.encode()).hexdigest()[:8]}"
    return f"anon {ip}"
