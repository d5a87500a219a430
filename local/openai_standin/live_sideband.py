"""`GET /v1/live/sessions/{session_id}/attach`: a Live session's trusted sideband, a WebSocket for the server.

The standard key only (401 before the upgrade otherwise), `404` in OpenAI's error shape for a session that is
unknown or over. Of the sideband's protocol only what ends a session is modelled: `{"type": "session.close"}` ends it
as a hangup would (the browser's data channel gets `session.closed` with `close_requested`), the sideband gets the
same `session.closed`, then the socket closes. Any other event is answered with an `error` event and changes
nothing.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials
from local.openai_standin.endpoint import Incoming
from local.openai_standin.events import error_event
from local.openai_standin.hangup import not_found
from local.openai_standin.live_session import LiveSession

PATH = "/v1/live/sessions/{call_id}/attach"


class Sideband:
    def __init__(self, credentials: Credentials, active: ActiveCalls) -> None:
        self.credentials = credentials
        self.active = active

    async def attach(self, incoming: Incoming) -> web.StreamResponse:
        self.credentials.require_standard(incoming.authorization)
        session_id = incoming.call_id or ""
        peer = self.active.get(session_id)
        if peer is None or not isinstance(peer.behaviour, LiveSession):
            return not_found("live", session_id)
        session = peer.behaviour
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(incoming.request)
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
            try:
                event = json.loads(message.data)
            except ValueError:
                event = None
            if isinstance(event, dict) and event.get("type") == "session.close":
                await asyncio.shield(peer.end("sideband_close"))
                await socket.send_json(session.closed_event("sideband_close"))
                break
            await socket.send_json(error_event("unsupported_event",
                                               "The local stand-in's sideband only models session.close."))
        await socket.close()
        return socket
