"""Get an ephemeral OpenAI Realtime token from our token-vending endpoint (sync and async)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from realtime_client.errors import (
    AuthError,
    ClientError,
    EndpointUnreachable,
    InvalidResponse,
    RateLimited,
    ServerError,
    TokenError,
)

DEFAULT_TIMEOUT = 10.0
USER_AGENT = "realtime-client/0.1.0"
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# A 429 without Retry-After still has to tell scripts something to sleep on.
_FALLBACK_RETRY_AFTER = 1


@dataclass(frozen=True)
class RateLimit:
    """The `RateLimit-*` headers: the caller's quota (`reset` is seconds until it refills)."""

    limit: int | None
    remaining: int | None
    reset: int | None


@dataclass(frozen=True)
class Token:
    """An ephemeral token and where to use it. `repr` leaves the secret out so it never lands in a log."""

    token: str = field(repr=False)
    expires_at: int
    realtime_url: str
    model: str | None = None
    voice: str | None = None
    preset: str | None = None
    rate_limit: RateLimit | None = None

    def expires_in(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)


def fetch_token(
    endpoint: str,
    *,
    api_key: str | None = None,
    voice: str | None = None,
    preset: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Token:
    """POST to the token URL and return the token, or raise a `TokenError` subclass."""
    url, headers, body = _request_parts(endpoint, api_key, voice, preset)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise _unreachable(exc, timeout) from None
    return _parse(response)


async def fetch_token_async(
    endpoint: str,
    *,
    api_key: str | None = None,
    voice: str | None = None,
    preset: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Token:
    """The async twin of `fetch_token`."""
    url, headers, body = _request_parts(endpoint, api_key, voice, preset)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise _unreachable(exc, timeout) from None
    return _parse(response)


def _request_parts(
    endpoint: str, api_key: str | None, voice: str | None, preset: str | None
) -> tuple[str, dict[str, str], bytes]:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    # The endpoint rejects unknown fields, so send only what the caller chose.
    fields = {name: value for name, value in (("voice", voice), ("preset", preset)) if value is not None}
    return endpoint, headers, json.dumps(fields).encode()


def _unreachable(exc: httpx.TransportError, timeout: float) -> EndpointUnreachable:
    if isinstance(exc, httpx.TimeoutException):
        return EndpointUnreachable("timeout", f"no answer within {timeout:g} s ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return EndpointUnreachable("connect_failed", f"could not connect: {exc}")
    return EndpointUnreachable("transport_error", f"{type(exc).__name__}: {exc}")


def _parse(response: httpx.Response) -> Token:
    status = response.status_code
    if status == 200:
        return _parse_token(response)
    code, message = _error_fields(response)
    retry_after = _retry_after(response.headers)
    if status == 401:
        raise AuthError(status, code, message)
    if status == 429:
        reset = _rate_limit(response.headers)
        fallback = reset.reset if reset and reset.reset is not None else _FALLBACK_RETRY_AFTER
        raise RateLimited(status, code, message, retry_after if retry_after is not None else fallback)
    if 400 <= status < 500:
        raise ClientError(status, code, message)
    if 500 <= status < 600:
        raise ServerError(status, code, message, retry_after)
    if 300 <= status < 400:
        # Following a redirect could hand our API key to another host; the caller should fix the URL instead.
        location = response.headers.get("Location", "?")
        raise InvalidResponse(status, "unexpected_redirect", f"redirected to {location}; use the final URL")
    raise InvalidResponse(status, "unexpected_status", f"unexpected HTTP status {status}")


def _parse_token(response: httpx.Response) -> Token:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidResponse(200, "invalid_response", "the token answer is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidResponse(200, "invalid_response", "the token answer is not a JSON object")
    token = data.get("token")
    expires_at = data.get("expires_at")
    realtime_url = data.get("realtime_url")
    session = data.get("session") if isinstance(data.get("session"), dict) else {}
    if not isinstance(token, str) or not token:
        raise InvalidResponse(200, "invalid_response", "the token answer has no token")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise InvalidResponse(200, "invalid_response", "the token answer has no integer expires_at")
    if not isinstance(realtime_url, str) or not _safe_realtime_url(realtime_url):
        raise InvalidResponse(200, "invalid_response", f"unusable realtime_url {realtime_url!r}")
    return Token(
        token=token,
        expires_at=expires_at,
        realtime_url=realtime_url,
        model=_str_or_none(session.get("model")),
        voice=_str_or_none(session.get("voice")),
        preset=_str_or_none(session.get("preset")),
        rate_limit=_rate_limit(response.headers),
    )


def _safe_realtime_url(url: str) -> bool:
    # The token is a bearer secret: plain http is only acceptable to a local stand-in.
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def _error_fields(response: httpx.Response) -> tuple[str, str]:
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


def _retry_after(headers: httpx.Headers) -> int | None:
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


def _rate_limit(headers: httpx.Headers) -> RateLimit | None:
    figures = [_int_header(headers, f"RateLimit-{name}") for name in ("Limit", "Remaining", "Reset")]
    if all(figure is None for figure in figures):
        return None
    return RateLimit(*figures)


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


__all__ = ["DEFAULT_TIMEOUT", "RateLimit", "Token", "TokenError", "fetch_token", "fetch_token_async"]
