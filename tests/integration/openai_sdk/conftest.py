"""OpenAI's own SDK (openai-python, pinned in requirements-dev.txt) as a client of the local stand-in.

The SDK must never reach OpenAI from a test: every client here is built by `sdk_client`, which names the stand-in as
both base URLs, retries nothing, ignores proxy settings in the environment (httpx2's `trust_env` and websockets'
`proxy`), follows no redirect, and is built with no `OPENAI_*` variable that would add headers. On top of that, every
test here runs with host names other than `localhost` unresolvable (`loopback_only`): a request to api.openai.com
would fail at its DNS lookup and fail the test, rather than leave the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from openai import DefaultHttpxClient, OpenAI

from local.openai_standin.server import StandIn

# Read by the SDK when a client is built: each would add a header (OpenAI-Organization, OpenAI-Project, or any) to
# what it sends, and so to what the product's requests are compared with.
HEADER_VARIABLES = ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS")
# No proxy from the environment for the sideband's WebSocket (websockets reads *_proxy by default); the SDK's own
# default leaves max_size unlimited, which a stand-in on loopback does not need either.
WEBSOCKET_OPTIONS: dict[str, Any] = {"proxy": None, "open_timeout": 10, "close_timeout": 5}
SDK_TIMEOUT_SECONDS = 15.0


def sdk_client(standin: StandIn, api_key: str | None = None) -> OpenAI:
    """An SDK client that can only talk to `standin`, with its standard key unless told otherwise."""
    with pytest.MonkeyPatch.context() as patch:
        for name in HEADER_VARIABLES:
            patch.delenv(name, raising=False)
        client = OpenAI(
            api_key=standin.api_key if api_key is None else api_key,
            base_url=standin.base_url,
            websocket_base_url=standin.base_url.replace("http://", "ws://", 1),
            max_retries=0,  # one request per call: a retry would hide a refusal and double what is recorded
            timeout=SDK_TIMEOUT_SECONDS,
            # The SDK's own defaults but for the environment's proxies and redirects.
            http_client=DefaultHttpxClient(trust_env=False, follow_redirects=False),
            _strict_response_validation=True,  # an answer that does not fit the SDK's model raises
        )
    assert str(client.base_url).rstrip("/") == standin.base_url, client.base_url
    return client


def sideband(client: OpenAI, session_id: str, **options: Any) -> Any:
    """`client.live.sideband.connect` for one session: no reconnection, no proxy."""
    return client.live.sideband.connect(session_id=session_id, max_retries=0,
                                        websocket_connection_options={**WEBSOCKET_OPTIONS, **options})


@contextlib.contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Inside: any attempt to resolve a host name other than localhost raises, and is listed in what is yielded.
    IP literals resolve as usual (the stand-in is 127.0.0.1; aiortc binds its candidates to interface addresses)."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name != "localhost":
            try:
                ipaddress.ip_address(name.split("%", 1)[0])
            except ValueError:
                attempts.append(name)
                raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {name!r}") from None
        return real(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", guarded)
        yield attempts


@pytest.fixture(autouse=True)
def no_host_names() -> Iterator[None]:
    with loopback_only() as attempts:
        yield
    assert not attempts, f"something tried to resolve {attempts} (only the local stand-in may be reached)"


@pytest.fixture
def sdk(fresh_standin: StandIn) -> Iterator[OpenAI]:
    client = sdk_client(fresh_standin)
    yield client
    client.close()

