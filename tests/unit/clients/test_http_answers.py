"""Our API's answers -> typed errors and parsed results, without a server: every route shares one mapping."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx
import pytest

from realtime_client import (
    AuthError,
    ClientError,
    EndpointError,
    EndpointNotFound,
    InvalidResponse,
    RateLimit,
    RateLimited,
    ServerError,
    TokenError,
)
from realtime_client.calls import parse_call
from realtime_client.options import parse_options
from realtime_client.token import request_parts

CALLS_URL = "http://api.test/calls"


def answer(status: int, body: Any = None, *, headers: dict[str, str] | None = None, url: str = CALLS_URL,
           method: str = "POST", text: str | None = None) -> httpx.Response:
    request = httpx.Request(method, url)
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


CALL = {
    "call_id": "rtc_abc",
    "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
    "ends_at": 1_800_000_000,
    "max_seconds": 300,
    "hangup_token": "ht_secret",
    "session": {"model": "gpt-realtime", "voice": "cedar", "preset": "default"},
}


def test_call_answer_is_parsed_and_its_secrets_stay_out_of_repr() -> None:
    rate = {"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "360"}

    call = parse_call(answer(201, CALL, headers=rate))

    assert (call.call_id, call.ends_at, call.max_seconds, call.backend) == ("rtc_abc", 1_800_000_000, 300, "realtime")
    assert (call.model, call.voice, call.preset) == ("gpt-realtime", "cedar", "default")
    assert call.rate_limit == RateLimit(3, 2, 360)
    assert "ht_secret" not in repr(call) and "v=0" not in repr(call)
    assert call.seconds_left(now=1_800_000_000 - 12) == 12


def test_a_live_call_says_so_by_its_id() -> None:
    assert parse_call(answer(201, {**CALL, "call_id": "live_xyz"})).backend == "live"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"call_id": None}, "no call_id"),
        ({"sdp": '{"error": "not sdp"}'}, "no SDP answer"),
        ({"sdp": None}, "no SDP answer"),
        ({"ends_at": "soon"}, "no integer ends_at"),
        ({"max_seconds": True}, "no integer ends_at and max_seconds"),
        ({"hangup_token": ""}, "no hangup_token"),
    ],
)
def test_a_call_answer_missing_a_part_is_invalid(change: dict[str, Any], complaint: str) -> None:
    body = {key: value for key, value in {**CALL, **change}.items() if value is not None}

    with pytest.raises(InvalidResponse, match=complaint) as caught:
        parse_call(answer(201, body))

    assert (caught.value.status, caught.value.code) == (201, "invalid_response")


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "invalid_request", ClientError),
        (401, "invalid_api_key", AuthError),
        (403, "origin_not_allowed", ClientError),
        (413, "payload_too_large", ClientError),
        (415, "unsupported_media_type", ClientError),
        (500, "not_configured", ServerError),
        (502, "upstream_error", ServerError),
        (504, "upstream_timeout", ServerError),
    ],
)
def test_error_statuses_map_to_typed_errors(status: int, code: str, error_type: type[EndpointError]) -> None:
    with pytest.raises(error_type) as caught:
        parse_call(answer(status, error(code, "what happened")))

    assert type(caught.value) is error_type
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, "what happened")


@pytest.mark.parametrize("code", ["rate_limited", "daily_budget_exhausted"])
def test_429_carries_retry_after(code: str) -> None:
    with pytest.raises(RateLimited) as caught:
        parse_call(answer(429, error(code, "slow down"), headers={"Retry-After": "17"}))

    assert (caught.value.code, caught.value.retry_after) == (code, 17)


@pytest.mark.parametrize("code", ["leash_unavailable", "upstream_busy", "secrets_unavailable", "limiter_unavailable"])
def test_503_carries_retry_after(code: str) -> None:
    with pytest.raises(ServerError) as caught:
        parse_call(answer(503, error(code, "try again"), headers={"Retry-After": "2"}))

    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, code, 2)


def test_404_names_the_url_tried_and_what_was_expected() -> None:
    with pytest.raises(EndpointNotFound) as caught:
        parse_call(answer(404, error("not_found", "No such route."), url="http://x/y/calls"))

    assert isinstance(caught.value, ClientError)
    assert caught.value.url == "http://x/y/calls"
    assert caught.value.message.startswith("POST http://x/y/calls answered 404 (not_found: No such route.); expected")
    expected = "the stack's ApiUrl (https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL"
    assert caught.value.message.endswith(expected)


def test_404_from_something_that_is_not_our_api_still_says_what_was_expected() -> None:
    with pytest.raises(EndpointNotFound, match=r"GET http://x/options answered 404 \(http_404: <h1>Nope</h1>\)"):
        parse_options(answer(404, url="http://x/options", method="GET", text="<h1>Nope</h1>"))


def test_non_json_error_body_keeps_status_and_an_excerpt() -> None:
    with pytest.raises(ServerError) as caught:
        parse_call(answer(502, text="<html><body><h1>Bad Gateway</h1></body></html>"))

    assert (caught.value.code, caught.value.retry_after) == ("http_502", None)
    assert "Bad Gateway" in caught.value.message


def test_redirect_is_invalid_and_names_the_target() -> None:
    with pytest.raises(InvalidResponse, match="redirected to https://elsewhere/calls") as caught:
        parse_call(answer(301, headers={"Location": "https://elsewhere/calls"}, text=""))

    assert caught.value.code == "unexpected_redirect"


def test_non_json_success_is_invalid() -> None:
    with pytest.raises(InvalidResponse, match="the call answer is not JSON"):
        parse_call(answer(201, text="v=0"))
    with pytest.raises(InvalidResponse, match="not a JSON object"):
        parse_call(answer(201, ["v=0"]))


def test_rate_limited_without_retry_after_falls_back_to_ratelimit_reset() -> None:
    with pytest.raises(RateLimited) as caught:
        parse_call(answer(429, error("rate_limited", "slow down"), headers={"RateLimit-Reset": "12"}))

    assert caught.value.retry_after == 12


def test_retry_after_may_be_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    with pytest.raises(ServerError) as caught:
        parse_call(answer(503, error("upstream_busy", "busy"), headers={"Retry-After": when}))

    assert caught.value.retry_after is not None
    assert 28 <= caught.value.retry_after <= 31


def test_token_error_is_the_old_name_of_the_family() -> None:
    assert TokenError is EndpointError


def test_options_name_the_backend() -> None:
    document = {"model": "gpt-live-1.1", "backend": "live", "max_call_seconds": 120, "token_route": False,
                "default_voice": "marin", "voices": ["marin"]}

    options = parse_options(answer(200, document, url="http://x/options", method="GET"))

    assert (options.backend, options.max_call_seconds, options.token_route) == ("live", 120, False)
    assert (options.model, options.default_voice) == ("gpt-live-1.1", "marin")
    assert options.document["voices"] == ["marin"]


@pytest.mark.parametrize(("backend", "data_channel"), [("realtime", False), ("realtime", True), ("live", True)])
def test_options_say_whether_an_offer_may_carry_the_data_channel(backend: str, data_channel: bool) -> None:
    document = {"backend": backend, "data_channel": data_channel}

    options = parse_options(answer(200, document, url="http://x/options", method="GET"))

    assert (options.backend, options.data_channel) == (backend, data_channel)


def test_options_of_an_older_stack_mean_realtime_with_its_channel() -> None:
    options = parse_options(answer(200, {"model": "gpt-realtime"}, url="http://x/options", method="GET"))

    assert (options.backend, options.max_call_seconds, options.token_route) == ("realtime", None, None)
    assert options.data_channel is True  # before the field, every offer could carry it


@pytest.mark.parametrize("value", ["false", 0, None])
def test_options_with_a_data_channel_that_is_not_a_boolean_are_invalid(value: object) -> None:
    # "false" read as truthy would offer a channel the stack refuses; better to say the answer is wrong.
    with pytest.raises(InvalidResponse, match="data_channel is not a boolean"):
        parse_options(answer(200, {"backend": "realtime", "data_channel": value}, url="http://x/options",
                             method="GET"))


def test_options_with_an_unknown_backend_are_invalid() -> None:
    with pytest.raises(InvalidResponse, match="unknown backend 'carrier-pigeon'"):
        parse_options(answer(200, {"backend": "carrier-pigeon"}, url="http://x/options", method="GET"))


def test_request_body_sends_only_what_was_chosen() -> None:
    _, headers, body = request_parts(CALLS_URL, None, {"sdp": "v=0", "voice": None, "preset": "tutor"})

    assert json.loads(body) == {"sdp": "v=0", "preset": "tutor"}
    assert "Authorization" not in headers
    assert request_parts(CALLS_URL, "rtv_k", {})[1]["Authorization"] == "Bearer rtv_k"
