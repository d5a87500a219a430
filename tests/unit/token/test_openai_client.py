"""The OpenAI client on its own, against httpx's in-memory transport: what it sends, how it retries, how each
failure is classified, and that it reports how long OpenAI took, with every answer and every failure."""

from __future__ import annotations

import json

import httpx
import pytest

from tokenvend import openai_client
from tokenvend.openai_client import ClientSecret, FailureKind, OpenAIClient, UpstreamFailure

KEY = "sk-fake-unit-test-key"


class Upstream:
    """Answers requests from a script, one answer per request, and keeps what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> OpenAIClient:
        return OpenAIClient("https://openai.test/v1/", http=httpx.Client(transport=httpx.MockTransport(self)))


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_client, "RETRY_PAUSE_SECONDS", 0)


def secret(value: str = "ek_abc", expires_at: int = 1_800_000_000) -> httpx.Response:
    return httpx.Response(200, json={"value": value, "expires_at": expires_at, "session": {}})


def error(status: int, **headers: str) -> httpx.Response:
    body = {"error": {"type": "invalid_request_error", "code": "bad_thing", "param": "session.model",
                      "message": "Incorrect API key provided: sk-fak***-key."}}
    return httpx.Response(status, json=body, headers=headers)


def failure_of(upstream: Upstream) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        upstream.client().create_client_secret(KEY, {"session": {}}, "caller-hash")
    return caught.value


def test_sends_the_body_the_key_and_the_safety_identifier() -> None:
    upstream = Upstream(secret())
    timed = upstream.client().create_client_secret(KEY, {"session": {"type": "realtime"}}, "caller-hash")
    assert timed.value == ClientSecret("ek_abc", 1_800_000_000)
    assert timed.latency_ms >= 0
    (request,) = upstream.requests
    assert str(request.url) == "https://openai.test/v1/realtime/client_secrets"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["openai-safety-identifier"] == "caller-hash"
    assert json.loads(request.content) == {"session": {"type": "realtime"}}


@pytest.mark.parametrize(("status", "kind"), [
    (401, FailureKind.AUTH), (403, FailureKind.AUTH), (429, FailureKind.BUSY), (400, FailureKind.REJECTED),
    (422, FailureKind.REJECTED), (404, FailureKind.NOT_FOUND),
])
def test_a_4xx_is_classified_and_never_retried(status: int, kind: FailureKind) -> None:
    upstream = Upstream(error(status))
    failure = failure_of(upstream)
    assert (failure.kind, failure.status) == (kind, status)
    assert len(upstream.requests) == 1


def test_the_detail_keeps_openais_code_but_never_the_key_it_quotes() -> None:
    assert failure_of(Upstream(error(401))).detail == "401"
    detail = failure_of(Upstream(error(400))).detail
    assert "bad_thing" in detail and "session.model" in detail


@pytest.mark.parametrize(("header", "seconds"), [("7", 7), ("0.2", 1), ("9999", 60), ("soon", 5), (None, 5)])
def test_retry_after_of_a_429_is_bounded(header: str | None, seconds: int) -> None:
    upstream = Upstream(error(429, **({"retry-after": header} if header else {})))
    assert failure_of(upstream).retry_after == seconds


def test_one_5xx_is_retried_once() -> None:
    upstream = Upstream(error(502), secret("ek_second"))
    assert upstream.client().create_client_secret(KEY, {}, "h").value.value == "ek_second"
    assert len(upstream.requests) == 2


def test_two_5xx_are_an_error() -> None:
    upstream = Upstream(error(500), error(503))
    assert failure_of(upstream).kind is FailureKind.ERROR
    assert len(upstream.requests) == 2


def test_a_connection_error_is_retried_once_then_unreachable() -> None:
    upstream = Upstream(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    failure = failure_of(upstream)
    assert failure.kind is FailureKind.UNREACHABLE and len(upstream.requests) == 2
    assert failure.latency_ms >= 0


def test_a_connect_timeout_is_retried_but_a_read_timeout_is_not() -> None:
    upstream = Upstream(httpx.ConnectTimeout("slow"), secret())
    assert upstream.client().create_client_secret(KEY, {}, "h").value.value == "ek_abc"
    upstream = Upstream(httpx.ReadTimeout("slow"), secret())
    assert failure_of(upstream).kind is FailureKind.TIMEOUT
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("lost", [httpx.RemoteProtocolError("no answer"), httpx.ReadError("reset"),
                                  httpx.WriteError("broken pipe")], ids=type)
def test_a_request_that_must_not_repeat_is_sent_once_when_the_connection_is_lost(lost: httpx.TransportError) -> None:
    """Sent, then the line went: OpenAI may have made the call, and a second would be one nobody leashes."""
    upstream = Upstream(lost, httpx.Response(201))
    with pytest.raises(UpstreamFailure) as caught:
        upstream.client().post("/realtime/calls", KEY, "h", may_repeat=False)
    assert caught.value.kind is FailureKind.UNREACHABLE and len(upstream.requests) == 1
    upstream = Upstream(lost, httpx.Response(200))  # a hangup may repeat: ending a call twice ends it once
    assert upstream.client().post("/realtime/calls/rtc_1/hangup", KEY).value.status_code == 200
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [500, 503])
def test_a_request_that_must_not_repeat_is_retried_after_openais_own_5xx(status: int) -> None:
    upstream = Upstream(error(status), httpx.Response(201))
    assert upstream.client().post("/live/sessions", KEY, "h", may_repeat=False).value.status_code == 201
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [502, 504])
def test_a_request_that_must_not_repeat_is_not_retried_after_a_gateways_5xx(status: int) -> None:
    """A gateway's 502/504 says nothing of whether OpenAI behind it made the call."""
    upstream = Upstream(error(status), httpx.Response(201))
    with pytest.raises(UpstreamFailure) as caught:
        upstream.client().post("/live/sessions", KEY, "h", may_repeat=False)
    assert (caught.value.kind, caught.value.status, len(upstream.requests)) == (FailureKind.ERROR, status, 1)


def test_a_request_that_must_not_repeat_is_retried_when_it_never_left() -> None:
    upstream = Upstream(httpx.ConnectError("refused"), httpx.Response(201))
    assert upstream.client().post("/realtime/calls", KEY, "h", may_repeat=False).value.status_code == 201
    upstream = Upstream(httpx.ConnectTimeout("slow"), error(500), httpx.Response(201))
    with pytest.raises(UpstreamFailure):  # one retry in all, whatever the reasons
        upstream.client().post("/realtime/calls", KEY, "h", may_repeat=False)
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("answer", [
    httpx.Response(200, text="not json"),
    httpx.Response(200, json={"value": "ek_x"}),
    httpx.Response(200, json={"value": 5, "expires_at": 1}),
    httpx.Response(200, json={"value": "", "expires_at": 1}),
    httpx.Response(200, json={"value": "ek_x", "expires_at": True}),
    httpx.Response(200, json=["ek_x"]),
    httpx.Response(201, json={"value": "ek_x", "expires_at": 1}),
])
def test_an_unusable_answer_is_an_error(answer: httpx.Response) -> None:
    assert failure_of(Upstream(answer)).kind is FailureKind.ERROR
