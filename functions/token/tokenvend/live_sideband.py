"""GPT-Live's trusted sideband, used only to end a session whose `POST .../hangup` OpenAI refused.

OpenAI documents `POST /v1/live/sessions/{id}/hangup` as ending a SIP call; for a WebRTC session the way it
documents is the sideband: a WebSocket to `/v1/live/sessions/{id}/attach` with the standard key, the client event
`{"type": "session.close"}`, and `session.closed` back. The leash tries the hangup first and comes here only when it
is refused, so that a Live call still ends on time whichever of the two OpenAI honours.

One message out and one awaited on a rare path: a few RFC 6455 frames over the standard library, rather than a
WebSocket library in every cold start and in the package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time
from typing import BinaryIO
from urllib.parse import quote, urlsplit

from tokenvend.openai_client import FailureKind, Timed, UpstreamFailure

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _CLOSE, _PING, _PONG, _CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0
_MAX_MESSAGE_BYTES = 1 << 20  # a session.started carries the whole session; nothing near a megabyte


class LiveSideband:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        """True once OpenAI confirms `session.closed`; False if the session is not there (404: already over);
        UpstreamFailure for anything else, so the leash tries again."""
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        url = urlsplit(self._base_url)
        secure = url.scheme == "https"
        path = f"{url.path}/live/sessions/{quote(call_id, safe='')}/attach"
        try:
            with socket.create_connection((url.hostname or "", url.port or (443 if secure else 80)),
                                          timeout=self._timeout) as raw:
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=url.hostname) if secure else raw
                with sock, sock.makefile("rb") as reader:
                    status = _open(sock, reader, url.netloc, path, api_key)
                    if status == 404:
                        return Timed(False, elapsed())
                    if status != 101:
                        raise UpstreamFailure(_kind(status), status, f"{status} refusing the sideband",
                                              latency_ms=elapsed())
                    sock.sendall(_frame(_TEXT, json.dumps({"type": "session.close"}).encode()))
                    deadline = time.monotonic() + self._timeout
                    while time.monotonic() < deadline:
                        opcode, payload = _read_message(reader, sock)
                        if opcode == _CLOSE:
                            break  # closed without saying session.closed: not confirmed, so not done
                        if opcode == _TEXT and _event_type(payload) == "session.closed":
                            sock.sendall(_frame(_CLOSE, struct.pack("!H", 1000)))
                            return Timed(True, elapsed())
        except TimeoutError:
            raise UpstreamFailure(FailureKind.TIMEOUT, None, "sideband timed out", latency_ms=elapsed()) from None
        except (OSError, ValueError) as exc:
            raise UpstreamFailure(FailureKind.UNREACHABLE, None, f"sideband: {type(exc).__name__}",
                                  latency_ms=elapsed()) from None
        raise UpstreamFailure(FailureKind.ERROR, None, "the sideband ended without session.closed",
                              latency_ms=elapsed())


def _open(sock: socket.socket, reader: BinaryIO, host: str, path: str, api_key: str) -> int:
    """The opening handshake; its status (101 once the answer proves it understood the request)."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"".join([
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode(),
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        b"Sec-WebSocket-Key: " + key + b"\r\n",
        f"Authorization: Bearer {api_key}\r\n\r\n".encode(),
    ]))
    status_line = reader.readline(8192).decode("latin-1").split()
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise ValueError("not an HTTP answer")
    headers = {}
    while (line := reader.readline(8192)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line[1])
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


def _read_message(reader: BinaryIO, sock: socket.socket) -> tuple[int, bytes]:
    """The next data or close message, fragments joined; pings answered on the way."""
    opcode, message = None, b""
    while True:
        first, second = _exactly(reader, 2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", _exactly(reader, 2))[0]
        elif size == 127:
            size = struct.unpack("!Q", _exactly(reader, 8))[0]
        if size + len(message) > _MAX_MESSAGE_BYTES:
            raise ValueError("a sideband message over the limit")
        mask = _exactly(reader, 4) if second & 0x80 else b""
        payload = _exactly(reader, size)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        kind = first & 0x0F
        if kind == _PING:
            sock.sendall(_frame(_PONG, payload))
            continue
        if kind == _PONG:
            continue
        if kind == _CLOSE:
            return _CLOSE, payload
        if kind != _CONTINUATION:
            opcode = kind
        message += payload
        if first & 0x80:  # FIN
            return opcode or _TEXT, message


def _exactly(reader: BinaryIO, count: int) -> bytes:
    data = reader.read(count)
    if len(data) != count:
        raise ValueError("the sideband closed mid-frame")
    return data


def _event_type(payload: bytes) -> object:
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event.get("type") if isinstance(event, dict) else None


def _kind(status: int) -> FailureKind:
    if status in (401, 403):
        return FailureKind.AUTH
    if status == 429:
        return FailureKind.BUSY
    return FailureKind.REJECTED if 400 <= status < 500 else FailureKind.ERROR
