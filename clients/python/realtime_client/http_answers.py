"""Our API's HTTP answers -> typed errors, one mapping for every route (`/calls`, `/token`, `/options`).

Every error answer of the API is `{"error": {"code", "message"}}`; proxies and wrong URLs answer other things,
so the mapping keeps the status and an excerpt whatever the body is.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from realtime_client.endpoints import not_found_message
from realtime_client.errors import (
    AuthError,
    ClientError,
    EndpointNotFound,
    EndpointUnreachable,
    InvalidResponse,
    RateLimited,
    ServerError,
    SignInRefused,
)

USER_AGENT = "realtime-client/0.2.0"
# A 429 without Retry-After still has to tell scripts something to sleep on.
_FALLBACK_RETRY_AFTER = 1


@dataclass(frozen=True)
class RateLimit:
    """The `RateLimit-*` headers: the caller's quota (`reset` is seconds until it refills)."""

    limit: int | None
    remaining: int | None
    reset: int | None


def raise_for_error(response: httpx.Response) -> NoReturn:
    """Raise the `EndpointError` subclass for a non-success answer."""
    status = response.status_code
    code, message = error_fields(response)
    retry = retry_after(response.headers)
    if status == 401 and _gateway_message(response) is not None:
        # API Gateway's own refusal ({"message": "Unauthorized"}): its JWT authorizer, before our function ran.
        challenge = response.headers.get("www-authenticate")
        raise SignInRefused(status, "sign_in_refused", f"API Gateway refused the sign-in token ({_why(challenge)}); "
                            "get a fresh token from your identity provider", challenge)
    if status == 401:
        raise AuthError(status, code, message)
    if status == 404:
        url = str(response.request.url)
        raise EndpointNotFound(code, not_found_message(response.request.method, url, f"{code}: {message}"), url)
    if status == 429:
        quota = rate_limit(response.headers)
        fallback = quota.reset if quota and quota.reset is not None else _FALLBACK_RETRY_AFTER
        raise RateLimited(status, code, message, retry if retry is not None else fallback)
    if 400 <= status < 500:
        raise ClientError(status, code, message)
    if 500 <= status < 600:
        raise ServerError(status, code, message, retry)
    if 300 <= status < 400:
        # Following a redirect could hand our API key to another host; the caller should fix the URL instead.
        location = response.headers.get("Location", "?")
        raise InvalidResponse(status, "unexpected_redirect", f"redirected to {location}; use the final URL")
    raise InvalidResponse(status, "unexpected_status", f"unexpected HTTP status {status}")


def _gateway_message(response: httpx.Response) -> str | None:
    """The `message` of an answer API Gateway itself gave (`{"message": ...}`, never our `{"error": ...}`)."""
    try:
        data: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and set(data) == {"message"} and isinstance(data["message"], str):
        return data["message"]
    return None


def _why(challenge: str | None) -> str:
    """`Bearer scope="" error="invalid_token" error_description="the token has expired"` -> its description."""
    if not challenge:
        return "no reason given"
    match = re.search(r'error_description="([^"]*)"', challenge)
    if match:
        return match[1]
    return "no token was sent" if challenge.strip().lower() == "bearer" else challenge.strip()[:200]


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object, or InvalidResponse naming `what` was expected."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidResponse(response.status_code, "invalid_response", f"the {what} is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidResponse(response.status_code, "invalid_response", f"the {what} is not a JSON object")
    return data


def unreachable(exc: httpx.TransportError, timeout: float) -> EndpointUnreachable:
    if isinstance(exc, httpx.TimeoutException):
        return EndpointUnreachable("timeout", f"no answer within {timeout:g} s ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return EndpointUnreachable("connect_failed", f"could not connect: {exc}")
    return EndpointUnreachable("transport_error", f"{type(exc).__name__}: {exc}")


def error_fields(response: httpx.Response) -> tuple[str, str]:
    fallback_code = f"http_{response.status_code}"
    try:
        data: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) and code else fallback_code,
            message if isinstance(message, str) and message else response.reason_phrase,
        )
    text = response.text.strip()
    # Proxies answer with HTML pages; a short excerpt helps without flooding the terminal.
    return fallback_code, (" ".join(text.split())[:200] if text else response.reason_phrase) or fallback_code


def retry_after(headers: httpx.Headers) -> int | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, math.ceil(when.timestamp() - time.time()))


def rate_limit(headers: httpx.Headers) -> RateLimit | None:
    figures = [_int_header(headers, f"RateLimit-{name}") for name in ("Limit", "Remaining", "Reset")]
    if all(figure is None for figure in figures):
        return None
    return RateLimit(*figures)


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def session_choices(data: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """`model`, `voice` and `preset` of an answer's `session` object (each None when absent)."""
    session = data.get("session") if isinstance(data.get("session"), dict) else {}
    return str_or_none(session.get("model")), str_or_none(session.get("voice")), str_or_none(session.get("preset"))


def str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
