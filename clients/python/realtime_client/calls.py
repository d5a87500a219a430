"""The default path: our API sets the call up (`POST /calls`) and hangs it up (`POST /calls/{id}/hangup`).

Signed-in users (a stack with JwtIssuer) set calls up on `POST /user/calls` with a JWT from the owner's hook
(`CallSetup.user_token`) instead of an API key; everything else is the same.

The client sends its SDP offer to our API, which posts it to OpenAI with the owner's key and session policy and
answers with OpenAI's SDP answer. No OpenAI token ever reaches the client; the server ends the call at
`ends_at` whatever the client does, and an early hangup gives the unused time back to the owner's budget.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx

from realtime_client.endpoints import resolve_endpoint
from realtime_client.errors import InvalidResponse
from realtime_client.http_answers import (
    RateLimit,
    int_or_none,
    json_object,
    raise_for_error,
    rate_limit,
    session_choices,
    str_or_none,
    unreachable,
)
from realtime_client.token import DEFAULT_TIMEOUT, request_parts
from realtime_client.user_token import UserToken, fresh_token

# Hanging up is a courtesy to the owner's budget (the server ends the call anyway): never hold a caller long.
HANGUP_TIMEOUT = 3.0


@dataclass(frozen=True)
class CallSetup:
    """How to have our API set a call up. `endpoint` is the stack's ApiUrl or any of its route URLs.

    `user_token`, for a stack deployed with JwtIssuer: the signed-in user's lane (`/user/calls`), see
    `realtime_client.user_token`. Hangups are the same on both lanes (the call's own hangup secret).

    `backend` ("realtime" or "live") and `data_channel` (whether the offer may carry `oai-events`) are what
    `GET /options` says. Left None, `RealtimeSession` asks it before the offer, since the API refuses an offer with a
    channel where the stack does not allow one; `backend` alone can also be told from the call id (`live_...`).
    """

    endpoint: str
    api_key: str | None = field(default=None, repr=False)
    # Signed-in users (a stack with JwtIssuer): an async function returning a fresh JWT, asked once per call set up.
    # With it, calls go to `/user/calls` with `Authorization: Bearer <JWT>` and no API key (realtime_client.user_token).
    user_token: UserToken | None = field(default=None, repr=False)
    voice: str | None = None
    preset: str | None = None
    backend: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    data_channel: bool | None = None

    def __post_init__(self) -> None:
        resolve_endpoint(self.endpoint)  # a bad URL fails here, not after the peer connection exists


@dataclass(frozen=True)
class Call:
    """The `201` answer of `POST /calls`. The SDP answer and the hangup secret stay out of `repr`."""

    call_id: str
    sdp: str = field(repr=False)
    ends_at: int
    max_seconds: int
    hangup_token: str = field(repr=False)
    model: str | None = None
    voice: str | None = None
    preset: str | None = None
    rate_limit: RateLimit | None = None

    @property
    def backend(self) -> str:
        return "live" if self.call_id.startswith("live_") else "realtime"

    def seconds_left(self, now: float | None = None) -> float:
        return self.ends_at - (time.time() if now is None else now)


@dataclass(frozen=True)
class HangupResult:
    call_id: str
    state: str
    credited_seconds: int


async def create_call(setup: CallSetup, offer_sdp: str) -> Call:
    """POST the offer to `/calls` (or, with `user_token`, to `/user/calls` with a fresh JWT); the typed
    `EndpointError`s of `http_answers` for anything but a usable 201 (`SignInRefused` when API Gateway's JWT
    authorizer refuses the token, `UserTokenFailed` when the hook gives none)."""
    endpoint = resolve_endpoint(setup.endpoint)
    fields = {"sdp": offer_sdp, "voice": setup.voice, "preset": setup.preset}
    if setup.user_token is not None:
        url = endpoint.user_calls_url
        _, headers, body = request_parts(url, await fresh_token(setup.user_token), fields)
    else:
        url = endpoint.calls_url
        _, headers, body = request_parts(url, setup.api_key, fields)
    try:
        async with httpx.AsyncClient(timeout=setup.timeout, follow_redirects=False) as client:
            response = await client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise unreachable(exc, setup.timeout) from None
    return parse_call(response)


async def hang_up_call(setup: CallSetup, call: Call, *, timeout: float = HANGUP_TIMEOUT) -> HangupResult:
    """POST `/calls/{id}/hangup` with the call's secret; the typed `EndpointError`s on failure."""
    url = resolve_endpoint(setup.endpoint).hangup_url(call.call_id)
    _, headers, _ = request_parts(url, setup.api_key, {})
    body = json.dumps({"hangup_token": call.hangup_token}).encode()
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, headers=headers, content=body)
    except httpx.TransportError as exc:
        raise unreachable(exc, timeout) from None
    if response.status_code != 200:
        raise_for_error(response)
    data = json_object(response, "hangup answer")
    return HangupResult(
        call_id=str_or_none(data.get("call_id")) or call.call_id,
        state=str_or_none(data.get("state")) or "ended",
        credited_seconds=int_or_none(data.get("credited_seconds")) or 0,
    )


def parse_call(response: httpx.Response) -> Call:
    if response.status_code != 201:
        raise_for_error(response)
    data = json_object(response, "call answer")
    status = response.status_code
    call_id = data.get("call_id")
    sdp = data.get("sdp")
    ends_at = int_or_none(data.get("ends_at"))
    max_seconds = int_or_none(data.get("max_seconds"))
    hangup_token = data.get("hangup_token")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidResponse(status, "invalid_response", "the call answer has no call_id")
    # Handing anything else to setRemoteDescription would only give an opaque SDP parse error.
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v="):
        raise InvalidResponse(status, "invalid_response", "the call answer has no SDP answer")
    if ends_at is None or max_seconds is None:
        raise InvalidResponse(status, "invalid_response", "the call answer has no integer ends_at and max_seconds")
    if not isinstance(hangup_token, str) or not hangup_token:
        raise InvalidResponse(status, "invalid_response", "the call answer has no hangup_token")
    model, voice, preset = session_choices(data)
    return Call(
        call_id=call_id,
        sdp=sdp,
        ends_at=ends_at,
        max_seconds=max_seconds,
        hangup_token=hangup_token,
        model=model,
        voice=voice,
        preset=preset,
        rate_limit=rate_limit(response.headers),
    )
