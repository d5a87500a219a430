"""One WebRTC voice call (aiortc), set up by our API (`/calls`, the default) or with an ephemeral token.

The browser's steps: the `oai-events` data channel before the offer (where the stack allows one: `GET /options`
`data_channel`), the offer to whoever answers it, then the answer. Our API's path adds the call's limit
(`ends_at`, `max_seconds`) and a hangup that credits unused time. Without the channel a call is audio only: no
server events, and the call is up when the connection is. With it, Realtime says `session.created` first; GPT-Live
says nothing of its start or end to a client (both events carry the owner's instructions), so the channel opening
is its start. The end of a call is told by the connection closing, its reason inferred from how and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from realtime_client.audio import AudioRecorder, MicrophoneTrack
from realtime_client.calls import Call, CallSetup, HangupResult, create_call, hang_up_call
from realtime_client.client_events import response_create, user_text_message
from realtime_client.endings import CLOSE_REQUESTED, infer_reason, live_reason
from realtime_client.errors import ConnectionFailed, EndpointError, SessionError
from realtime_client.options import fetch_options_async
from realtime_client.token import Token
from realtime_client.token_call import post_offer_with_token

EVENTS_CHANNEL = "oai-events"
# Realtime's first server event, after which client events are welcome. GPT-Live's own (`session.started`) never
# reaches a client of this stack.
READY_EVENT = "session.created"
EventCallback = Callable[[dict[str, Any]], None]

log = logging.getLogger(__name__)


class RealtimeSession:
    """`async with RealtimeSession(setup, ...) as session:` connects; leaving the block hangs up.

    `setup` is a `CallSetup` (or just the stack's ApiUrl as a string) for the server-set-up path, or a `Token`
    from `fetch_token` for the old path. Server events arrive three ways, pick what suits:
    `async for event in session.events()` (one consumer, ends with the call), callbacks registered with
    `on_event`, or `await session.wait_for("response.done")`.
    """

    def __init__(
        self,
        setup: CallSetup | Token | str,
        *,
        microphone: MicrophoneTrack | None = None,
        record_to: str | Path | None = None,
        on_event: EventCallback | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        connect_timeout: float = 15.0,
    ) -> None:
        self.setup = CallSetup(setup) if isinstance(setup, str) else setup
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
        self._set_up_at: float | None = None  # time.monotonic() when the offer was answered
        self.ended = asyncio.Event()
        self.call: Call | None = None
        self.call_id: str | None = None
        self.backend: str | None = "realtime" if isinstance(self.setup, Token) else self.setup.backend
        # Whether the call carries `oai-events`: always on the token path; on our API's, as `GET /options` says.
        self.data_channel: bool | None = True if isinstance(self.setup, Token) else self.setup.data_channel
        self.session_created: dict[str, Any] | None = None
        self.end_reason: str | None = None
        self.hangup: HangupResult | None = None
        self.usage_seconds: float | None = None  # GPT-Live's billed seconds so far (cumulative, as it reports them)

    async def __aenter__(self) -> RealtimeSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._pc is not None and self._pc.connectionState == "connected" and not self._closed

    @property
    def ends_at(self) -> int | None:
        """When the server hangs up (epoch seconds); None on the token path, which has no limit of ours."""
        return self.call.ends_at if self.call else None

    @property
    def max_seconds(self) -> int | None:
        return self.call.max_seconds if self.call else None

    def on_event(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    async def connect(self) -> None:
        """Offer, post, answer, and wait until media flows and `oai-events` (if the call has it) is open.

        Raises the `EndpointError`s of our API's answers (`GET /options` when the setup does not say whether the
        stack allows the channel, then `POST /calls`), `CallRefused` (token path), `ConnectionFailed`; a call the
        server set up is hung up again when connecting fails.
        """
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
            if pc.connectionState in ("closed", "failed") and not self._closed:
                self._remote_end(pc.connectionState)

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.recorder.start(track)

        pc.addTrack(self.microphone)
        if self.data_channel is None:
            await self._ask_options()
        if self.data_channel:
            channel = pc.createDataChannel(EVENTS_CHANNEL)
            self._channel = channel
            channel.on("open", self._channel_open.set)
            channel.on("message", self._on_message)

        await pc.setLocalDescription(await pc.createOffer())
        answer_sdp = await self._post_offer(pc.localDescription.sdp)
        self._set_up_at = time.monotonic()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

        async def connected() -> None:
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise ConnectionFailed(f"WebRTC connection {pc.connectionState}")
                state_changed.clear()
                await state_changed.wait()
            if self._channel is not None:
                await self._channel_open.wait()

        try:
            await asyncio.wait_for(connected(), self._connect_timeout)
        except TimeoutError:
            what = "data channel" if pc.connectionState == "connected" else f"connection ({pc.connectionState})"
            raise ConnectionFailed(f"{what} not up within {self._connect_timeout:g} s") from None
        if not self._expects_ready_event:
            self._ready.set()

    async def _ask_options(self) -> None:
        """Whether the stack lets the offer carry `oai-events`, and its backend, from `GET /options`."""
        assert isinstance(self.setup, CallSetup)
        options = await fetch_options_async(self.setup.endpoint, timeout=self.setup.timeout)
        self.data_channel = options.data_channel
        self.backend = self.backend or options.backend

    @property
    def _expects_ready_event(self) -> bool:
        return self._channel is not None and self.backend != "live"

    async def _post_offer(self, sdp: str) -> str:
        if isinstance(self.setup, Token):
            answer, self.call_id = await post_offer_with_token(self.setup, sdp, self._connect_timeout)
            return answer
        call = await create_call(self.setup, sdp)
        self.call, self.call_id = call, call.call_id
        self.backend = self.backend or call.backend
        return call.sdp

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("ignoring a non-JSON message on %s", EVENTS_CHANNEL)
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == READY_EVENT and self.session_created is None:
            self.session_created = event
            self._ready.set()
        usage = event.get("usage")
        if kind in ("session.usage.updated", "session.closed") and isinstance(usage, dict):
            seconds = usage.get("seconds")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool):
                self.usage_seconds = float(seconds)
        if kind == "session.closed" and isinstance(event.get("reason"), str) and not self._closed:
            # Only a stack from before GPT-Live's allow-list left it out sends this; its reason beats inference.
            self.end_reason = live_reason(event["reason"], elapsed=self._elapsed(), max_seconds=self.max_seconds)
        self._queue.put_nowait(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                # One broken callback must not stop the others or the call.
                log.exception("event callback failed")
        for waiter in [w for w in self._waiters if w[0] == kind]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(event)

    def _remote_end(self, connection_state: str) -> None:
        """The server (or the network) ended the call: record why and release whoever waits on events."""
        if self.end_reason is None:
            self.end_reason = infer_reason(
                connection_state=connection_state, elapsed=self._elapsed(), max_seconds=self.max_seconds
            )
        self._finish_waiting(SessionError(f"the call ended: {self.end_reason}"))

    def _elapsed(self) -> float:
        """Seconds since the offer was answered, on our monotonic clock (the server's wall clock may differ)."""
        return time.monotonic() - self._set_up_at if self._set_up_at is not None else 0.0

    def _finish_waiting(self, error: SessionError) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()
        self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every server event in order, until the call ends."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def wait_ready(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Until the call can be talked to: Realtime's `session.created` (returned) on a call with `oai-events`;
        on GPT-Live, or a call without the channel, no event says so, and `connect()` returning is enough (None).

        Unlike `wait_for`, this also returns if the event arrived while `connect()` was still finishing.
        """
        await asyncio.wait_for(self._ready.wait(), timeout)
        return self.session_created

    async def wait_for(self, event_type: str, timeout: float | None = None) -> dict[str, Any]:
        """The next event of that type, not one already received (see `wait_ready` for the first one)."""
        if self.ended.is_set():
            raise SessionError("the call has ended")
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
        if self.data_channel is False:
            raise SessionError(f"this call has no {EVENTS_CHANNEL} channel: the stack allows audio-only calls "
                               "(GET /options: data_channel is false)")
        if self._closed or self._channel is None or not self._channel_open.is_set():
            raise SessionError(f"{EVENTS_CHANNEL} is not open")
        self._channel.send(json.dumps(event))

    def send_text(self, text: str, *, respond: bool = True) -> None:
        """Add a user text message to the conversation and (by default) ask for a spoken response to it.

        Realtime with `oai-events` only: a GPT-Live call's allow-list lets the client send only what talking needs,
        not text, and an audio-only call has no channel to send it on.
        """
        if self.backend == "live":
            raise SessionError("the live backend does not accept text from the client: speak instead")
        self.send(user_text_message(text))
        if respond:
            self.send(response_create())

    async def close(self) -> None:
        """Hang up: tell our API (server path), stop our track, close the peer connection, finish the recording.

        Safe to call twice. The API's hangup is best effort with a short timeout: the server ends the call at its
        limit anyway, the hangup only gives the unused time back.
        """
        if self._closed:
            return
        self._closed = True
        if self.end_reason is None:
            self.end_reason = CLOSE_REQUESTED
        self.microphone.stop()
        # Hang up before closing our side, so the server ends the session as a hangup, not as a lost connection.
        await self._hang_up()
        await self._close_peer()
        await self.recorder.stop()
        self._finish_waiting(SessionError("session closed"))

    async def _hang_up(self) -> None:
        if self.call is None or not isinstance(self.setup, CallSetup):
            return
        try:
            self.hangup = await hang_up_call(self.setup, self.call)
        except EndpointError as exc:
            log.warning("hanging up call %s failed (the server ends it at its limit): %s", self.call_id, exc)

    async def _close_peer(self) -> None:
        if self._pc is not None:
            with contextlib.suppress(Exception):
                await self._pc.close()
