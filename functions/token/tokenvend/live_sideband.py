"""GPT-Live's trusted sideband: how a Live session's end is confirmed (and brought about, if it is still running).

OpenAI documents `POST /v1/live/sessions/{id}/hangup` as ending a SIP call; for a WebRTC session what it documents
is the sideband: a WebSocket to `/v1/live/sessions/{id}/attach` with the standard key, the client event
`{"type": "session.close"}`, and `session.closed` back. A 404 on attach means the session is over. Every Live
hangup comes here after the POST (`backends.LiveHangup`), so a call counts as ended only once OpenAI has said so.

One message out and one awaited: a few RFC 6455 frames over the standard library, rather than a WebSocket library
in every cold start and in the package.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from urllib.parse import quote, urlsplit

from tokenvend.openai_client import FailureKind, Timed, UpstreamFailure, failure_kind

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
_MAX_MESSAGE_BYTES = 1 << 20  # a session.started carries the whole session; nothing near a megabyte
_MAX_HEAD_BYTES = 16 * 1024


class LiveSideband:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        """True once OpenAI confirms `session.closed`; False if the session is not there (404: already over);
        UpstreamFailure for anything else, so the leash tries again. All of it within one timeout, however the
        server dribbles, pings or fragments."""
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        deadline = time.monotonic() + self._timeout
        url = urlsplit(self._base_url)
        secure = url.scheme == "https"
        host, port = url.hostname or "", url.port or (443 if secure else 80)
        authority = f"[{host}]" if ":" in host else host
        if url.port:
            authority += f":{port}"
        path = f"{url.path}/live/sessions/{quote(call_id, safe='')}/attach"
        try:
            with socket.create_connection((host, port), timeout=self._timeout) as raw:
                raw.settimeout(max(deadline - time.monotonic(), 0.001))  # the TLS handshake's share of the time
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if secure else raw
                with sock:
                    reader = _Reader(sock, deadline)
                    status = _open(sock, reader, authority, path, api_key)
                    if status == 404:
                        return Timed(False, elapsed())
                    if status != 101:
                        raise UpstreamFailure(failure_kind(status), status, f"{status} refusing the sideband",
                                              latency_ms=elapsed())
                    sock.sendall(_frame(_TEXT, json.dumps({"type": "session.close"}).encode()))
                    while True:
                        opcode, payload = _read_message(reader, sock)
                        if opcode == _CLOSE:
                            _send_quietly(sock, _frame(_CLOSE, payload[:2]))
                            break  # closed without saying session.closed: not confirmed, so not done
                        if opcode == _TEXT and _is_session_closed(payload):
                            _send_quietly(sock, _frame(_CLOSE, struct.pack("!H", 1000)))  # a courtesy
                            return Timed(True, elapsed())
        except TimeoutError:
            raise UpstreamFailure(FailureKind.TIMEOUT, None, "sideband timed out", latency_ms=elapsed()) from None
        except (OSError, ValueError) as exc:
            raise UpstreamFailure(FailureKind.UNREACHABLE, None, f"sideband: {type(exc).__name__}",
                                  latency_ms=elapsed()) from None
        raise UpstreamFailure(FailureKind.ERROR, None, "the sideband ended without session.closed",
                              latency_ms=elapsed())


class _Reader:
    """Bytes from the socket, every wait bounded by what is left of the one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buffer = bytearray()

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def head(self) -> bytes:
        """Everything up to the blank line that ends an HTTP answer's headers."""
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > _MAX_HEAD_BYTES:
                raise ValueError("an HTTP head over the limit")
            self._fill()
        data = bytes(self._buffer[:end])
        del self._buffer[:end + 4]
        return data

    def _fill(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ValueError("the sideband closed")
        self._buffer += chunk


def _open(sock: socket.socket, reader: _Reader, authority: str, path: str, api_key: str) -> int:
    """The opening handshake; its status (101 once the answer proves it understood the request)."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"".join([
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n".encode(),
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        b"Sec-WebSocket-Key: " + key + b"\r\n",
        f"Authorization: Bearer {api_key}\r\n\r\n".encode(),
    ]))
    status_line, *lines = reader.head().decode("latin-1").split("\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    status = int(parts[1])
    # SHA-1 is what RFC 6455 prescribes for this proof of understanding; it protects nothing.
    expected = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID, usedforsecurity=False).digest()).decode()
    if status == 101 and headers.get("sec-websocket-accept") != expected:
        raise ValueError("a 101 without the right Sec-WebSocket-Accept")
    return status


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked as every client frame must be."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", size)
    return bytes([0x80 | opcode]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_message(reader: _Reader, sock: socket.socket) -> tuple[int, bytes]:
    """The next data or close message, fragments joined; pings answered on the way. Frames a server may not send
    (masked, reserved bits, oversized or fragmented control frames, a stray continuation) end the conversation."""
    opcode: int | None = None
    message = bytearray()
    while True:
        first, second = reader.exactly(2)
        kind, final = first & 0x0F, bool(first & 0x80)
        if first & 0x70 or second & 0x80:
            raise ValueError("a frame no server may send")
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", reader.exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", reader.exactly(8))[0]
        if kind >= _CLOSE and (size > 125 or not final):
            raise ValueError("a malformed control frame")
        if size + len(message) > _MAX_MESSAGE_BYTES:
            raise ValueError("a sideband message over the limit")
        payload = reader.exactly(size)
        if kind == _PING:
            sock.sendall(_frame(_PONG, payload))
            continue
        if kind == _PONG:
            continue
        if kind == _CLOSE:
            return _CLOSE, payload
        if (kind == _CONTINUATION) != (opcode is not None):
            raise ValueError("a fragment out of order")
        if opcode is None:
            opcode = kind
        message += payload
        if final:
            return opcode, bytes(message)


def _send_quietly(sock: socket.socket, frame: bytes) -> None:
    """A frame that only closes politely: the answer is known already, whatever happens to it."""
    with contextlib.suppress(OSError):
        sock.sendall(frame)


def _is_session_closed(payload: bytes) -> bool:
    if not payload.lstrip().startswith(b"{"):
        return False
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # a server's nesting is not ours to recurse through
        return False
    return isinstance(event, dict) and event.get("type") == "session.closed"

