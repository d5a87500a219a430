"""TurnstileCheck's reading of Cloudflare's answers, against an in-process transport (no sockets).

The same checks run against the local stand-in over HTTP in tests/integration/token/test_turnstile.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tokenvend.errors import ApiError, Code
from tokenvend.turnstile import MAX_TOKEN_CHARS, REMEMBERED_TOKENS, TurnstileCheck

VERIFY_URL = "https://challenges.example/turnstile/v0/siteverify"
SECRET = "0x4AAAAAAA-the-secret-key"
TOKEN = "0.a-token_from.the-widget"
NOW = 1_700_000_000.0
ISSUED = "2023-11-14T22:13:10.000Z"  # NOW - 10 s


def passed(**overrides: Any) -> dict[str, Any]:
    return {"success": True, "error-codes": [], "challenge_ts": ISSUED, "hostname": "voice.example", "action": "call",
            "cdata": "", **overrides}


def refused(*codes: str) -> dict[str, Any]:
    return {"success": False, "error-codes": list(codes)}


class Cloudflare:
    """Answers each verify with the next of `answers` (a dict is JSON, a callable raises or builds the response)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            return answer(request)
        return httpx.Response(200, json=answer)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)


def check_with(cloudflare: Cloudflare, clock: Callable[[], float] = lambda: NOW,
               hostnames: tuple[str, ...] = ("voice.example", "www.voice.example")) -> TurnstileCheck:
    http = httpx.Client(transport=httpx.MockTransport(cloudflare))
    return TurnstileCheck(http, lambda: SECRET, VERIFY_URL, hostnames, clock=clock)


def refusal(check: TurnstileCheck, token: str | None = TOKEN) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check.verify(token, "203.0.113.7")
    return caught.value


def test_a_fresh_token_for_our_host_and_action_passes_and_cloudflare_is_asked_as_documented() -> None:
    cloudflare = Cloudflare(passed())
    check_with(cloudflare).verify(TOKEN, "203.0.113.7")
    [request] = cloudflare.requests
    assert request.method == "POST" and str(request.url) == VERIFY_URL
    assert request.headers["content-type"] == "application/json"
    body = cloudflare.body()
    assert set(body) == {"secret", "response", "remoteip", "idempotency_key"}
    assert (body["secret"], body["response"], body["remoteip"]) == (SECRET, TOKEN, "203.0.113.7")
    assert len(body["idempotency_key"]) == 36


def test_each_verification_has_its_own_idempotency_key() -> None:
    cloudflare = Cloudflare(passed())
    check = check_with(cloudflare)
    check.verify("token-one", "203.0.113.7")
    check.verify("token-two", "203.0.113.7")
    assert cloudflare.body(0)["idempotency_key"] != cloudflare.body(1)["idempotency_key"]


def test_hostnames_are_compared_without_case() -> None:
    check_with(Cloudflare(passed(hostname="WWW.Voice.Example"))).verify(TOKEN, "203.0.113.7")


@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_is_refused_without_asking_cloudflare(token: str | None) -> None:
    cloudflare = Cloudflare(passed())
    error = refusal(check_with(cloudflare), token)
    assert (error.status, error.code) == (403, Code.TURNSTILE_FAILED)
    assert error.message.startswith("turnstile_token: missing")
    assert cloudflare.requests == []


@pytest.mark.parametrize("token", ["x" * (MAX_TOKEN_CHARS + 1), "has a space", "new\nline", "ünïcode", "tab\t"])
def test_a_token_no_widget_issues_is_refused_without_asking_cloudflare(token: str) -> None:
    cloudflare = Cloudflare(passed())
    error = refusal(check_with(cloudflare), token)
    assert (error.status, error.code) == (403, Code.TURNSTILE_FAILED)
    assert error.message.startswith("turnstile_token:")
    assert cloudflare.requests == []


def test_the_longest_token_cloudflare_takes_is_sent() -> None:
    cloudflare = Cloudflare(passed())
    check_with(cloudflare).verify("y" * MAX_TOKEN_CHARS, "203.0.113.7")
    assert len(cloudflare.requests) == 1


@pytest.mark.parametrize(("answer", "says"), [
    (refused("timeout-or-duplicate"), "expired or already used"),
    (refused("invalid-input-response"), "not valid"),
    (refused("missing-input-response"), "not valid"),
    (refused("some-code-from-the-future"), "refused"),
    (passed(hostname="evil.example"), "issued for another host"),
    (passed(action="login"), "issued for another action"),
    (passed(action=""), "issued for another action"),
    (passed(challenge_ts="2023-11-14T22:00:00Z"), "expired"),  # 800 s before NOW: past what Cloudflare allows
])
def test_what_the_caller_got_wrong_is_403_naming_the_field(answer: dict[str, Any], says: str) -> None:
    error = refusal(check_with(Cloudflare(answer)))
    assert (error.status, error.code) == (403, Code.TURNSTILE_FAILED)
    assert error.message.startswith("turnstile_token: ") and says in error.message
    assert SECRET not in error.message and TOKEN not in error.message


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize("answer", [
    timeout,
    unreachable,
    lambda _: httpx.Response(500, text="oops"),
    lambda _: httpx.Response(503, json=refused("internal-error")),
    lambda _: httpx.Response(200, text="<html>not json</html>"),
    lambda _: httpx.Response(200, json=["a", "list"]),
    lambda _: httpx.Response(200, json={"success": "yes"}),
    lambda _: httpx.Response(200, json={"success": False, "error-codes": "timeout-or-duplicate"}),
    lambda _: httpx.Response(400, text="Bad Request"),
    refused("internal-error"),
    refused("bad-request"),
    refused(),
    passed(hostname=None),
    passed(challenge_ts="yesterday"),
], ids=["timeout", "unreachable", "500", "503-json", "not-json", "a-list", "success-not-bool", "codes-not-list",
        "400-not-json", "internal-error", "bad-request", "no-codes", "no-hostname", "bad-timestamp"])
def test_what_is_not_the_callers_doing_is_503_with_retry_after(answer: Any) -> None:
    error = refusal(check_with(Cloudflare(answer)))
    assert (error.status, error.code) == (503, Code.TURNSTILE_UNAVAILABLE)
    assert error.headers["Retry-After"].isdigit()
    assert "turnstile_token" in error.message
    assert SECRET not in error.message and TOKEN not in error.message and "oops" not in error.message


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message and extra fields, as the log line would carry them."""
    return "\n".join(f"{record.levelname} {record.getMessage()} {vars(record)}" for record in caplog.records)


@pytest.mark.parametrize("code", ["invalid-input-secret", "missing-input-secret"])
def test_our_secret_refused_is_503_and_an_error_log_without_the_secret(code: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    error = refusal(check_with(Cloudflare(refused(code))))
    assert (error.status, error.code) == (503, Code.TURNSTILE_UNAVAILABLE)
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "secret" in record.getMessage() and code in record.error_codes
    assert SECRET not in logged(caplog) and TOKEN not in logged(caplog)


def test_nothing_logged_carries_the_token_or_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    for answer in (timeout, refused("internal-error"), passed(hostname=None), refused("new-code")):
        refusal(check_with(Cloudflare(answer)))
    assert len(caplog.records) == 4
    assert SECRET not in logged(caplog) and TOKEN not in logged(caplog)


def test_a_token_that_passed_here_is_refused_on_replay_without_asking_cloudflare() -> None:
    cloudflare = Cloudflare(passed())
    check = check_with(cloudflare)
    check.verify(TOKEN, "203.0.113.7")
    error = refusal(check)
    assert (error.status, error.code) == (403, Code.TURNSTILE_FAILED)
    assert "already used" in error.message
    assert len(cloudflare.requests) == 1


def test_a_token_cloudflare_passed_for_another_host_is_spent_all_the_same() -> None:
    cloudflare = Cloudflare(passed(hostname="evil.example"))
    check = check_with(cloudflare)
    assert "another host" in refusal(check).message
    assert "already used" in refusal(check).message
    assert len(cloudflare.requests) == 1


def test_a_refused_token_is_not_remembered() -> None:
    # Cloudflare keeps the count of a token it refused: asking it again is its answer to give.
    cloudflare = Cloudflare(refused("internal-error"), passed())
    check = check_with(cloudflare)
    assert refusal(check).status == 503
    check.verify(TOKEN, "203.0.113.7")
    assert len(cloudflare.requests) == 2


def test_remembered_tokens_are_forgotten_once_past_their_lifetime() -> None:
    now = [NOW]
    cloudflare = Cloudflare(passed(), refused("timeout-or-duplicate"))
    check = check_with(cloudflare, clock=lambda: now[0])
    check.verify(TOKEN, "203.0.113.7")
    now[0] += 331  # past 300 s and the skew allowed: Cloudflare itself is asked, and refuses
    assert "expired or already used" in refusal(check).message
    assert len(cloudflare.requests) == 2
    assert not check._seen  # nothing kept past its time


def test_the_memory_of_tokens_is_bounded() -> None:
    check = check_with(Cloudflare(passed()))
    for n in range(REMEMBERED_TOKENS + 5):
        check.verify(f"token-{n}", "203.0.113.7")
    assert len(check._seen) == REMEMBERED_TOKENS


def test_the_secret_is_read_only_when_cloudflare_is_asked() -> None:
    reads: list[str] = []

    def secret() -> str:
        reads.append("read")
        return SECRET

    http = httpx.Client(transport=httpx.MockTransport(Cloudflare(passed())))
    check = TurnstileCheck(http, secret, VERIFY_URL, ("voice.example",), clock=lambda: NOW)
    with pytest.raises(ApiError):
        check.verify("", "203.0.113.7")
    assert reads == []
    check.verify(TOKEN, "203.0.113.7")
    assert reads == ["read"]


def test_a_failure_to_read_the_secret_is_the_secret_stores_own_error() -> None:
    def secret() -> str:
        raise ApiError(503, Code.SECRETS_UNAVAILABLE, "The key store is unavailable; try again shortly.")

    cloudflare = Cloudflare(passed())
    http = httpx.Client(transport=httpx.MockTransport(cloudflare))
    check = TurnstileCheck(http, secret, VERIFY_URL, ("voice.example",), clock=lambda: NOW)
    assert refusal(check).code == Code.SECRETS_UNAVAILABLE
    assert cloudflare.requests == []


def test_no_hostnames_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="hostnames"):
        TurnstileCheck(httpx.Client(), lambda: SECRET, VERIFY_URL, ())


def test_the_timeout_bounds_each_request() -> None:
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=passed())

    http = httpx.Client(transport=httpx.MockTransport(record), timeout=60)
    TurnstileCheck(http, lambda: SECRET, VERIFY_URL, ("voice.example",), timeout_seconds=2.5,
                   clock=lambda: NOW).verify(TOKEN, "203.0.113.7")
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]


def test_the_secret_is_sent_without_surrounding_whitespace() -> None:
    cloudflare = Cloudflare(passed())
    http = httpx.Client(transport=httpx.MockTransport(cloudflare))
    TurnstileCheck(http, lambda: f" {SECRET}\n", VERIFY_URL, ("voice.example",), clock=lambda: NOW).verify(
        TOKEN, "203.0.113.7")
    assert cloudflare.body()["secret"] == SECRET
