"""The local system's listener: refused until open, and quiet about clients that leave before their answer."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from local.listener import Listener


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/gone":
            raise BrokenPipeError(32, "Broken pipe")  # what writing to a closed tab's connection raises
        if self.path == "/bug":
            raise ValueError("a real fault")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _get(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (http.client.RemoteDisconnected, ConnectionError):
        return None
    finally:
        connection.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener("127.0.0.1", 0)
    yield listener
    listener.close()


def test_refuses_connections_until_open(listener: Listener) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=2).close()
    listener.open(_Handler)
    assert _get(listener.port, "/") == 204


def test_a_client_that_left_prints_no_traceback_but_a_real_fault_does(
        listener: Listener, capfd: pytest.CaptureFixture[str]) -> None:
    listener.open(_Handler)
    assert _get(listener.port, "/gone") is None
    assert _get(listener.port, "/") == 204  # served the next one: the request thread ended, the server did not
    assert "Traceback" not in capfd.readouterr().err
    assert _get(listener.port, "/bug") is None
    assert _get(listener.port, "/") == 204
    assert "ValueError: a real fault" in capfd.readouterr().err
