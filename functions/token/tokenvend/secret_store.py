"""The OpenAI key, the hashing salt and Turnstile's secret (when the owner set one up), read from Secrets Manager
through Powertools Parameters.

Both are cached in memory for `secret_cache_seconds`, so a warm function makes no Secrets Manager call and a rotated
key is picked up within that time without a redeploy. `refresh_openai_key` bypasses the cache once, for when OpenAI
says the cached key is no longer valid.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from tokenvend.errors import ApiError, Code

_NOT_CONFIGURED = "The service is not configured yet: the OpenAI key has not been stored. See the README."
# Secrets Manager error codes that mean "the owner has not set this up", as opposed to a passing failure.
RETRY_AFTER_SECONDS = 2
_CONFIG_ERRORS = ("ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure", "InvalidRequestException")


class SecretIds(NamedTuple):
    openai_key: str
    hash_salt: str
    turnstile: str = ""


class SecretStore:
    def __init__(self, ids: SecretIds, cache_seconds: int, provider: SecretsProvider | None = None) -> None:
        self._ids = ids
        self._cache_seconds = cache_seconds
        # Our own provider rather than the module default, so a test can point a fresh one at a fresh endpoint.
        self._provider = provider or SecretsProvider()

    def openai_key(self) -> str:
        return parse_openai_key(self._get(self._ids.openai_key, force=False))

    def refresh_openai_key(self) -> str:
        return parse_openai_key(self._get(self._ids.openai_key, force=True))

    def hash_salt(self) -> bytes:
        salt = self._get(self._ids.hash_salt, force=False).strip()
        if len(salt) < 16:
            raise ApiError(500, Code.NOT_CONFIGURED, "The service is not configured yet: the hashing salt is missing.")
        return salt.encode()

    def turnstile_secret(self) -> str:
        secret = self._get(self._ids.turnstile, force=False).strip()
        if not secret:
            raise ApiError(500, Code.NOT_CONFIGURED,
                           "The service is not configured yet: the Turnstile secret is empty.")
        return secret

    def _get(self, secret_id: str, *, force: bool) -> str:
        try:
            value = self._provider.get(secret_id, max_age=self._cache_seconds, force_fetch=force)
        except GetParameterError as exc:
            code = _aws_error_code(exc)
            if code in _CONFIG_ERRORS:
                raise ApiError(500, Code.NOT_CONFIGURED, _NOT_CONFIGURED) from None
            # Throttled, unreachable, or failing on AWS's side: passing, so say when to come back.
            raise ApiError(503, Code.SECRETS_UNAVAILABLE, "The key store is unavailable; try again shortly.",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value or ""


def parse_openai_key(raw: str) -> str:
    """The secret holds either the bare key or JSON `{"api_key": "..."}`."""
    raw = raw.strip()
    key: object = raw
    if raw.startswith("{"):
        try:
            key = json.loads(raw).get("api_key", "")
        except (json.JSONDecodeError, AttributeError):
            key = ""
    if not isinstance(key, str) or not key.strip() or any(c.isspace() for c in key.strip()):
        raise ApiError(500, Code.NOT_CONFIGURED, _NOT_CONFIGURED)
    return key.strip()


def _aws_error_code(exc: BaseException) -> str | None:
    """Powertools wraps the botocore error in GetParameterError; the original is its context."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None
