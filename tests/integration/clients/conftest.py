"""Fixtures for the Python client tests: the OpenAI stand-in, and a fake of our API in front of it, per session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import pytest

from local.openai_standin.server import StandIn
from tests.audio_files import write_tone
from tests.integration.clients.fake_services import FakeServices


@pytest.fixture(scope="session", autouse=True)
def _ice_on_loopback() -> Iterator[None]:
    """aioice never offers 127.0.0.1; in a loopback-only network namespace both peers would have no candidate."""
    if aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
        yield


@pytest.fixture(scope="session")
def standin(_ice_on_loopback: None) -> Iterator[StandIn]:
    with StandIn() as running:
        yield running


@pytest.fixture(scope="session")
def services(standin: StandIn) -> Iterator[FakeServices]:
    fake = FakeServices(standin)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connecting is refused, and no other test can take the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of 'speech' (a tone) with the silences a real recording has, at a rate and layout we must convert."""
    path = tmp_path_factory.mktemp("audio") / "speech-16k-stereo.wav"
    return write_tone(path, seconds=1.0, rate=16_000, channels=2, lead_silence=0.2, tail_silence=0.5)
