"""One GPT-Live session over WebRTC, as far as the product uses it, with no WebRTC in it.

`session.started` first; when the caller finishes an utterance, `session.input_transcript.delta` for it, then the
echo plays with `session.output_transcript.delta` spread over its playback; `session.usage.updated` every
`usage_interval_seconds` with the cumulative seconds since creation; `session.closed` with the reason at the end.
The browser may only send the client events its session allows (`client.data_channel.allowed_client_events`);
anything else is refused with an `error` and changes nothing. Server events outside `allowed_server_events` are
never sent: the product's allow-list leaves out `session.started` and `session.closed` (both carry the session
resource, instructions included), so its browser sees the start only as the channel opening and the end only as the
connection closing; the sideband still gets `session.closed`. Instructions, voice and permissions are fixed at
creation.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from local.openai_standin.audio import OutputTrack, Playback, seconds_of
from local.openai_standin.call_log import EndReason
from local.openai_standin.conversation import chunks
from local.openai_standin.events import ClientEventError, JsonObject, new_id
from local.openai_standin.live_schema import CLIENT_EVENT_TYPES
from local.openai_standin.vad import Listener, Started, Utterance, VadSettings

log = logging.getLogger(__name__)

Send = Callable[[JsonObject], None]

DEFAULT_USAGE_INTERVAL_SECONDS = 1.0
_DELTA_COUNT = 3
_CLOSE_REASONS: dict[EndReason, str] = {
    "hangup": "close_requested",
    "client_close": "close_requested",
    "sideband_close": "close_requested",
    "expired": "expired",
    "connection_lost": "connection_lost",
    "never_connected": "connection_lost",
    "shutdown": "connection_lost",
}


def session_resource(session_id: str, requested: JsonObject, expires_at: int) -> JsonObject:
    """The SessionResource of session.started/closed: the startup config resolved, plus id, expiry and status."""
    voice = ((requested.get("audio") or {}).get("output") or {}).get("voice", "marin")
    return {
        "id": session_id,
        "expires_at": expires_at,
        "model": requested["model"],
        "status": "active",  # stays "active" inside session.closed too; the event type says it ended
        "audio": {"output": {"voice": voice}},
        "client": copy.deepcopy(requested.get("client")),
        "delegation": copy.deepcopy(requested.get("delegation")),
        "input": copy.deepcopy(requested.get("input", [])),
        "instructions": requested.get("instructions"),
        "store": requested.get("store", False),
    }


class LiveSession:
    def __init__(self, resource: JsonObject, send: Send, player: OutputTrack, *,
                 request_close: Callable[[], None], usage_interval_seconds: float) -> None:
        self.resource = resource
        self._send_to_peer = send
        self._player = player
        self._request_close = request_close
        self._usage_interval = usage_interval_seconds
        self._created = time.monotonic()
        self._listener = Listener(VadSettings())
        self._tasks: set[asyncio.Task[None]] = set()
        data_channel = (resource.get("client") or {}).get("data_channel") or {}
        client_events = data_channel.get("allowed_client_events", "all")
        server_events = data_channel.get("allowed_server_events", "all")
        self._allowed_client = None if client_events == "all" else frozenset(client_events)
        self._allowed_server = None if server_events == "all" else frozenset(s["type"] for s in server_events)

    # -- the peer's side of it ---------------------------------------------------------------------------------

    def opening_events(self) -> list[JsonObject]:
        self._spawn(self._report_usage())
        return self._allowed([self._event("session.started", session=copy.deepcopy(self.resource))])

    def closing_events(self, reason: EndReason) -> list[JsonObject]:
        return self._allowed([self.closed_event(reason)])

    def closed_event(self, reason: EndReason) -> JsonObject:
        """`session.closed`, whoever may see it (the sideband sees every event)."""
        return self._event("session.closed", reason=_CLOSE_REASONS[reason], session=copy.deepcopy(self.resource),
                           usage={"seconds": self._seconds()})

    async def aclose(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the timeline ------------------------------------------------------------------------------------------

    def _seconds(self) -> float:
        return round(time.monotonic() - self._created, 3)

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._created) * 1000)

    async def _report_usage(self) -> None:
        while True:
            await asyncio.sleep(self._usage_interval)
            self._send(self._event("session.usage.updated", usage={"seconds": self._seconds()}))

    # -- events out --------------------------------------------------------------------------------------------

    def _event(self, event_type: str, **fields: Any) -> JsonObject:
        return {"type": event_type, "event_id": new_id("event"), **fields}

    def _allowed(self, events: list[JsonObject]) -> list[JsonObject]:
        return [e for e in events if self._allowed_server is None or e["type"] in self._allowed_server]

    def _send(self, event: JsonObject) -> None:
        for allowed in self._allowed([event]):
            self._send_to_peer(allowed)

    def _error(self, code: str, message: str, param: str | None, client_event_id: str | None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param,
                 "client_event_id": client_event_id}
        self._send(self._event("error", error=error, client_event_id=client_event_id))

    # -- incoming audio ----------------------------------------------------------------------------------------

    def on_audio(self, pcm: bytes) -> None:
        heard = self._listener.feed(pcm)
        if isinstance(heard, Started):
            self._player.clear()  # the caller talks over the answer: it stops, as Live's turn-taking does
        elif isinstance(heard, Utterance):
            self._answer(heard)

    def _answer(self, heard: Utterance) -> None:
        # The utterance ends now on the session's (wall-clock) timeline; input audio may arrive in bursts, so its own
        # clock only gives the length. One timeline keeps input and output deltas in order.
        end_ms = self._now_ms()
        start_ms = max(0, end_ms - (heard.audio_end_ms - heard.audio_start_ms))
        said = f"(local stand-in heard {heard.speech_seconds:.1f} s of speech)"
        self._send(self._event("session.input_transcript.delta", delta=said, start_ms=start_ms, end_ms=end_ms))
        reply = f"You said something for {heard.speech_seconds:.1f} seconds; here it is played back."
        playback = self._player.play(heard.pcm, new_id("item"))
        self._spawn(self._stream_output_transcript(reply, playback))

    async def _stream_output_transcript(self, text: str, playback: Playback) -> None:
        """Each delta covers the stretch of the echo it describes, so transcript and audio line up."""
        parts = chunks(text, _DELTA_COUNT)
        share = seconds_of(playback.pcm) / len(parts)
        start_ms = self._now_ms()
        for index, part in enumerate(parts):
            end_ms = start_ms + int(share * 1000)
            self._send(self._event("session.output_transcript.delta", delta=part, start_ms=start_ms, end_ms=end_ms))
            if index < len(parts) - 1:
                done, _ = await asyncio.wait([playback.finished], timeout=share)
                if done:
                    return  # cut by barge-in or the end of the call: the rest was never said
            start_ms = end_ms

    # -- client events -----------------------------------------------------------------------------------------

    def on_client_message(self, data: str | bytes) -> None:
        message: Any = None
        try:
            message = json.loads(data)
        except ValueError:
            self._error("invalid_json", "The event is not valid JSON.", None, None)
            return
        if not isinstance(message, dict):
            self._error("invalid_event", "An event must be a JSON object.", None, None)
            return
        event_id = message.get("event_id") if isinstance(message.get("event_id"), str) else None
        event_type = message.get("type")
        try:
            self._handle(event_type, message)
        except ClientEventError as exc:
            self._error(exc.code, exc.message, exc.param, event_id)

    def _handle(self, event_type: Any, message: JsonObject) -> None:
        if not isinstance(event_type, str):
            raise ClientEventError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
        if self._allowed_client is not None and event_type not in self._allowed_client:
            raise ClientEventError("event_not_allowed",
                            f"Client event '{event_type}' is not allowed on this data channel "
                            "(session.client.data_channel.allowed_client_events).", "type")
        if event_type not in CLIENT_EVENT_TYPES:
            raise ClientEventError("invalid_value", f"Invalid value: '{event_type}'. This is not a Live client event.",
                                   "type")
        if event_type == "session.close":
            self._request_close()
        elif event_type == "session.start":
            raise ClientEventError("session_already_started",
                            "This WebRTC session started when it was created; session.start is for WebSockets.",
                            "type")
        else:
            raise ClientEventError("unsupported_event", f"The local stand-in does not model '{event_type}'.", "type")
