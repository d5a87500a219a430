"""The old path's SDP exchange: post the offer straight to OpenAI with an ephemeral token, as a browser would.

Exactly two headers, `Authorization` and `Content-Type: application/sdp`: anything custom breaks the browser's
CORS preflight, and this client mirrors the browser.
"""

from __future__ import annotations

import json

import httpx

from realtime_client.errors import CallRefused, ConnectionFailed
from realtime_client.token import Token


async def post_offer_with_token(token: Token, offer_sdp: str, timeout: float) -> tuple[str, str | None]:
    """The SDP answer and the call id from `Location`; CallRefused for OpenAI's refusal."""
    headers = {"Authorization": f"Bearer {token.token}", "Content-Type": "application/sdp"}
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(token.realtime_url, headers=headers, content=offer_sdp.encode())
    except httpx.TransportError as exc:
        raise ConnectionFailed(f"could not post the SDP offer: {type(exc).__name__}: {exc}") from None
    body = response.text
    # Handing an error body to setRemoteDescription would only give an opaque SDP parse error.
    if response.status_code in (200, 201) and body.lstrip().startswith("v="):
        location = response.headers.get("Location", "")
        return body, location.rstrip("/").rsplit("/", 1)[-1] or None
    message, code = _openai_error(response)
    raise CallRefused(response.status_code, message, code)


def _openai_error(response: httpx.Response) -> tuple[str, str | None]:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        return error["message"], code if isinstance(code, str) else None
    text = " ".join(response.text.split())[:200]
    return text or f"HTTP {response.status_code} {response.reason_phrase}", None
