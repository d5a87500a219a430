"""The old path: get an ephemeral OpenAI Realtime token from `POST /token` (sync and async).

A stack answers `/token` only when deployed with `EnableTokenRoute=true`; the default path is `/calls`
(`realtime_client.calls`), where no OpenAI token ever reaches the client.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from realtime_client.endpoints import resolve_endpoint
from realtime_client.errors import InvalidResponse
from realtime_client.http_answers import (
    USER_AGENT,
    RateLimit,
    json_object,
    raise_for_error,
    rate_limit,
    session_choices,
    unreachable,
)

DEFAULT_TIMEOUT = 10.0
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


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
    """POST `/token` of the API that `endpoint` names (its ApiUrl or any route URL); raise an `EndpointError`."""
    url, headers, body = request_parts(resolve_endpoint(endpoint).token_url, api_key, _choices(voice, preset))
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise unreachable(exc, timeout) from None
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
    url, headers, body = request_parts(resolve_endpoint(endpoint).token_url, api_key, _choices(voice, preset))
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise unreachable(exc, timeout) from None
    return _parse(response)


def request_parts(url: str, api_key: str | None, fields: dict[str, str | None]) -> tuple[str, dict[str, str], bytes]:
    """A JSON POST to our API: the caller's API key if any, and only the fields that were chosen."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    # The endpoint rejects unknown fields and nulls, so send only what the caller chose.
    chosen = {name: value for name, value in fields.items() if value is not None}
    return url, headers, json.dumps(chosen).encode()


def _choices(voice: str | None, preset: str | None) -> dict[str, str | None]:
    return {"voice": voice, "preset": preset}


def _parse(response: httpx.Response) -> Token:
    if response.status_code != 200:
        raise_for_error(response)
    data = json_object(response, "token answer")
    token = data.get("token")
    expires_at = data.get("expires_at")
    realtime_url = data.get("realtime_url")
    if not isinstance(token, str) or not token:
        raise InvalidResponse(200, "invalid_response", "the token answer has no token")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise InvalidResponse(200, "invalid_response", "the token answer has no integer expires_at")
    if not isinstance(realtime_url, str) or not _safe_realtime_url(realtime_url):
        raise InvalidResponse(200, "invalid_response", f"unusable realtime_url {realtime_url!r}")
    model, voice, preset = session_choices(data)
    return Token(
        token=token,
        expires_at=expires_at,
        realtime_url=realtime_url,
        model=model,
        voice=voice,
        preset=preset,
        rate_limit=rate_limit(response.headers),
    )


def _safe_realtime_url(url: str) -> bool:
    # The token is a bearer secret: plain http is only acceptable to a local stand-in.
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


__all__ = ["DEFAULT_TIMEOUT", "RateLimit", "Token", "fetch_token", "fetch_token_async"]
