"""Who is asked for the human check: anonymous callers only, always or once their lane is past the owner's share;
a lane that cannot be read asks (fail closed)."""

from __future__ import annotations

import pytest

from tokenvend.caller import Caller, CallerKind
from tokenvend.errors import ApiError, Code
from tokenvend.human_check import HumanCheck


class Verifier:
    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str]] = []

    def verify(self, token: str | None, remote_ip: str) -> None:
        self.asked.append((token, remote_ip))
        if token is None:
            raise ApiError(403, Code.TURNSTILE_FAILED, "turnstile_token: missing")


class Lanes:
    def __init__(self, used: float | None) -> None:
        self.used = used

    def lane_share_used(self, lane: str) -> float | None:
        assert lane == "anonymous"
        return self.used

    def refuse_if_blocked(self, caller: Caller) -> None:
        if caller.hash == "blocked":
            raise ApiError(403, Code.CALLER_BLOCKED, "blocked")


ANON, KEY, USER = (Caller(CallerKind.ANONYMOUS, "a"), Caller(CallerKind.API_KEY, "k", "h"),
                   Caller(CallerKind.USER, "u"))


def test_only_anonymous_callers_are_asked() -> None:
    verifier = Verifier()
    check = HumanCheck(verifier, Lanes(0), 0)
    check.require(KEY, None, "203.0.113.1")
    check.require(USER, None, "203.0.113.1")
    with pytest.raises(ApiError):
        check.require(ANON, None, "203.0.113.1")
    assert verifier.asked == [(None, "203.0.113.1")]


def test_without_turnstile_nobody_is_asked() -> None:
    HumanCheck(None, Lanes(1), 0).require(ANON, None, "203.0.113.1")


@pytest.mark.parametrize(("used", "asked"), [(0.0, False), (0.49, False), (0.5, True), (0.9, True), (None, True)])
def test_challenge_after_percent(used: float | None, asked: bool) -> None:
    verifier = Verifier()
    HumanCheck(verifier, Lanes(used), 50).require(ANON, "token", "203.0.113.1")
    assert bool(verifier.asked) is asked


def test_a_blocked_caller_hears_so_before_any_token_is_spent() -> None:
    verifier = Verifier()
    with pytest.raises(ApiError) as refused:
        HumanCheck(verifier, Lanes(0), 0).require(Caller(CallerKind.ANONYMOUS, "blocked"), "token", "203.0.113.1")
    assert refused.value.code == Code.CALLER_BLOCKED and verifier.asked == []
