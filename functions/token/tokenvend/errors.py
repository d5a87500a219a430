"""Every failure a caller can see: one exception type, one JSON shape `{"error": {"code", "message"}}`.

Messages are written for the caller and are safe to show: never an upstream body, a stack trace or a secret.
"""

from __future__ import annotations

import json
from enum import StrEnum


class Code(StrEnum):
    INVALID_REQUEST = "invalid_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    INVALID_API_KEY = "invalid_api_key"
    ANONYMOUS_DISABLED = "anonymous_access_disabled"
    RATE_LIMITED = "rate_limited"
    DAILY_BUDGET_EXHAUSTED = "daily_budget_exhausted"
    ISSUING_PAUSED = "issuing_paused"
    LIMITER_UNAVAILABLE = "limiter_unavailable"
    NOT_CONFIGURED = "not_configured"
    SECRETS_UNAVAILABLE = "secrets_unavailable"
    UPSTREAM_AUTH = "upstream_auth"
    UPSTREAM_BUSY = "upstream_busy"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    LEASH_UNAVAILABLE = "leash_unavailable"
    CALLER_BLOCKED = "caller_blocked"
    TURNSTILE_FAILED = "turnstile_failed"
    TURNSTILE_UNAVAILABLE = "turnstile_unavailable"
    INVALID_HANGUP_TOKEN = "invalid_hangup_token"  # noqa: S105 - a code, not a token
    INTERNAL = "internal_error"


class ApiError(Exception):
    def __init__(self, status: int, code: Code, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> str:
        return error_body(self.code, self.message)


def error_body(code: Code, message: str) -> str:
    return json.dumps({"error": {"code": str(code), "message": message}})


def invalid_request(message: str) -> ApiError:
    return ApiError(400, Code.INVALID_REQUEST, message)


def invalid_api_key() -> ApiError:
    return ApiError(401, Code.INVALID_API_KEY, "The API key is missing, malformed or not valid.",
                    {"WWW-Authenticate": "Bearer"})


def limiter_unavailable(cause: BaseException | None = None) -> ApiError:
    error = ApiError(503, Code.LIMITER_UNAVAILABLE, "The rate limiter is unavailable; try again shortly.",
                     {"Retry-After": "2"})
    error.__cause__ = cause  # kept for the log line, never shown to the caller
    return error
