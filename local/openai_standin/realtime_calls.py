"""`POST /v1/realtime/calls`: an SDP offer answered with a running Realtime call, in OpenAI's two forms.

- Server side: the standard key, `multipart/form-data` with parts `sdp` (application/sdp) and `session`
  (application/json, a RealtimeSessionCreateRequestGA, checked strictly). The server learns the call id from
  `Location` and can hang the call up later; this is the product's `/calls` path.
- Browser: an ephemeral `ek_` token and the raw offer as `application/sdp`; the session comes from the token.
  This is the old `/token` flow. An `ek_` token cannot use the multipart form (401).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials, Refused, cors_headers, openai_error, unauthorized
from local.openai_standin.call_log import CallRecord
from local.openai_standin.conversation import Conversation
from local.openai_standin.endpoint import Incoming
from local.openai_standin.offer import InvalidOffer
from local.openai_standin.peer import Peer
from local.openai_standin.realtime_session import effective_session
from local.openai_standin.schema import RequestError, validate_call_session

PATH = "/v1/realtime/calls"
_PARTS = ("sdp", "session")
_ALLOW_HEADERS = "Authorization, Content-Type"
_ALLOW_METHODS = "POST, OPTIONS"


class RealtimeCalls:
    def __init__(self, credentials: Credentials, active: ActiveCalls, *, max_session_seconds: float) -> None:
        self.credentials = credentials
        self.active = active
        self.max_session_seconds = max_session_seconds

    async def create(self, incoming: Incoming) -> web.StreamResponse:
        cors = {**cors_headers(incoming.request.headers), "Access-Control-Expose-Headers": "Location"}
        offer, session, server_side = self._offer_and_session(incoming, cors)
        call_id = "rtc_" + secrets.token_hex(16)
        record = CallRecord(call_id, "realtime", session, server_side)

        def conversation(peer: Peer) -> Conversation:
            return Conversation(session, peer.send, peer.output, max_session_seconds=self.max_session_seconds)

        try:
            answer = await self.active.start(record, conversation, offer, max_session_seconds=self.max_session_seconds)
        except InvalidOffer as exc:
            return openai_error(400, str(exc), "invalid_offer", headers=cors)
        headers = {**cors, "Content-Type": "application/sdp", "Location": f"{PATH}/{call_id}"}
        return web.Response(status=201, body=answer.encode("utf-8"), headers=headers)

    def _offer_and_session(self, incoming: Incoming, cors: dict[str, str]) -> tuple[str, dict[str, Any], bool]:
        authorization = incoming.authorization
        content_type = incoming.request.content_type
        if self.credentials.is_standard(authorization):
            return *self._server_side(incoming, cors), True
        token = self.credentials.token(authorization)
        if token is None:
            raise Refused(unauthorized(authorization, cors))
        if content_type == "multipart/form-data":
            raise Refused(openai_error(
                401,
                "Ephemeral keys cannot set up a call with multipart/form-data (parts 'sdp' and 'session'); that needs "
                "a standard API key. With an ephemeral key, post the raw SDP offer as 'Content-Type: application/sdp'.",
                "invalid_api_key", headers=cors))
        if content_type != "application/sdp":
            raise Refused(_content_type_error(content_type, "'application/sdp' (with an ephemeral key)", cors))
        try:
            return incoming.raw.decode("utf-8"), token.session, False
        except UnicodeDecodeError:
            raise Refused(openai_error(400, "The SDP offer is not valid UTF-8 text.", "invalid_offer",
                                            headers=cors)) from None

    def _server_side(self, incoming: Incoming, cors: dict[str, str]) -> tuple[str, dict[str, Any]]:
        content_type = incoming.request.content_type
        if content_type != "multipart/form-data" or incoming.parts is None:
            if incoming.malformed:
                raise Refused(openai_error(400, "The multipart/form-data body could not be parsed.",
                                                "invalid_multipart", headers=cors))
            raise Refused(_content_type_error(
                content_type, "'multipart/form-data' with parts 'sdp' and 'session' (with a standard API key)", cors))
        parts = incoming.parts
        for name in parts:
            if name not in _PARTS:
                raise Refused(openai_error(400, f"Unknown parameter: '{name}'.", "unknown_parameter", name, cors))
        sdp = parts.get("sdp")
        if sdp is None:
            raise Refused(openai_error(400, "Missing required parameter: 'sdp'.", "missing_required_parameter",
                                            "sdp", cors))
        if sdp.content_type != "application/sdp":
            raise Refused(openai_error(400, f"The 'sdp' part must be 'application/sdp', not '{sdp.content_type}'.",
                                            "invalid_content_type", "sdp", cors))
        requested: Any = {"type": "realtime"}  # OpenAI's schema makes the part optional; the product always sends it
        if "session" in parts:
            session = parts["session"]
            if session.content_type != "application/json":
                raise Refused(openai_error(
                    400, f"The 'session' part must be 'application/json', not '{session.content_type}'.",
                    "invalid_content_type", "session", cors))
            try:
                requested = json.loads(session.text)
                validate_call_session(requested)
            except RequestError as exc:
                raise Refused(openai_error(400, str(exc), exc.code, exc.param, cors)) from None
            except ValueError:
                raise Refused(openai_error(400, "We could not parse the JSON of the 'session' part.",
                                                "invalid_json", "session", cors)) from None
        return sdp.text, effective_session(requested)

    async def preflight(self, request: web.Request) -> web.Response:
        headers = cors_headers(request.headers)
        headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
        headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
        headers["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=headers)


def _content_type_error(content_type: str, expected: str, headers: dict[str, str]) -> web.Response:
    return openai_error(
        400,
        f"Unsupported content type: '{content_type}'. This API method only accepts {expected} requests.",
        "unsupported_content_type",
        headers=headers,
    )
