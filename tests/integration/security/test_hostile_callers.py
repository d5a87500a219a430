"""Hostile callers, each with its documented answer, and never a token beyond the limits.

Through the local system over HTTP (and raw sockets where a well-behaved client library would not send what an
attacker sends); the IPv6 cases through the handler directly, since loopback has no /64 to rotate in. Every
anonymous test uses its own loopback source address (127.0.0.x), so each is a fresh caller to the limiter.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.system import LocalSystem
from tests.integration.harness import EVIDENCE, TokenApi
from tests.integration.security.security_support import (
    UNTHROTTLED,
    Caller,
    issued_by_day,
    now_ms,
    record_figures,
    start_system,
    stop_system,
    table_state,
)
from tokenvend.api_keys import ApiKeyStore

BURST = 2
PARAMETERS = {**UNTHROTTLED, "EnableTokenRoute": "true",
              "AnonymousBurst": str(BURST), "AnonymousRatePerHour": "1", "ApiKeyBurst": str(BURST),
              "ApiKeyRatePerHour": "1", "GlobalDailyLimit": "200"}
ALLOWED_ORIGIN = "https://page.example"
FIGURES: dict[str, Any] = {"cases": {}}
ISSUED: list[str] = []  # every token this module got through the gateway


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    started = now_ms()
    running = start_system({**PARAMETERS, "AllowedOrigins": ALLOWED_ORIGIN})
    running.client_timeout_seconds = 2
    try:
        yield running
        state = table_state(running.client("dynamodb"), running.stack.table_name)
        # Summed over the day items written: a run that crosses midnight UTC counts on two days.
        issued = sum(issued_by_day(state, started).values())
        FIGURES["issued_through_gateway"] = len(ISSUED)
        FIGURES["issued_in_table"] = issued
        record_figures("hostile_callers", **FIGURES)
        assert issued == len(ISSUED), "the table counts exactly the tokens callers got"
    finally:
        stop_system(running)


def _caller(system: LocalSystem, n: int) -> Caller:
    return Caller(system.api_url, local_address=f"127.0.0.{n}")


def _post(client: Caller, body: Any = None, **kwargs: Any) -> httpx.Response:
    response = client.post_token(body, **kwargs)
    if response.status_code == 200:
        ISSUED.append(response.json()["token"])
    return response


def _code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def _note(case: str, **values: Any) -> None:
    FIGURES["cases"][case] = values


# --- who the caller is --------------------------------------------------------------------------------------

def test_x_forwarded_for_and_friends_are_ignored(system: LocalSystem) -> None:
    spoofs = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(4)] + [
        {"X-Real-IP": "203.0.113.99"}, {"Forwarded": "for=203.0.113.98"},
        {"X-Forwarded-For": "127.0.0.99, 203.0.113.5"}, {"True-Client-IP": "203.0.113.7"}]
    with _caller(system, 10) as client:
        statuses = [_post(client, headers=h).status_code for h in spoofs]
    assert statuses == [200] * BURST + [429] * (len(spoofs) - BURST)
    _note("x_forwarded_for_spoofing", requests=len(spoofs), issued=BURST)


def test_origin_spoofing(system: LocalSystem) -> None:
    hostile = ["https://evil.example", "null", "https://page.example.evil.example", "https://evil.example/https://page.example",
               "HTTPS://PAGE.EXAMPLE.", "https://page.example:443@evil.example", "*"]
    with _caller(system, 11) as client:
        for origin in hostile:
            response = _post(client, headers={"Origin": origin})
            assert response.status_code == 403 and _code(response) == "origin_not_allowed", origin
            assert "access-control-allow-origin" not in response.headers
        # A script can claim an allowed Origin: that is not authentication, it still pays from its IP's bucket.
        statuses = [_post(client, headers={"Origin": ALLOWED_ORIGIN}).status_code for _ in range(BURST + 2)]
        assert statuses == [200] * BURST + [429, 429]
    _note("origin_spoofing", refused_403=len(hostile), spoofed_allowed_origin_issued=BURST)


def test_ipv6_rotation_inside_a_64_is_one_caller(token_api: TokenApi) -> None:
    burst = 3  # the default anonymous burst of the handler under test
    started = now_ms()
    rotated = [f"2001:db8:a:b:{i:x}::{i + 1:x}" for i in range(12)]
    statuses = [token_api.call("POST", "/token", source_ip=ip).status for ip in rotated]
    assert statuses == [200] * burst + [429] * (len(rotated) - burst)
    # A neighbouring /64 is another subscriber: its own bucket. An IPv4-mapped address is the IPv4 caller.
    assert token_api.call("POST", "/token", source_ip="2001:db8:a:c::1").status == 200
    mapped = ("198.51.100.9", "::ffff:198.51.100.9", "::ffff:c633:6409", "198.51.100.9")
    assert [token_api.call("POST", "/token", source_ip=ip).status for ip in mapped] == [200, 200, 200, 429]
    state = table_state(token_api.dynamodb, token_api.stack.table_name)
    assert len(state["bucket"]) == 3 and sum(issued_by_day(state, started).values()) == burst + 1 + burst
    _note("ipv6_rotation_in_one_64", addresses=len(rotated), issued=burst)


def test_replaying_a_revoked_api_key(system: LocalSystem) -> None:
    store = ApiKeyStore(system.client("dynamodb"), system.stack.table_name)
    key, record = store.create("hostile-replay")
    EVIDENCE.keys.add(key)  # our API keys are secrets too: the leak scan looks for them
    with _caller(system, 12) as client:
        assert _post(client, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        store.revoke(record.key_id)
        replays = [_post(client, headers={"Authorization": f"Bearer {key}"}) for _ in range(5)]
        for response in replays:
            assert response.status_code == 401 and _code(response) == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"
        # Never a silent fall-back to anonymous: a wrong or malformed key is a 401, not an anonymous token.
        for authorization in (f"Bearer {key}x", "Bearer sk-not-ours", "Basic dXNlcjpwYXNz", "Bearer",
                              "Bearer rtv_" + "A" * 300):
            response = _post(client, headers={"Authorization": authorization})
            assert response.status_code == 401 and _code(response) == "invalid_api_key", authorization
    _note("revoked_key_replay", replays=len(replays), issued_after_revocation=0)


# --- bodies -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("over 4 KB", json.dumps({"voice": "marin" + " " * 5000}), 413, "payload_too_large"),
    ("10,000 nested arrays", "[" * 10_000 + "]" * 10_000, 413, "payload_too_large"),
    ("4,000 unclosed arrays, under 4 KB", "[" * 4000, 400, "invalid_request"),
    ("1,500 nested arrays in a field, under 4 KB", '{"voice": ' + "[" * 1500 + "]" * 1500 + "}", 400,
     "invalid_request"),
    ("600 nested objects, under 4 KB", '{"a":' * 600 + "1" + "}" * 600, 400, "invalid_request"),
    ("a JSON array holding a valid body", '[{"voice": "cedar"}]', 400, "invalid_request"),
    ("non-UTF-8 bytes", b'{"voice": "\xff\xfe\xfd"}', 400, "invalid_request"),
    ("a lone surrogate escape", '{"voice": "\\ud800"}', 400, "invalid_request"),
    ("NUL bytes", '{"voice": "marin\u0000"}', 400, "invalid_request"),
    ("huge number", '{"voice": 1' + "0" * 3000 + "}", 400, "invalid_request"),
])
def test_hostile_bodies(system: LocalSystem, name: str, body: str | bytes, status: int, code: str) -> None:
    with _caller(system, 13) as client:
        response = _post(client, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, (name, response.text)
    assert _code(response) == code
    FIGURES["cases"].setdefault("hostile_bodies", {})[name] = status


# --- slow, short and malformed requests on raw sockets ------------------------------------------------------

def _raw(system: LocalSystem, data: bytes, *, source: str = "127.0.0.14", read_timeout: float = 10) -> bytes:
    host, port = system.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), source_address=(source, 0), timeout=read_timeout) as sock:
        sock.sendall(data)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if b"\r\n\r\n" in b"".join(chunks):
            head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(rest) >= length:
                break
    return b"".join(chunks)


def _request(path: str, body: bytes, headers: str = "", method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n").encode("latin-1") + body


def _still_serving(system: LocalSystem) -> bool:
    return httpx.get(f"{system.api_url}/health", timeout=5).status_code == 200


def test_a_body_dribbled_slowly_is_answered_and_others_are_served_meanwhile(system: LocalSystem) -> None:
    body = b'{"voice": "cedar"}'
    host, port = system.api_url.removeprefix("http://").split(":")
    health_latencies = []
    with socket.create_connection((host, int(port)), source_address=("127.0.0.15", 0), timeout=10) as sock:
        sock.sendall(_request("/token", body)[: -len(body)])
        for byte in body:
            sock.sendall(bytes([byte]))
            started = time.perf_counter()
            assert _still_serving(system)
            health_latencies.append(time.perf_counter() - started)
            time.sleep(0.03)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    ISSUED.append(json.loads(answer.partition(b"\r\n\r\n")[2])["token"])
    assert max(health_latencies) < 1.0
    _note("slow_body", bytes=len(body), seconds=round(len(body) * 0.03, 1), other_requests_served=len(body))


def test_a_client_that_closes_mid_body_gets_nothing_invoked(system: LocalSystem) -> None:
    lines_before = len(system.function_log.read_text().splitlines())
    request = _request("/token", b'{"voice": "cedar", "preset": "default"}')
    for _ in range(20):
        host, port = system.api_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), source_address=("127.0.0.16", 0)) as sock:
            sock.sendall(request[:-12])
            sock.shutdown(socket.SHUT_WR)
            assert _read_all(sock) == b""
    assert _still_serving(system)
    assert len(system.function_log.read_text().splitlines()) == lines_before + 1  # the one /health above
    _note("closed_mid_body", connections=20, invocations=0)


def test_a_stalled_client_is_dropped_and_others_are_served(system: LocalSystem) -> None:
    host, port = system.api_url.removeprefix("http://").split(":")
    stalled = [socket.create_connection((host, int(port)), source_address=("127.0.0.17", 0)) for _ in range(10)]
    try:
        for sock in stalled:
            sock.sendall(_request("/token", b'{"voice": "cedar"}')[:-5])  # headers and part of the body, then nothing
        assert _still_serving(system)
        started = time.perf_counter()
        for sock in stalled:
            sock.settimeout(system.client_timeout_seconds + 5)
            assert _read_all(sock) == b"", "dropped without an answer, never invoked"
        waited = time.perf_counter() - started
        assert waited < system.client_timeout_seconds + 3
    finally:
        for sock in stalled:
            sock.close()
    assert _still_serving(system)
    _note("stalled_bodies", connections=len(stalled), dropped_after_seconds=system.client_timeout_seconds)


def test_an_empty_body_is_the_default_policy(system: LocalSystem) -> None:
    answer = _raw(system, _request("/token", b""), source="127.0.0.18")
    assert answer.startswith(b"HTTP/1.1 200")
    ISSUED.append(json.loads(answer.partition(b"\r\n\r\n")[2])["token"])


@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("Content-Length not a number", b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("negative Content-Length", b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    ("Content-Length of a terabyte", b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n", 413),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
])
def test_malformed_framing_is_refused_by_the_gateway(system: LocalSystem, name: str, request_bytes: bytes,
                                                     status: int) -> None:
    answer = _raw(system, request_bytes, source="127.0.0.19")
    # An unparseable request line gets http.server's HTTP/0.9-style answer: the error page without a status line.
    assert answer.startswith((f"HTTP/1.1 {status}".encode(), f"HTTP/1.0 {status}".encode())) \
        or f"Error code: {status}".encode() in answer, (name, answer[:200])
    assert _still_serving(system)
    FIGURES["cases"].setdefault("malformed_framing", {})[name] = status


def test_non_utf8_header_values(system: LocalSystem) -> None:
    key = _raw(system, _request("/token", b"", "Authorization: Bearer rtv_\xff\xfe\r\n"), source="127.0.0.20")
    assert key.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in key
    origin = _raw(system, _request("/token", b"", "Origin: https://p\xe4ge.example\r\n"), source="127.0.0.20")
    assert origin.startswith(b"HTTP/1.1 403") and b"origin_not_allowed" in origin
    _note("non_utf8_headers", requests=2, issued=0)


# --- header injection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "request_bytes", "status"), [
    ("CR in a header value", _request("/token", b"", "X-Note: a\rSet-Cookie: injected=1\r\n"), 200),
    ("folded header line", _request("/token", b"", "X-Note: a\r\n Set-Cookie: injected=1\r\n"), 200),
    ("CRLF in a JSON field", _request("/token", b'{"voice": "marin\\r\\nSet-Cookie: injected=1"}'), 400),
    ("CRLF in an unknown field name", _request("/token", b'{"x\\r\\nSet-Cookie: injected=1": 1}'), 400),
    ("CRLF in the preset", _request("/token", b'{"preset": "default\\r\\nLocation: https://evil.example"}'), 400),
    ("encoded CRLF in the path", _request("/health%0d%0aSet-Cookie:%20injected=1", b"", method="GET"), 404),
])
def test_header_injection_attempts(system: LocalSystem, name: str, request_bytes: bytes, status: int) -> None:
    answer = _raw(system, request_bytes, source="127.0.0.21")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), (name, answer[:300])
    header_names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
    assert b"set-cookie" not in header_names and b"location" not in header_names, name
    assert b"\r" not in body and b"\n" not in body.strip(), "the body echoes no raw CR/LF"
    if status == 200:
        ISSUED.append(json.loads(body)["token"])
    FIGURES["cases"].setdefault("header_injection", {})[name] = status


def test_everyone_else_is_still_served_after_all_that(system: LocalSystem) -> None:
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(f"{system.api_url}/options", timeout=5).status_code)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 10
    with _caller(system, 22) as client:
        assert body_of_httpx(_post(client))["session"]["voice"] == "marin"


def body_of_httpx(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


