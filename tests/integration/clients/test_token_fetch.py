"""fetch_token / fetch_token_async against a real HTTP server: every documented answer maps to its typed error."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Any

import httpx
import pytest

from realtime_client import (
    AuthError,
    ClientError,
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
from realtime_client.token import _parse
from tests.integration.clients.fake_services import FAILURES, FakeServices


def fetch(flavor: str, endpoint: str, **kwargs: Any) -> Token:
    if flavor == "sync":
        return fetch_token(endpoint, **kwargs)
    return asyncio.run(fetch_token_async(endpoint, **kwargs))


both = pytest.mark.parametrize("flavor", ["sync", "async"])


@both
def test_success_returns_token_session_and_rate_limit(services: FakeServices, flavor: str) -> None:
    token = fetch(flavor, services.url("/token"), api_key="our-key", voice="cedar", preset="tutor")

    assert token.token in services.issued
    assert token.realtime_url == services.url("/v1/realtime/calls")
    assert abs(token.expires_at - (time.time() + 60)) < 5
    assert 50 < token.expires_in() <= 61
    assert (token.model, token.voice, token.preset) == ("gpt-realtime", "marin", "default")
    assert token.rate_limit == RateLimit(limit=10, remaining=9, reset=60)
    request = services.token_requests[-1]
    assert request.headers["Authorization"] == "Bearer our-key"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"voice": "cedar", "preset": "tutor"}


@both
def test_without_options_sends_empty_object_and_no_authorization(services: FakeServices, flavor: str) -> None:
    fetch(flavor, services.url("/token"))

    request = services.token_requests[-1]
    assert "Authorization" not in request.headers
    assert json.loads(request.body) == {}


def test_token_value_stays_out_of_repr(services: FakeServices) -> None:
    token = fetch_token(services.url("/token"))

    assert token.token not in repr(token)
    assert token.token not in str(token)


ERROR_CASES = [
    (400, ClientError),
    (401, AuthError),
    (403, ClientError),
    (413, ClientError),
    (429, RateLimited),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
]


@both
@pytest.mark.parametrize(("status", "error_type"), ERROR_CASES)
def test_error_statuses_map_to_typed_errors(
    services: FakeServices, flavor: str, status: int, error_type: type[TokenError]
) -> None:
    code, message, retry_after = FAILURES[status]

    with pytest.raises(error_type) as caught:
        fetch(flavor, services.url(f"/fail/{status}"))

    error = caught.value
    assert type(error) is error_type
    assert (error.status, error.code, error.message) == (status, code, message)
    if isinstance(error, RateLimited | ServerError):
        assert error.retry_after == retry_after


@both
def test_non_json_error_body_keeps_status_and_an_excerpt(services: FakeServices, flavor: str) -> None:
    with pytest.raises(ServerError) as caught:
        fetch(flavor, services.url("/html/502"))

    assert (caught.value.status, caught.value.code) == (502, "http_502")
    assert "Bad Gateway" in caught.value.message
    assert caught.value.retry_after is None


@both
def test_non_json_success_body_is_invalid_response(services: FakeServices, flavor: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        fetch(flavor, services.url("/html/200"))

    assert (caught.value.status, caught.value.code) == (200, "invalid_response")


@both
def test_redirect_is_not_followed(services: FakeServices, flavor: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        fetch(flavor, services.url("/redirect"), api_key="our-key")

    assert (caught.value.status, caught.value.code) == (301, "unexpected_redirect")
    assert "/token" in caught.value.message


def test_plain_http_realtime_url_to_a_remote_host_is_refused(services: FakeServices) -> None:
    with pytest.raises(InvalidResponse, match="realtime_url"):
        fetch_token(services.url("/insecure"))


@both
def test_connection_refused_is_endpoint_unreachable(refused_url: str, flavor: str) -> None:
    with pytest.raises(EndpointUnreachable) as caught:
        fetch(flavor, refused_url)

    assert (caught.value.status, caught.value.code) == (None, "connect_failed")


@both
def test_timeout_is_endpoint_unreachable(services: FakeServices, flavor: str) -> None:
    started = time.monotonic()

    with pytest.raises(EndpointUnreachable) as caught:
        fetch(flavor, services.url("/slow"), timeout=0.3)

    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 1.5


def test_endpoint_must_be_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        fetch_token("ftp://example.org/token")


def _response(status: int, headers: dict[str, str]) -> httpx.Response:
    body = {"error": {"code": "rate_limited", "message": "slow down"}}
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", "http://x/token"))


def test_rate_limited_without_retry_after_falls_back_to_ratelimit_reset() -> None:
    with pytest.raises(RateLimited) as caught:
        _parse(_response(429, {"RateLimit-Reset": "12"}))

    assert caught.value.retry_after == 12


def test_retry_after_may_be_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    with pytest.raises(ServerError) as caught:
        _parse(_response(503, {"Retry-After": when}))

    assert caught.value.retry_after is not None
    assert 28 <= caught.value.retry_after <= 31
