"""The client's signed-in lane without any I/O: where `/user/calls` is, API Gateway's own 401 told apart from our
API's (a refused sign-in token is not a refused API key), and the owner's hook checked to give a token."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from realtime_client import AuthError, SignInRefused, UserTokenFailed, resolve_endpoint
from realtime_client.http_answers import raise_for_error
from realtime_client.user_token import fresh_token


@pytest.mark.parametrize(("url", "api_url"), [
    ("https://abc.execute-api.eu-west-1.amazonaws.com/user/calls", "https://abc.execute-api.eu-west-1.amazonaws.com"),
    ("https://api.example/stage/user/calls/", "https://api.example/stage"),
])
def test_the_user_calls_url_names_the_same_api(url: str, api_url: str) -> None:
    endpoint = resolve_endpoint(url)
    assert (endpoint.api_url, endpoint.route) == (api_url, "user/calls")
    assert endpoint.user_calls_url == f"{api_url}/user/calls"
    assert resolve_endpoint(f"{api_url}/calls").user_calls_url == f"{api_url}/user/calls"
    assert resolve_endpoint("https://api.example/users/calls").api_url == "https://api.example/users"


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example/user/calls")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_api_gateways_401_is_a_refused_sign_in_token_with_its_reason() -> None:
    challenge = 'Bearer scope="" error="invalid_token" error_description="the token has expired"'
    with pytest.raises(SignInRefused) as refused:
        raise_for_error(answer(401, {"message": "Unauthorized"}, {"www-authenticate": challenge}))
    assert isinstance(refused.value, AuthError)  # an `except AuthError` still catches it
    assert refused.value.challenge == challenge and refused.value.code == "sign_in_refused"
    assert "API Gateway refused the sign-in token (the token has expired)" in refused.value.message
    with pytest.raises(SignInRefused, match=r"\(no token was sent\)"):
        raise_for_error(answer(401, {"message": "Unauthorized"}, {"www-authenticate": "Bearer"}))


def test_our_apis_401_is_still_a_refused_api_key() -> None:
    body = {"error": {"code": "invalid_api_key", "message": "The API key is missing or not valid."}}
    with pytest.raises(AuthError) as refused:
        raise_for_error(answer(401, body))
    assert not isinstance(refused.value, SignInRefused) and refused.value.code == "invalid_api_key"


@pytest.mark.parametrize("given", ["", "   ", "two words", "line\nbreak", None, 42, b"bytes"])
def test_a_hook_that_gives_no_token_sends_nothing(given: Any) -> None:
    async def hook() -> Any:
        return given

    with pytest.raises(UserTokenFailed, match="returned no token") as failed:
        asyncio.run(fresh_token(hook))
    assert failed.value.status is None


def test_a_hooks_token_is_taken_trimmed() -> None:
    async def hook() -> str:
        return "  eyJ.a.b\n"

    assert asyncio.run(fresh_token(hook)) == "eyJ.a.b"
