"""TurnstileCheck against the local Turnstile stand-in over HTTP (as strict as Cloudflare's siteverify): each answer
a caller can get, and each way Cloudflare can fail us."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from local.turnstile_standin import TurnstileStandIn
from tokenvend.errors import ApiError, Code
from tokenvend.turnstile import TurnstileCheck

SECRET = "0x4AAAAAAA-integration-secret"
HOSTS = ("voice.example", "localhost")
CALLER_IP = "198.51.100.23"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def standin(clock: Clock) -> Iterator[TurnstileStandIn]:
    with TurnstileStandIn(secret=SECRET, clock=clock) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:  # one per container, as the function has
        yield client


def check_for(standin: TurnstileStandIn, http: httpx.Client, *, secret: str = SECRET, timeout: float = 5.0,
              verify_url: str | None = None) -> TurnstileCheck:
    return TurnstileCheck(http, lambda: secret, verify_url or standin.verify_url, HOSTS, timeout_seconds=timeout)


def refusal(check: TurnstileCheck, token: str | None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check.verify(token, CALLER_IP)
    return caught.value


def assert_failed(error: ApiError, says: str) -> None:
    assert (error.status, error.code) == (403, Code.TURNSTILE_FAILED), error
    assert error.message.startswith("turnstile_token: ") and says in error.message


def assert_unavailable(error: ApiError) -> None:
    assert (error.status, error.code) == (503, Code.TURNSTILE_UNAVAILABLE), error
    assert int(error.headers["Retry-After"]) > 0


def test_success_sends_the_callers_address_and_a_fresh_idempotency_key(standin: TurnstileStandIn,
                                                                       http: httpx.Client) -> None:
    check_for(standin, http).verify(standin.mint("voice.example"), CALLER_IP)
    [seen] = standin.verifications
    assert seen.remoteip == CALLER_IP and seen.content_type == "application/json"
    assert seen.answer is not None and seen.answer["success"] is True and len(seen.idempotency_key) == 36


def test_a_token_the_widget_minted_for_the_page_passes(standin: TurnstileStandIn, http: httpx.Client) -> None:
    page = httpx.get(f"{standin.url}/turnstile/v0/widget", timeout=5, params={
        "sitekey": standin.site_key, "action": "call", "parent_origin": "http://localhost:8123", "widget": "w"})
    [load] = standin.widget_loads
    assert page.status_code == 200 and load.token is not None
    check_for(standin, http).verify(load.token, CALLER_IP)


def test_a_token_never_issued_fails(standin: TurnstileStandIn, http: httpx.Client) -> None:
    assert_failed(refusal(check_for(standin, http), "0.made-up.token"), "not valid")


def test_a_duplicate_fails_in_the_same_container_without_a_round_trip(standin: TurnstileStandIn,
                                                                      http: httpx.Client) -> None:
    check, token = check_for(standin, http), standin.mint("voice.example")
    check.verify(token, CALLER_IP)
    assert_failed(refusal(check, token), "already used")
    assert len(standin.verifications) == 1


def test_a_duplicate_fails_in_another_container_because_cloudflare_says_so(standin: TurnstileStandIn,
                                                                           http: httpx.Client) -> None:
    token = standin.mint("voice.example")
    check_for(standin, http).verify(token, CALLER_IP)
    with httpx.Client() as other_container:
        assert_failed(refusal(check_for(standin, other_container), token), "already used")
    assert [v.answer and v.answer["error-codes"] for v in standin.verifications] == [[], ["timeout-or-duplicate"]]


def test_a_token_for_another_host_fails(standin: TurnstileStandIn, http: httpx.Client) -> None:
    assert_failed(refusal(check_for(standin, http), standin.mint("evil.example")), "another host")


def test_a_token_for_another_action_fails(standin: TurnstileStandIn, http: httpx.Client) -> None:
    assert_failed(refusal(check_for(standin, http), standin.mint("voice.example", action="login")), "another action")


def test_an_expired_token_fails(standin: TurnstileStandIn, http: httpx.Client, clock: Clock) -> None:
    token = standin.mint("voice.example")
    clock.now += 301
    assert_failed(refusal(check_for(standin, http), token), "expired")


def test_a_missing_token_fails_without_asking(standin: TurnstileStandIn, http: httpx.Client) -> None:
    assert_failed(refusal(check_for(standin, http), None), "missing")
    assert standin.verifications == []


def test_a_verify_that_times_out_is_unavailable(standin: TurnstileStandIn, http: httpx.Client) -> None:
    standin.delay_next_verify(3)
    assert_unavailable(refusal(check_for(standin, http, timeout=0.3), standin.mint("voice.example")))


def test_a_stand_in_that_is_down_is_unavailable(http: httpx.Client) -> None:
    gone = TurnstileStandIn(secret=SECRET).start()
    verify_url = gone.verify_url
    gone.stop()  # nothing listens on its port now: connection refused
    check = TurnstileCheck(http, lambda: SECRET, verify_url, HOSTS, timeout_seconds=2)
    assert_unavailable(refusal(check, "0.some.token"))


@pytest.mark.parametrize("fault", ["fail_next_verify", "garble_next_verify"])
def test_a_server_error_or_an_unreadable_answer_is_unavailable(standin: TurnstileStandIn, http: httpx.Client,
                                                               fault: str) -> None:
    getattr(standin, fault)()
    token = standin.mint("voice.example")
    check = check_for(standin, http)
    assert_unavailable(refusal(check, token))
    check.verify(token, CALLER_IP)  # the caller may try again with the same token: it was never spent


def test_our_secret_refused_is_unavailable_and_spends_nothing(standin: TurnstileStandIn, http: httpx.Client,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    token = standin.mint("voice.example")
    assert_unavailable(refusal(check_for(standin, http, secret="0x-an-old-rotated-secret"), token))
    assert any(r.levelname == "ERROR" and "secret" in r.getMessage() for r in caplog.records)
    assert "0x-an-old-rotated-secret" not in caplog.text and token not in caplog.text
    check_for(standin, http).verify(token, CALLER_IP)
