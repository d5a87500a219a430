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
            try:
                length = int(self.headers.get("content-length") or 0)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self.close_connection = True
                self._send(HttpResponse(400, [("content-type", "application/json")], b'{"message":"Bad Request"}'))
                return None
            if length > MAX_PAYLOAD_BYTES:  # API Gateway's own cap, before reading (or allocating) anything
                self.close_connection = True
                self._send(HttpResponse(413, [("content-type", "application/json")],
                                        b'{"message":"Request Entity Too Large"}'))
                return None
            try:
                body = self.rfile.read(length) if length else b""
            except (TimeoutError, ConnectionError):
                body = b""
            if len(body) < length:
                # The client went away or stalled mid-body: like API Gateway, never invoke with a partial body.
                self.close_connection = True
                return None
            return body

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
