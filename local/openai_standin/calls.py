"""`POST /v1/realtime/calls`: an SDP offer, authorised by an ephemeral token, answered with a live call."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping

from aiohttp import web

from local.openai_standin.offer import InvalidOffer
from local.openai_standin.peer import RealtimeCall
from local.openai_standin.tokens import TokenRegistry

CALLS_PATH = "/v1/realtime/calls"
# The live calls by id, for the shutdown hook and for tests that want to see a call end.
CALLS_KEY = web.AppKey("openai_standin_calls", dict[str, RealtimeCall])

_ALLOW_HEADERS = "Authorization, Content-Type"
_ALLOW_METHODS = "POST, OPTIONS"


def add_routes(app: web.Application, registry: TokenRegistry, *, max_session_seconds: float) -> None:
    calls: dict[str, RealtimeCall] = {}
    app[CALLS_KEY] = calls

    async def create_call(request: web.Request) -> web.Response:
        cors = _cors_headers(request.headers)
        cors["Access-Control-Expose-Headers"] = "Location"
        token_value = _bearer(request.headers.get("Authorization", ""))
        if not token_value:
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_api_key",
                cors,
            )
        token = registry.lookup(token_value)
        if token is None:
            return _error(401, f"Incorrect API key provided: {_mask(token_value)}.", "invalid_api_key", cors)
        if request.content_type != "application/sdp":
            return _content_type_error(request.content_type, cors)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "The SDP offer is too large.", "request_too_large", cors)
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "The SDP offer is not valid UTF-8 text.", "invalid_offer", cors)

        call_id = "rtc_" + secrets.token_hex(16)
        call = RealtimeCall(
            call_id,
            token.session,
            max_session_seconds=max_session_seconds,
            on_closed=lambda ended: calls.pop(ended.call_id, None),
        )
        calls[call_id] = call
        try:
            answer = await call.answer(offer)
        except InvalidOffer as exc:
            calls.pop(call_id, None)
            return _error(400, str(exc), "invalid_offer", cors)
        except BaseException:
            # A client that hangs up mid-answer cancels this handler; the half-built call must not linger.
            await asyncio.shield(call.close())
            raise
        headers = {**cors, "Content-Type": "application/sdp", "Location": f"{CALLS_PATH}/{call_id}"}
        return web.Response(status=201, body=answer.encode("utf-8"), headers=headers)

    async def preflight(request: web.Request) -> web.Response:
        headers = _cors_headers(request.headers)
        headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=headers)

    async def close_calls(_app: web.Application) -> None:
        await asyncio.gather(*(call.close() for call in list(calls.values())), return_exceptions=True)

    app.router.add_post(CALLS_PATH, create_call)
    app.router.add_route("OPTIONS", CALLS_PATH, preflight)
    app.on_shutdown.append(close_calls)


def _cors_headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    origin = request_headers.get("Origin")
    if origin:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Access-Control-Allow-Origin": "*"}


def _bearer(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _mask(key: str) -> str:
    """As OpenAI echoes a wrong key: its start and end only."""
    if len(key) <= 10:
        return "*" * len(key)
    return key[:6] + "*" * (len(key) - 10) + key[-4:]


def _error(status: int, message: str, code: str | None, headers: dict[str, str]) -> web.Response:
    payload = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(payload, status=status, headers=headers)


def _content_type_error(content_type: str, headers: dict[str, str]) -> web.Response:
    if content_type == "multipart/form-data":
        message = (
            "multipart/form-data calls (parts 'sdp' and 'session') need a standard API key; with an ephemeral "
            "key send the raw SDP offer with 'Content-Type: application/sdp'."
        )
    else:
        message = (
            f"Unsupported content type: '{content_type}'. This API method only accepts 'application/sdp' "
            "(with an ephemeral key) requests."
        )
    return _error(400, message, "unsupported_content_type", headers)
