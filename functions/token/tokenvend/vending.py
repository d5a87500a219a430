"""Vending one token (`POST /token`): who asks, what they may choose, then the token minted at OpenAI under the
caller's and the day's limits (`Admission.create_metered`). The caller's choice is checked first, so a bad request
charges nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tokenvend.admission import Admission, RequestFacts
from tokenvend.limiter import Limiter, Spend
from tokenvend.metric_names import TOKENS_ISSUED, UPSTREAM_LATENCY, tally
from tokenvend.observability import latency
from tokenvend.openai_client import ClientSecret, OpenAIClient
from tokenvend.policy import SessionChoice, SessionPolicy


class Answer(NamedTuple):
    """A successful answer of a service: the JSON body and the headers that go with it."""

    body: dict[str, Any]
    headers: dict[str, str]


class TokenVendor:
    def __init__(self, policy: SessionPolicy, admission: Admission, limiter: Limiter, spend: Spend,
                 openai: OpenAIClient, realtime_url: str) -> None:
        self._policy = policy
        self._spend = spend
        self._admission = admission
        self._limiter = limiter
        self._openai = openai
        self._realtime_url = realtime_url

    def vend(self, facts: RequestFacts, voice: str | None, preset: str | None) -> Answer:
        choice = self._policy.choose(voice, preset)
        caller = self._admission.identify(facts)
        with self._admission.allowance_on_error(caller):
            secret, grant = self._admission.create_metered(caller, self._spend,
                                                           lambda key: self._mint(key, choice, caller.hash))
        tally(TOKENS_ISSUED, caller_kind=str(caller.kind))
        body = {
            "token": secret.value,
            "expires_at": secret.expires_at,
            "realtime_url": self._realtime_url,
            "session": self._policy.token_summary(choice),
        }
        return Answer(body, self._limiter.allowance_of(grant).headers())

    def _mint(self, api_key: str, choice: SessionChoice, safety_identifier: str) -> ClientSecret:
        timed = self._openai.create_client_secret(api_key, self._policy.client_secret_request(choice),
                                                  safety_identifier)
        latency(UPSTREAM_LATENCY, timed.latency_ms)
        return timed.value
