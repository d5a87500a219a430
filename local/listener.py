"""An HTTP server that holds its port from the start but accepts connections only once everything behind it is
ready.

Binding first tells the system its port (CORS origins and config.json name it) before anything else starts;
until `open()` calls listen(), a connection to that port is refused by the kernel, so a client polling during
start-up sees "connection refused" and tries again, never a request that reaches half a system.
"""

from __future__ import annotations

import errno
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PortBusy(RuntimeError):
    pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that left before its answer was written (a closed tab, a cancelled fetch) is not a fault of the
        # system: socketserver would print a traceback for it on the console of `make run`.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Listener:
    def __init__(self, host: str, port: int) -> None:
        # The handler comes with open(): what serves the port may be built only once the port is known.
        self._server = _Server((host, port), BaseHTTPRequestHandler, bind_and_activate=False)
        self._server.daemon_threads = True
        # socketserver's backlog of 5 resets the sixth of many simultaneous connections; API Gateway takes them all.
        self._server.request_queue_size = 128
        self._serving: threading.Thread | None = None
        try:
            self._server.server_bind()
        except OSError as exc:
            self._server.server_close()
            raise _busy(exc, port) from None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def open(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server.RequestHandlerClass = handler
        try:
            self._server.server_activate()
        except OSError as exc:  # two processes may bind one port with SO_REUSEADDR; only one may listen
            raise _busy(exc, self.port) from None
        # A short poll interval: close() waits up to one interval for the serving loop to notice.
        self._serving = threading.Thread(target=self._server.serve_forever, args=(0.1,), name=f"http-{self.port}",
                                         daemon=True)
        self._serving.start()

    def close(self) -> None:
        if self._serving is not None:  # shutdown() waits for serve_forever, so only once it runs
            self._server.shutdown()
            self._serving = None
        self._server.server_close()


def _busy(exc: OSError, port: int) -> OSError | PortBusy:
    if exc.errno == errno.EADDRINUSE:
        return PortBusy(f"port {port} is busy: stop what uses it, or choose another with PORT=<n>")
    return exc
