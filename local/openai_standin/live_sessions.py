"""`POST /v1/live/sessions`: a GPT-Live session over WebRTC, set up by a server with the standard key.

JSON `{"session": {...}, "transport": {"type": "webrtc", "sdp": "<offer>"}}`, checked strictly; answered `201`
`{"session": {"id": "live_..."}, "transport": {"type": "webrtc", "sdp": "<answer>"}}` and nothing else (the expiry
arrives in `session.started`). The POST starts the session: there is no `session.start` over WebRTC.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials, openai_error
from local.openai_standin.call_log import CallRecord
from local.openai_standin.endpoint import Incoming, json_body
from local.openai_standin.live_schema import validate_live_create
from local.openai_standin.live_session import LiveSession, session_resource
from local.openai_standin.offer import InvalidOffer
from local.openai_standin.peer import Peer

PATH = "/v1/live/sessions"


class LiveSessions:
    def __init__(self, credentials: Credentials, active: ActiveCalls, *, max_session_seconds: float,
                 usage_interval_seconds: float) -> None:
        self.credentials = credentials
        self.active = active
        self.max_session_seconds = max_session_seconds
        self.usage_interval_seconds = usage_interval_seconds

    async def create(self, incoming: Incoming) -> web.StreamResponse:
        self.credentials.require_standard(incoming.authorization)
        body = json_body(incoming, validate_live_create)
        session_id = "live_" + secrets.token_hex(16)
        resource = session_resource(session_id, body["session"], int(time.time() + self.max_session_seconds))
        record = CallRecord(session_id, "live", resource, server_side=True)

        def live_session(peer: Peer) -> LiveSession:
            def close() -> None:
                peer.spawn(peer.end("client_close"))

            return LiveSession(resource, peer.send, peer.output, request_close=close,
                               usage_interval_seconds=self.usage_interval_seconds)

        try:
            answer = await self.active.start(record, live_session, body["transport"]["sdp"],
                                             max_session_seconds=self.max_session_seconds)
        except InvalidOffer as exc:
            return openai_error(400, str(exc), "invalid_offer", "transport.sdp")
        return web.json_response({"session": {"id": session_id}, "transport": {"type": "webrtc", "sdp": answer}},
                                 status=201)
