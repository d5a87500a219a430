"""The SDK clients these tests build reach the stand-in and nothing else, even with an environment that tries to send
them elsewhere (a base URL, proxies, extra headers): what the guards in conftest.py claim, shown to hold."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from openai.types.live import SessionClosedEvent

from local.openai_standin.server import StandIn
from tests.integration.offers import make_offer
from tests.integration.openai_sdk.conftest import loopback_only, sdk_client, sideband


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """A listener on loopback that counts every connection made to it (and closes each at once)."""
    arrivals: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, peer = listener.accept()
            except TimeoutError:
                continue
            arrivals.append(f"{peer[0]}:{peer[1]}")
            connection.close()

    worker = threading.Thread(target=accept, name="trap", daemon=True)
    worker.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", arrivals
    stop.set()
    worker.join(5)
    listener.close()


def test_the_environment_cannot_send_the_sdk_elsewhere(fresh_standin: StandIn, trap: tuple[str, list[str]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere, arrivals = trap
    for name in ("OPENAI_BASE_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "ws_proxy", "wss_proxy"):
        monkeypatch.setenv(name, elsewhere)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Sent-From-The-Environment: 1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-the-environment")
    client = sdk_client(fresh_standin)
    try:
        created = client.live.create(session={"model": "gpt-live-1.1"},
                                     transport={"type": "webrtc", "sdp": make_offer()})
        with sideband(client, created.session.id) as connection:
            connection.send({"type": "session.close"})
            assert isinstance(connection.recv(), SessionClosedEvent)
    finally:
        client.close()
    assert arrivals == [], "an SDK request went to the address the environment named"
    recorded = [*fresh_standin.requests_to("live_sessions"), *fresh_standin.requests_to("live_attach")]
    assert [r.status for r in recorded] == [201, 101]
    for request in recorded:
        names = {name.lower() for name in request.headers}
        assert not names & {"x-sent-from-the-environment", "openai-organization", "openai-project"}, names


def test_a_host_name_cannot_even_be_looked_up() -> None:
    """The guard every test here runs under: api.openai.com is never resolved, so never reached."""
    with loopback_only() as attempts, pytest.raises(socket.gaierror):
        socket.getaddrinfo("api.openai.com", 443)
    assert attempts == ["api.openai.com"]
    with loopback_only() as attempts:
        assert socket.getaddrinfo("127.0.0.1", 80) and socket.getaddrinfo("localhost", 80)
    assert attempts == []
