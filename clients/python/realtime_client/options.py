"""`GET /options`: the stack's public policy, and above all which voice backend answers calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from realtime_client.endpoints import resolve_endpoint
from realtime_client.errors import InvalidResponse
from realtime_client.http_answers import USER_AGENT, int_or_none, json_object, raise_for_error, str_or_none, unreachable

BACKENDS = ("realtime", "live")
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Options:
    """What a client may choose and what it will get. `document` is the whole answer, for fields added later.

    `data_channel`: whether a call's offer may carry the `oai-events` channel (server events: transcripts, usage,
    the Realtime text path). When False, `POST /calls` takes only an offer of exactly one audio section.
    """

    backend: str = "realtime"
    max_call_seconds: int | None = None
    data_channel: bool = True
    token_route: bool | None = None
    model: str | None = None
    default_voice: str | None = None
    default_preset: str | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False)


def fetch_options(endpoint: str, *, timeout: float = DEFAULT_TIMEOUT) -> Options:
    """GET `/options` of the API that `endpoint` names; raise an `EndpointError`."""
    url = resolve_endpoint(endpoint).options_url
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(url, headers=_HEADERS)
    except httpx.TransportError as exc:
        raise unreachable(exc, timeout) from None
    return parse_options(response)


async def fetch_options_async(endpoint: str, *, timeout: float = DEFAULT_TIMEOUT) -> Options:
    """The async twin of `fetch_options`."""
    url = resolve_endpoint(endpoint).options_url
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.get(url, headers=_HEADERS)
    except httpx.TransportError as exc:
        raise unreachable(exc, timeout) from None
    return parse_options(response)


_HEADERS = {"Accept": "application/json", "User-Agent": USER_AGENT}


def parse_options(response: httpx.Response) -> Options:
    if response.status_code != 200:
        raise_for_error(response)
    data = json_object(response, "options answer")
    # A stack from before the second backend has no `backend` field: it can only be Realtime.
    backend = data.get("backend", "realtime")
    if backend not in BACKENDS:
        raise InvalidResponse(200, "invalid_response", f"unknown backend {backend!r} in the options answer")
    token_route = data.get("token_route")
    # A stack from before the field let every offer carry the channel.
    data_channel = data.get("data_channel", True)
    if not isinstance(data_channel, bool):
        raise InvalidResponse(200, "invalid_response", f"data_channel is not a boolean: {data_channel!r}")
    return Options(
        backend=backend,
        max_call_seconds=int_or_none(data.get("max_call_seconds")),
        data_channel=data_channel,
        token_route=token_route if isinstance(token_route, bool) else None,
        model=str_or_none(data.get("model")),
        default_voice=str_or_none(data.get("default_voice")),
        default_preset=str_or_none(data.get("default_preset")),
        document=data,
    )
