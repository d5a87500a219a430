"""Whether an anonymous caller must pass the human check (Cloudflare Turnstile) before a call is charged.

Only anonymous callers ever see it: API keys and signed-in users are identities the owner gave out. With
`ChallengeAfterPercent` the check is asked for only once the anonymous lane is past that share of its minutes, so
visitors of a quiet site are not bothered; reading the lane costs one read, and if that read fails the check is
asked for (fail closed). The check itself (`turnstile.TurnstileCheck`) answers 403 or 503, never charging anything.
"""

from __future__ import annotations

from typing import Protocol

from tokenvend.caller import Caller, CallerKind


class Verifier(Protocol):
    def verify(self, token: str | None, remote_ip: str) -> None: ...


class LaneReader(Protocol):
    def lane_share_used(self, lane: str) -> float | None: ...

    def refuse_if_blocked(self, caller: Caller) -> None: ...


class HumanCheck:
    def __init__(self, verifier: Verifier | None, lanes: LaneReader, challenge_after_percent: float) -> None:
        self._verifier = verifier
        self._lanes = lanes
        self._after = challenge_after_percent / 100

    @property
    def configured(self) -> bool:
        return self._verifier is not None

    def require(self, caller: Caller, token: str | None, remote_ip: str) -> None:
        if self._verifier is None or caller.kind is not CallerKind.ANONYMOUS:
            return
        if self._after > 0:
            used = self._lanes.lane_share_used(str(CallerKind.ANONYMOUS))
            if used is not None and used < self._after:
                return
        # A blocked caller hears so, and spends no token on a check that could not let it in.
        self._lanes.refuse_if_blocked(caller)
        self._verifier.verify(token, remote_ip)
