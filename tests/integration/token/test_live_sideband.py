"""The Live sideband client on its own, against a scripted WebSocket server on loopback: the handshake it must
prove, masked frames, pings, fragmented messages, and every way the server can fail to confirm `session.closed`.
(The stand-in's real sideband is met through the leash in test_leash.py.)"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tokenvend.live_sideband import LiveSideband
from tokenvend.openai_client import FailureKind, UpstreamFailure

KEY = "sk-fake-sideband-key"
SESSION = "live_abc"

Script = Callable[[socket.socket, dict[str, str]], None]


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame: never masked."""
    size = len(payload)
    length = bytes([size]) if size < 126 else bytes([126]) + struct.pack("!H", size)
    return bytes([(0x80 if fin else 0) | opcode]) + length + payload


def _read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    first, second = _recv_exactly(conn, 2)
    assert second & 0x80, "a client frame must be masked"
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", _recv_exactly(conn, 2))[0]
    mask = _recv_exactly(conn, 4)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(_recv_exactly(conn, size)))


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    """Unbuffered: a buffered reader per frame could swallow the next frame when two arrive together."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"the client closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _accept(headers: dict[str, str], *, proof: str | None = None) -> bytes:
    key = headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).digest()
    proof = proof if proof is not None else base64.b64encode(digest).decode()
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {proof}\r\n\r\n").encode()


class Scripted:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: dict[str, Any] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            request_line, *lines = head.decode().split("\r\n\r\n")[0].split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            self.seen.update(request_line=request_line, headers=headers)
            self.script(conn, headers)

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], Scripted]]:
    servers: list[Scripted] = []

    def start(script: Script) -> Scripted:
        servers.append(Scripted(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_closes_the_session_through_pings_other_events_and_fragments(serve) -> None:
    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        server.seen["sent"] = _read_client_frame(conn)
        closed = json.dumps({"type": "session.closed", "reason": "close_requested", "usage": {"seconds": 3.5}})
        conn.sendall(_frame(0x9, b"are you there")
                     + _frame(0x1, json.dumps({"type": "session.usage.updated"}).encode())
                     + _frame(0x1, closed[:20].encode(), fin=False) + _frame(0x0, closed[20:].encode()))
        server.seen["pong"] = _read_client_frame(conn)
        server.seen["close"] = _read_client_frame(conn)

    server = serve(script)
    timed = LiveSideband(server.url, 5).hang_up(KEY, SESSION)
    server.close()
    assert timed.value is True and timed.latency_ms > 0
    assert server.seen["request_line"] == f"GET /v1/live/sessions/{SESSION}/attach HTTP/1.1"
    headers = server.seen["headers"]
    assert headers["authorization"] == f"Bearer {KEY}" and headers["upgrade"] == "websocket"
    assert headers["sec-websocket-version"] == "13"
    assert server.seen["sent"] == (0x1, b'{"type": "session.close"}')
    assert server.seen["pong"] == (0xA, b"are you there")
    assert server.seen["close"] == (0x8, struct.pack("!H", 1000))


def test_a_session_that_is_not_there_is_already_over(serve) -> None:
    server = serve(lambda conn, _headers: conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"))
    assert LiveSideband(server.url, 5).hang_up(KEY, SESSION).value is False


def _fails(script: Script, serve, timeout: float = 5) -> UpstreamFailure:
    server = serve(script)
    with pytest.raises(UpstreamFailure) as caught:
        LiveSideband(server.url, timeout).hang_up(KEY, SESSION)
    return caught.value


@pytest.mark.parametrize(("status", "kind"), [(401, FailureKind.AUTH), (403, FailureKind.AUTH),
                                              (429, FailureKind.BUSY), (400, FailureKind.REJECTED),
                                              (503, FailureKind.ERROR)])
def test_a_refused_upgrade_is_a_failure_of_its_kind(serve, status: int, kind: FailureKind) -> None:
    failure = _fails(lambda conn, _h: conn.sendall(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode()),
                     serve)
    assert (failure.kind, failure.status) == (kind, status)


def test_an_upgrade_without_the_right_proof_is_not_trusted(serve) -> None:
    failure = _fails(lambda conn, headers: conn.sendall(_accept(headers, proof="d3Jvbmc=")), serve)
    assert failure.kind is FailureKind.UNREACHABLE


def test_a_close_without_session_closed_is_not_taken_as_ended(serve) -> None:
    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        _read_client_frame(conn)
        conn.sendall(_frame(0x8, struct.pack("!H", 1011)))

    assert _fails(script, serve).kind is FailureKind.ERROR


def test_a_connection_cut_mid_frame_is_a_failure(serve) -> None:
    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        _read_client_frame(conn)
        conn.sendall(b"\x81\x7e\x01")  # a text frame whose 16-bit length never arrives

    assert _fails(script, serve).kind is FailureKind.UNREACHABLE


def test_a_silent_server_is_a_timeout(serve) -> None:
    release = threading.Event()

    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        release.wait(5)

    failure = _fails(script, serve, timeout=0.5)
    release.set()
    assert failure.kind is FailureKind.TIMEOUT


def test_one_deadline_holds_however_the_server_keeps_the_line_busy(serve) -> None:
    """Pings, empty fragments and a frame dribbled a byte at a time each answer the last read, but the deadline is
    one for the whole hangup: it times out, rather than waiting for the server to stop."""
    stop = threading.Event()

    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        _read_client_frame(conn)
        conn.sendall(_frame(0x1, b"", fin=False))
        for _ in range(50):  # then it gives up: a client with no deadline of its own sees the line close
            if stop.wait(0.1):
                return
            try:
                conn.sendall(_frame(0x9, b"") + _frame(0x0, b"", fin=False))
            except OSError:
                return

    failure = _fails(script, serve, timeout=0.5)
    stop.set()
    assert failure.kind is FailureKind.TIMEOUT


def test_an_endless_handshake_is_refused(serve) -> None:
    def script(conn: socket.socket, _headers: dict[str, str]) -> None:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        with contextlib.suppress(OSError):
            for _ in range(2000):
                conn.sendall(b"X-Filler: " + b"x" * 20 + b"\r\n")

    assert _fails(script, serve).kind is FailureKind.UNREACHABLE


def test_hostile_events_are_skipped_not_recursed_into(serve) -> None:
    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        _read_client_frame(conn)
        deep = b"[" * 200_000
        conn.sendall(_frame(0x1, deep[:60_000]) + _frame(0x1, b'{"type": ' + b"[" * 50_000)
                     + _frame(0x1, b'{"type": "session.closed", "reason": "close_requested"}'))
        _read_client_frame(conn)

    server = serve(script)
    assert LiveSideband(server.url, 5).hang_up(KEY, SESSION).value is True


@pytest.mark.parametrize("frame", [
    b"\x81\x85" + b"\x00" * 4 + b"hello",  # masked: only clients mask
    b"\xc1\x00",  # a reserved bit set
    b"\x89\x7e\x00\x80" + b"x" * 128,  # a ping over 125 bytes
    b"\x80\x00",  # a continuation with nothing to continue
], ids=["masked", "reserved-bit", "long-ping", "stray-continuation"])
def test_frames_no_server_may_send_end_the_conversation(serve, frame: bytes) -> None:
    def script(conn: socket.socket, headers: dict[str, str]) -> None:
        conn.sendall(_accept(headers))
        _read_client_frame(conn)
        with contextlib.suppress(OSError, ValueError):  # a lenient client would take the session.closed after it
            conn.sendall(frame + _frame(0x1, b'{"type": "session.closed", "reason": "close_requested"}'))
            _read_client_frame(conn)

    assert _fails(script, serve).kind is FailureKind.UNREACHABLE


def test_the_host_header_names_the_port_and_never_userinfo(serve) -> None:
    server = serve(lambda conn, _headers: conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    url, port = server.url.replace("http://", "http://someone:secret@"), server.listener.getsockname()[1]
    assert LiveSideband(url, 5).hang_up(KEY, SESSION).value is False
    server.close()
    assert server.seen["headers"]["host"] == f"127.0.0.1:{port}"


def test_nothing_listening_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]
    with pytest.raises(UpstreamFailure) as caught:
        LiveSideband(f"http://127.0.0.1:{port}/v1", 2).hang_up(KEY, SESSION)
    assert caught.value.kind is FailureKind.UNREACHABLE
