"""Which URL the client posts to, from the ApiUrl or any route URL a user pasted."""

from __future__ import annotations

import pytest

from realtime_client.endpoints import EXPECTED, not_found_message, resolve_endpoint

API = "https://abc123.execute-api.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("given", "api_url", "route"),
    [
        (API, API, None),
        (API + "/", API, None),
        (API + "/calls", API, "calls"),
        (API + "/calls/", API, "calls"),
        (API + "/token", API, "token"),
        (API + "/options", API, "options"),
        (API + "/health", API, "health"),
        (API + "/prod", API + "/prod", None),  # a named stage keeps its path
        (API + "/prod/calls", API + "/prod", "calls"),
        (API + "/calls?x=1#frag", API, "calls"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000", None),
        ("http://127.0.0.1:8000/token", "http://127.0.0.1:8000", "token"),
        ("  http://localhost:8000/  ", "http://localhost:8000", None),
        (API + "/tokens", API + "/tokens", None),  # not a route: left alone, the 404 will say so
    ],
)
def test_api_url_and_route(given: str, api_url: str, route: str | None) -> None:
    endpoint = resolve_endpoint(given)

    assert (endpoint.api_url, endpoint.route) == (api_url, route)
    assert endpoint.calls_url == api_url + "/calls"
    assert endpoint.token_url == api_url + "/token"
    assert endpoint.options_url == api_url + "/options"


@pytest.mark.parametrize("given", ["ftp://x/token", "abc123.execute-api.eu-west-1.amazonaws.com", "http://", ""])
def test_not_an_http_url(given: str) -> None:
    with pytest.raises(ValueError, match="http"):
        resolve_endpoint(given)


def test_hangup_url_quotes_the_call_id() -> None:
    endpoint = resolve_endpoint(API + "/calls")

    assert endpoint.hangup_url("rtc_abc") == API + "/calls/rtc_abc/hangup"
    assert endpoint.hangup_url("../token?x") == API + "/calls/..%2Ftoken%3Fx/hangup"


def test_not_found_names_the_url_and_what_fits() -> None:
    message = not_found_message("POST", "http://x/y/calls", "not_found: Not found")

    assert message == f"POST http://x/y/calls answered 404 (not_found: Not found); expected {EXPECTED}"
    assert "https://<id>.execute-api.<region>.amazonaws.com" in message


def test_not_found_on_token_mentions_the_token_route_switch() -> None:
    message = not_found_message("POST", "http://x/token", "not_found: Not found")

    assert "EnableTokenRoute=true" in message
