"""Vending one token: meter it, mint it at OpenAI, and give the budget back if minting failed.

The order matters for spend: the key and the salt are checked before the limiter is charged (a misconfigured stack
charges nobody), the limiter is charged before OpenAI is called (nothing is minted unmetered), and every upstream
failure after the charge releases it.
"""

from __future__ import annotations

from typing import Any

from tokenvend.caller import Caller
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Allowance, Limiter
from tokenvend.observability import count, latency, logger
from tokenvend.openai_client import ClientSecret, FailureKind, OpenAIClient, UpstreamFailure
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.secret_store import SecretStore
from tokenvend.settings import Settings

_UPSTREAM_ANSWERS: dict[FailureKind, tuple[int, Code, str]] = {
    FailureKind.AUTH: (502, Code.UPSTREAM_AUTH, "OpenAI rejected this service's key. The owner must check it."),
    FailureKind.BUSY: (503, Code.UPSTREAM_BUSY, "OpenAI is busy or out of quota; try again shortly."),
    FailureKind.REJECTED: (502, Code.UPSTREAM_ERROR, "OpenAI refused the session configuration."),
    FailureKind.ERROR: (502, Code.UPSTREAM_ERROR, "OpenAI returned an error; try again shortly."),
    FailureKind.UNREACHABLE: (502, Code.UPSTREAM_ERROR, "OpenAI could not be reached; try again shortly."),
    FailureKind.TIMEOUT: (504, Code.UPSTREAM_TIMEOUT, "OpenAI did not answer in time; try again shortly."),
}


class TokenVendor:
    def __init__(self, settings: Settings, secrets: SecretStore, limiter: Limiter, openai: OpenAIClient) -> None:
        self._settings = settings
        self._secrets = secrets
        self._limiter = limiter
        self._openai = openai
        self.policy = SessionPolicy(settings)

    def vend(self, caller: Caller, choice: SessionChoice) -> tuple[dict[str, Any], Allowance]:
        api_key = self._secrets.openai_key()
        grant = self._limiter.acquire(caller)
        try:
            secret = self._mint(api_key, choice, caller)
        except ApiError:
            self._limiter.release(grant)
            raise
        count("TokensIssued", caller_kind=str(caller.kind))
        body = {
            "token": secret.value,
            "expires_at": secret.expires_at,
            "realtime_url": self._settings.realtime_url,
            "session": self.policy.public_session(choice),
        }
        return body, self._limiter.allowance_of(grant)

    def _mint(self, api_key: str, choice: SessionChoice, caller: Caller) -> ClientSecret:
        request = self.policy.client_secret_request(choice)
        try:
            try:
                return self._call(api_key, request, caller)
            except UpstreamFailure as failure:
                if failure.kind is not FailureKind.AUTH:
                    raise
                # The cached key may have been rotated: read the secret afresh and try once more.
                logger.warning("OpenAI refused the cached key; refreshing it once", extra={"upstream": failure.detail})
                return self._call(self._secrets.refresh_openai_key(), request, caller)
        except UpstreamFailure as failure:
            status, code, message = _UPSTREAM_ANSWERS[failure.kind]
            count("UpstreamErrors", kind=str(failure.kind))
            logger.error("OpenAI call failed", extra={"upstream_kind": str(failure.kind), "upstream": failure.detail})
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            raise ApiError(status, code, message, headers) from None

    def _call(self, api_key: str, request: dict[str, Any], caller: Caller) -> ClientSecret:
        try:
            return self._openai.create_client_secret(api_key, request, caller.hash)
        finally:
            latency("UpstreamLatency", self._openai.last_latency_ms)
