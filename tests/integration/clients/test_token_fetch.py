"""fetch_token / fetch_token_async (the token path) over real HTTP: a real `ek_` from the stand-in behind a fake of
our API, and every documented failure answer mapped to its typed error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from local.openai_standin.server import StandIn
from realtime_client import (
    EndpointNotFound,
    EndpointUnreachable,
    InvalidResponse,
    RateLimit,
    RateLimited,
    ServerError,
    Token,
    TokenError,
    fetch_token,
    fetch_token_async,
)
from tests.integration.clients.fake_services import ERROR_TYPES, FAILURES, SESSION, FakeServices


def fetch(flavor: str, endpoint: str, **kwargs: Any) -> Token:
    if flavor == "sync":
        return fetch_token(endpoint, **kwargs)
    return asyncio.run(fetch_token_async(endpoint, **kwargs))


both = pytest.mark.parametrize("flavor", ["sync", "async"])


@both
def test_success_returns_token_session_and_rate_limit(
    services: FakeServices, standin: StandIn, flavor: str
) -> None:
    token = fetch(flavor, services.url("ok", "token"), api_key="our-key", voice="cedar", preset="tutor")

    assert token.token.startswith("ek_") and token.token in standin.registry.values()
    assert token.realtime_url == services.url("ok") + "/openai/realtime/calls"  # the recording proxy
    assert 0 < token.expires_in() <= 600
    assert (token.model, token.voice, token.preset) == tuple(SESSION.values())
    assert token.rate_limit == RateLimit(limit=10, remaining=9, reset=60)
    request = services.last("/token")
    assert request.headers["Authorization"] == "Bearer our-key"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"voice": "cedar", "preset": "tutor"}


@both
def test_without_options_sends_empty_object_and_no_authorization(services: FakeServices, flavor: str) -> None:
    fetch(flavor, services.url("ok", "token"))

    request = services.last("/token")
    assert "Authorization" not in request.headers
    assert json.loads(request.body) == {}


def test_token_value_stays_out_of_repr(services: FakeServices) -> None:
    token = fetch_token(services.url("ok", "token"))

    assert token.token not in repr(token)
    assert token.token not in str(token)




@both
@pytest.mark.parametrize(("status", "error_type"), ERROR_TYPES.items())
def test_error_statuses_map_to_typed_errors(
    services: FakeServices, flavor: str, status: int, error_type: type[TokenError]
) -> None:
    code, message, retry_after = FAILURES[status]

    with pytest.raises(error_type) as caught:
        fetch(flavor, services.url(f"fail-{status}", "token"))

    error = caught.value
    assert type(error) is error_type
    assert (error.status, error.code, error.message) == (status, code, message)
    if isinstance(error, RateLimited | ServerError):
        assert error.retry_after == retry_after


@both
def test_non_json_error_body_keeps_status_and_an_excerpt(services: FakeServices, flavor: str) -> None:
    with pytest.raises(ServerError) as caught:
        fetch(flavor, services.url("html-502", "token"))

    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "Bad Gateway" in caught.value.message
    assert caught.value.retry_after is None


@both
def test_non_json_success_body_is_invalid_response(services: FakeServices, flavor: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        fetch(flavor, services.url("html-200", "token"))

    assert (caught.value.status, caught.value.code) == (200, "invalid_response")


@both
def test_redirect_is_not_followed(services: FakeServices, flavor: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        fetch(flavor, services.url("redirect", "token"), api_key="our-key")

    assert (caught.value.status, caught.value.code) == (301, "unexpected_redirect")
    assert "/elsewhere" in caught.value.message


def test_plain_http_realtime_url_to_a_remote_host_is_refused(services: FakeServices) -> None:
    with pytest.raises(InvalidResponse, match="realtime_url"):
        fetch_token(services.url("insecure", "token"))


@both
def test_connection_refused_is_endpoint_unreachable(refused_url: str, flavor: str) -> None:
    with pytest.raises(EndpointUnreachable) as caught:
        fetch(flavor, refused_url)

    assert (caught.value.status, caught.value.code) == (None, "connect_failed")


@both
def test_timeout_is_endpoint_unreachable(services: FakeServices, flavor: str) -> None:
    started = time.monotonic()

    with pytest.raises(EndpointUnreachable) as caught:
        fetch(flavor, services.url("slow", "token"), timeout=0.3)

    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 1.5


def test_endpoint_must_be_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        fetch_token("ftp://example.org/token")


@both
def test_the_api_url_or_any_route_url_reaches_token(services: FakeServices, flavor: str) -> None:
    for given in (services.url("ok"), services.url("ok") + "/", services.url("ok", "calls")):
        assert fetch(flavor, given).token.startswith("ek_")
        assert services.requests[-1].path.endswith("/ok/token")


@both
def test_token_route_switched_off_is_a_404_that_says_what_was_expected(services: FakeServices, flavor: str) -> None:
    url = services.url("ok", "token", stack="live")

    with pytest.raises(EndpointNotFound) as caught:
        fetch(flavor, url)

    assert caught.value.url == url
    assert caught.value.message.startswith(f"POST {url} answered 404 (not_found: Not found.); expected the stack's")
    assert "EnableTokenRoute=true" in caught.value.message
