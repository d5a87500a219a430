"""Vending a token, with in-memory collaborators in place of Secrets Manager, DynamoDB and OpenAI: the order of
the steps (nothing charged for a bad request, nothing minted unmetered), the budget given back on every upstream
failure, one refresh of a rotated key, and the allowance on every answer."""

from __future__ import annotations

import json

import pytest

from tests.unit.token.fakes import Limiter, OpenAI, Secrets
from tokenvend.admission import Admission, RequestFacts
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Spend
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.policy import SessionPolicy
from tokenvend.settings import Settings
from tokenvend.vending import TokenVendor

SETTINGS = Settings.from_env({
    "OPENAI_SECRET_ARN": "arn:key", "HASH_SALT_SECRET_ARN": "arn:salt", "TABLE_NAME": "limits",
    "ALLOWED_VOICES": "marin,cedar", "INSTRUCTION_PRESETS": json.dumps({"default": "Be kind.", "tutor": "Teach."}),
})
FACTS = RequestFacts(authorization=None, source_ip="203.0.113.9")


def vendor(secrets: Secrets, limiter: Limiter, openai: OpenAI) -> TokenVendor:
    admission = Admission(secrets, limiter, allow_anonymous=True)  # type: ignore[arg-type]
    return TokenVendor(SessionPolicy(SETTINGS), admission, limiter,  # type: ignore[arg-type]
                       Spend.token(SETTINGS.limits), openai, SETTINGS.realtime_url)  # type: ignore[arg-type]


def test_a_token_under_the_policy_with_its_allowance() -> None:
    secrets, limiter, openai = Secrets(), Limiter(), OpenAI()
    answer = vendor(secrets, limiter, openai).vend(FACTS, "cedar", "tutor")
    assert answer.body == {"token": "ek_fake", "expires_at": 1_900_000_000, "realtime_url": SETTINGS.realtime_url,
                           "session": {"model": SETTINGS.model, "voice": "cedar", "preset": "tutor"}}
    assert answer.headers == {"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "10"}
    ((key, body, safety_id),) = openai.calls
    assert key == "sk-fake-cached" and body["session"]["instructions"] == "Teach."
    assert len(safety_id) == 32 and "203.0.113.9" not in safety_id
    assert (len(limiter.charged), limiter.released) == (1, [])


@pytest.mark.parametrize(("voice", "preset"), [("alloy", None), (None, "evil")])
def test_a_choice_outside_the_policy_charges_nothing_and_reads_nothing(voice: str | None, preset: str | None) -> None:
    secrets, limiter, openai = Secrets(), Limiter(), OpenAI()
    with pytest.raises(ApiError) as caught:
        vendor(secrets, limiter, openai).vend(FACTS, voice, preset)
    assert caught.value.status == 400
    assert (limiter.charged, secrets.reads, openai.calls) == ([], [], [])


@pytest.mark.parametrize(("kind", "status", "code"), [
    (FailureKind.BUSY, 503, Code.UPSTREAM_BUSY), (FailureKind.REJECTED, 502, Code.UPSTREAM_ERROR),
    (FailureKind.ERROR, 502, Code.UPSTREAM_ERROR), (FailureKind.UNREACHABLE, 502, Code.UPSTREAM_ERROR),
    (FailureKind.TIMEOUT, 504, Code.UPSTREAM_TIMEOUT),
])
def test_every_upstream_failure_gives_the_budget_back(kind: FailureKind, status: int, code: Code) -> None:
    limiter, openai = Limiter(), OpenAI([UpstreamFailure(kind, None, "detail", retry_after=7)])
    with pytest.raises(ApiError) as caught:
        vendor(Secrets(), limiter, openai).vend(FACTS, None, None)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.headers["Retry-After"] == "7"
    assert caught.value.headers["RateLimit-Remaining"] == "1", "the caller's allowance rides on the error"
    assert (len(limiter.charged), len(limiter.released), len(openai.calls)) == (1, 1, 1)


def test_a_refused_key_is_refreshed_once_and_retried() -> None:
    secrets, openai = Secrets(), OpenAI([UpstreamFailure(FailureKind.AUTH, 401, "401")])
    answer = vendor(secrets, Limiter(), openai).vend(FACTS, None, None)
    assert answer.body["token"] == "ek_fake"
    assert secrets.reads == ["cached", "refresh"]
    assert [call[0] for call in openai.calls] == ["sk-fake-cached", "sk-fake-rotated"]


def test_a_key_refused_twice_is_502_upstream_auth_and_released() -> None:
    limiter = Limiter()
    openai = OpenAI([UpstreamFailure(FailureKind.AUTH, 401, "401"), UpstreamFailure(FailureKind.AUTH, 401, "401")])
    with pytest.raises(ApiError) as caught:
        vendor(Secrets(), limiter, openai).vend(FACTS, None, None)
    assert (caught.value.status, caught.value.code) == (502, Code.UPSTREAM_AUTH)
    assert (len(limiter.charged), len(limiter.released), len(openai.calls)) == (1, 1, 2)


def test_a_denial_by_the_limiter_calls_no_one() -> None:
    refusal = ApiError(429, Code.RATE_LIMITED, "slow down", {"Retry-After": "5", "RateLimit-Limit": "3",
                                                             "RateLimit-Remaining": "0", "RateLimit-Reset": "9"})
    openai = OpenAI()
    with pytest.raises(ApiError) as caught:
        vendor(Secrets(), Limiter(refuse=refusal), openai).vend(FACTS, None, None)
    assert caught.value.headers["RateLimit-Remaining"] == "0", "the limiter's own figures are kept"
    assert openai.calls == []
