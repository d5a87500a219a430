"""One WebRTC call to OpenAI Realtime with an ephemeral token (aiortc).

The wire steps are the browser's: data channel `oai-events` before the offer, POST the SDP to the token's
`realtime_url` with only `Authorization` and `Content-Type: application/sdp`, check for 201, then set the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from realtime_client.audio import AudioRecorder, MicrophoneTrack
from realtime_client.client_events import response_create, user_text_message
from realtime_client.errors import CallRefused, ConnectionFailed, SessionError
from realtime_client.token import Token

EVENTS_CHANNEL = "oai-events"
EventCallback = Callable[[dict[str, Any]], None]

log = logging.getLogger(__name__)


class RealtimeSession:
    """`async with RealtimeSession(token, ...) as session:` connects; leaving the block hangs up.

    Server events arrive three ways, pick what suits: `async for event in session.events()` (one consumer),
    callbacks registered with `on_event`, or `await session.wait_for("response.done")`.
    """

    def __init__(
        self,
        token: Token,
        *,
        microphone: MicrophoneTrack | None = None,
        record_to: str | Path | None = None,
        on_event: EventCallback | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        connect_timeout: float = 15.0,
    ) -> None:
        self._token = token
        self.microphone = microphone or MicrophoneTrack()
        self.recorder = AudioRecorder(record_to)
        # No STUN by default: OpenAI's side is publicly reachable, and aiortc's default would query Google.
        self._ice_servers = ice_servers if ice_servers is not None else []
        self._connect_timeout = connect_timeout
        self._callbacks: list[EventCallback] = [on_event] if on_event else []
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._pc: RTCPeerConnection | None = None
        self._channel: Any = None
        self._channel_open = asyncio.Event()
        self._ready = asyncio.Event()
        self._closed = False
        self.call_id: str | None = None
        self.session_created: dict[str, Any] | None = None

    async def __aenter__(self) -> RealtimeSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._pc is not None and self._pc.connectionState == "connected" and not self._closed

    def on_event(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def connect(self) -> None:
        """Offer, post, answer, and wait until media flows and `oai-events` is open."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
        self._pc = pc
        try:
            await self._negotiate(pc)
        except BaseException:
            await self.close()
            raise

    async def _negotiate(self, pc: RTCPeerConnection) -> None:
        state_changed = asyncio.Event()

        @pc.on("connectionstatechange")
        def _on_state() -> None:
            state_changed.set()

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.recorder.start(track)

        pc.addTrack(self.microphone)
        channel = pc.createDataChannel(EVENTS_CHANNEL)
        self._channel = channel
        channel.on("open", self._channel_open.set)
        channel.on("message", self._on_message)

        await pc.setLocalDescription(await pc.createOffer())
        answer_sdp = await self._post_offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

        async def connected() -> None:
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise ConnectionFailed(f"WebRTC connection {pc.connectionState}")
                state_changed.clear()
                await state_changed.wait()
            await self._channel_open.wait()

        try:
            await asyncio.wait_for(connected(), self._connect_timeout)
        except TimeoutError:
            what = "data channel" if pc.connectionState == "connected" else f"connection ({pc.connectionState})"
            raise ConnectionFailed(f"{what} not up within {self._connect_timeout:g} s") from None

    async def _post_offer(self, sdp: str) -> str:
        # Exactly these two headers: anything custom breaks the browser's CORS preflight, and we mirror the browser.
        headers = {"Authorization": f"Bearer {self._token.token}", "Content-Type": "application/sdp"}
        try:
            async with httpx.AsyncClient(timeout=self._connect_timeout, follow_redirects=False) as client:
                response = await client.post(self._token.realtime_url, headers=headers, content=sdp.encode())
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"could not post the SDP offer: {type(exc).__name__}: {exc}") from None
        body = response.text
        # Handing an error body to setRemoteDescription would only give an opaque SDP parse error.
        if response.status_code in (200, 201) and body.lstrip().startswith("v="):
            location = response.headers.get("Location", "")
            self.call_id = location.rstrip("/").rsplit("/", 1)[-1] or None
            return body
        message, code = _openai_error(response)
        raise CallRefused(response.status_code, message, code)

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("ignoring a non-JSON message on %s", EVENTS_CHANNEL)
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "session.created" and self.session_created is None:
            self.session_created = event
            self._ready.set()
        self._queue.put_nowait(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                # One broken callback must not stop the others or the call.
                log.exception("event callback failed")
        kind = event.get("type")
        for waiter in [w for w in self._waiters if w[0] == kind]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(event)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every server event in order, until the session closes."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """The `session.created` event, which OpenAI sends before it accepts client events.

        Unlike `wait_for`, this also returns if the event arrived while `connect()` was still finishing.
        """
        await asyncio.wait_for(self._ready.wait(), timeout)
        assert self.session_created is not None
        return self.session_created

    async def wait_for(self, event_type: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event of that type, not one already received (see `wait_ready` for `session.created`)."""
        if self._closed:
            raise SessionError("session closed")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter = (event_type, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def send(self, event: dict[str, Any]) -> None:
        """Send one client event on `oai-events`."""
        if self._closed or self._channel is None or not self._channel_open.is_set():
            raise SessionError(f"{EVENTS_CHANNEL} is not open")
        self._channel.send(json.dumps(event))

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """Add a user text message to the conversation and (by default) ask for a spoken response to it."""
        self.send(user_text_message(text))
        if respond:
            self.send(response_create())

    async def close(self) -> None:
        """Hang up: stop our track, close the peer connection, finish the recording. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.microphone.stop()
        if self._pc is not None:
            with contextlib.suppress(Exception):
                await self._pc.close()
        await self.recorder.stop()
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(SessionError("session closed"))
        self._waiters.clear()
        self._queue.put_nowait(None)


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
