"""`POST /v1/realtime/calls/{call_id}/hangup` and `POST /v1/live/sessions/{session_id}/hangup`.

The standard key only, no body (an empty one is taken whatever it is labelled: openai-python sends its hangups
with `Content-Type: application/json` and nothing after it, the product with no content type); `200` with an empty
body once the call is being torn down (a Live session says
`session.closed` with `close_requested` first), `404` in OpenAI's error shape for an id that is unknown or already
over. The answer comes after the peer connection has closed, so a test that sees the 200 sees the call ended.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials, openai_error
from local.openai_standin.call_log import Kind
from local.openai_standin.endpoint import Incoming

REALTIME_PATH = "/v1/realtime/calls/{call_id}/hangup"
LIVE_PATH = "/v1/live/sessions/{call_id}/hangup"


class Hangups:
    def __init__(self, credentials: Credentials, active: ActiveCalls) -> None:
        self.credentials = credentials
        self.active = active

    async def realtime(self, incoming: Incoming) -> web.StreamResponse:
        return await self._hang_up(incoming, "realtime")

    async def live(self, incoming: Incoming) -> web.StreamResponse:
        return await self._hang_up(incoming, "live")

    async def _hang_up(self, incoming: Incoming, kind: Kind) -> web.StreamResponse:
        self.credentials.require_standard(incoming.authorization)
        call_id = incoming.call_id or ""
        peer = self.active.get(call_id)
        if peer is None or peer.record.kind != kind:
            return not_found(kind, call_id)
        # Shielded: a caller that gives up on the answer must not leave the call half torn down.
        await asyncio.shield(peer.end("hangup"))
        return web.Response(status=200)


def not_found(kind: Kind, call_id: str) -> web.Response:
    """OpenAI's 404 for a call or Live session that is unknown or already over."""
    what = "Call" if kind == "realtime" else "Session"
    return openai_error(404, f"{what} not found: '{call_id}'. It does not exist or has already ended.",
                        f"{what.lower()}_not_found", "call_id" if kind == "realtime" else "session_id")
