"""`GET /v1/live/sessions/{session_id}/attach`: a Live session's trusted sideband, a WebSocket for the server.

The standard key only (401 before the upgrade otherwise), `404` in OpenAI's error shape for a session that is
unknown or over. openai-python's `live.sideband.connect` opens it with its usual `Accept` and `Content-Type:
application/json` headers and may add `?graceful_close=true`; both are taken as they come. Of the sideband's
protocol only what ends a session is modelled: `{"type": "session.close"}` ends it as a hangup would (the
browser's data channel gets `session.closed` with `close_requested`), the sideband gets the same `session.closed`,
then the socket closes. Any other event is answered with Live's `error` event and changes nothing. Every message
received is kept in the call's record (`sideband_events`), so tests can compare what different clients sent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials
from local.openai_standin.endpoint import Incoming
from local.openai_standin.events import JsonObject, new_id
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
        incoming.record_now(101)  # the attach is answered: a client that sees the socket open sees it recorded
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
            event: Any
            try:
                event = json.loads(message.data)
            except ValueError:
                event = message.data
            peer.record.sideband_events.append(event)
            if isinstance(event, dict) and event.get("type") == "session.close":
                await asyncio.shield(peer.end("sideband_close"))
                await socket.send_json(session.closed_event("sideband_close"))
                break
            client_event_id = event.get("event_id") if isinstance(event, dict) else None
            await socket.send_json(live_error("unsupported_event",
                                              "The local stand-in's sideband only models session.close.",
                                              client_event_id if isinstance(client_event_id, str) else None))
        await socket.close()
        return socket


def live_error(code: str, message: str, client_event_id: str | None) -> JsonObject:
    """GPT-Live's `error` server event (`ErrorEvent` in openai-python): the client's event id, when it gave one, both
    on the event and in the error; no Realtime-style `error.event_id`."""
    error = {"type": "invalid_request_error", "code": code, "message": message, "param": None,
             "client_event_id": client_event_id}
    return {"type": "error", "event_id": new_id("event"), "error": error, "client_event_id": client_event_id}
