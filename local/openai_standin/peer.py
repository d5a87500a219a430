"""One WebRTC peer of the stand-in: the aiortc connection, the `oai-events` channel, both audio directions and the
call's lifetime (maximum duration, a peer that never connects or goes away, a hangup).

What is said on the channel is up to a Behaviour: the Realtime conversation or a Live session. An offer with no
data channel (`m=application`) is an audio-only call, as the product makes on Realtime unless the owner allows the
channel: it talks and ends like any other (a hangup closes the connection, which the browser sees as its DTLS
transport closing), and the events its Behaviour produces go nowhere, as at OpenAI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from local.openai_standin.audio import MonoPcm, OutputTrack
from local.openai_standin.call_log import CallRecord, EndReason
from local.openai_standin.events import JsonObject
from local.openai_standin.offer import InvalidOffer, check_offer

log = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
# A call whose peer never completes ICE/DTLS is dropped after this long instead of lingering until the maximum.
CONNECT_TIMEOUT_SECONDS = 30.0
# How long final events (an expiry error, session.closed) may take to leave before the connection goes.
_FLUSH_SECONDS = 1.0
# Events held until `oai-events` opens; a peer that never opens it must not grow this for the whole session.
_MAX_PENDING_EVENTS = 1000


class Behaviour(Protocol):
    """What a peer says and does; all calls come from the stand-in's event loop."""

    def opening_events(self) -> list[JsonObject]: ...

    def on_client_message(self, data: str | bytes) -> None: ...

    def on_audio(self, pcm: bytes) -> None: ...

    def closing_events(self, reason: EndReason) -> list[JsonObject]: ...

    async def aclose(self) -> None: ...


Send = Callable[[JsonObject], None]


class Peer:
    def __init__(self, record: CallRecord, *, max_session_seconds: float,
                 on_closed: Callable[[Peer], None] | None = None) -> None:
        self.record = record
        self.call_id = record.call_id
        self.max_session_seconds = max_session_seconds
        # iceServers must be an explicit empty list: None makes aiortc fall back to Google's STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.output = OutputTrack()
        self.behaviour: Behaviour | None = None
        self._on_closed = on_closed
        self._channel: RTCDataChannel | None = None
        self.has_channel = False  # whether the offer asked for `oai-events`; known once answer() has checked it
        self._pending: list[JsonObject] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ending = False  # end() has begun: later reasons lose
        self._closing = False  # teardown has begun: nothing new is spawned or sent
        self.closed = asyncio.Event()
        self.connected = asyncio.Event()

    # -- setup -------------------------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer, with every ICE candidate gathered; InvalidOffer (and a closed peer) if it cannot be."""
        assert self.behaviour is not None, "set the behaviour before answering"
        try:
            offered = check_offer(offer_sdp)
        except InvalidOffer:
            await self.end("never_connected")
            raise
        self.has_channel = any(media.kind == "application" for media in offered)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            self._attach_output(offered)
            # setLocalDescription returns once ICE gathering is complete, so the answer carries all candidates.
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # aiortc reports unusable offers (no common codec, bad roles) in many ways
            await self.end("never_connected")
            raise InvalidOffer(f"The SDP offer could not be answered ({type(exc).__name__}: {exc}).") from exc
        if not any(
            t.sender.track is self.output and t.currentDirection in ("sendrecv", "sendonly")
            for t in self.pc.getTransceivers()
        ):
            # Nobody pulls the track's frames, so drain it here to keep playback (and its events) in real time.
            self.spawn(self._drain_output())
        self.spawn(self._expire_after(self.max_session_seconds))
        self.spawn(self._drop_if_unconnected())
        return self.pc.localDescription.sdp

    def _attach_output(self, offered: list[Any]) -> None:
        """Put the output track on the audio transceiver whose peer wants to receive (offered recvonly/sendrecv)."""
        receiving = ("sendrecv", "recvonly", None)  # no direction attribute means sendrecv
        receiving_mids = {m.rtp.muxId for m in offered if m.kind == "audio" and m.direction in receiving}
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio" and transceiver.mid in receiving_mids:
                transceiver.sender.replaceTrack(self.output)
                transceiver.direction = "sendrecv"
                return

    # -- aiortc callbacks --------------------------------------------------------------------------------------

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_LABEL or self._channel is not None or self.behaviour is None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        # The opening event goes first, then anything said before the channel opened.
        pending, self._pending = self._pending, []
        for event in [*self.behaviour.opening_events(), *pending]:
            self.send(event)

    def _on_message(self, data: str | bytes) -> None:
        try:
            self.record.client_events.append(json.loads(data))
        except ValueError:
            self.record.client_events.append(data if isinstance(data, str) else repr(data))
        if self.behaviour is not None and not self._closing:
            self.behaviour.on_client_message(data)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.spawn(self._consume_input(track))

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.record.connected = True
            self.connected.set()
        elif state in ("failed", "closed"):
            self.spawn(self.end("connection_lost"))

    # -- tasks -------------------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._closing:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: task failed", self.call_id, exc_info=task.exception())

    async def _consume_input(self, track: MediaStreamTrack) -> None:
        converter = MonoPcm()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for chunk in converter.feed(frame):
                if self.behaviour is not None:
                    self.behaviour.on_audio(chunk)

    async def _drain_output(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await self.output.recv()

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.end("expired")

    async def _drop_if_unconnected(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), CONNECT_TIMEOUT_SECONDS)
        except TimeoutError:
            log.info("call %s: peer never connected; closing", self.call_id)
            await self.end("never_connected")

    async def _flush(self) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FLUSH_SECONDS
        while channel.bufferedAmount > 0 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # bufferedAmount reaches 0 when SCTP takes the message, a moment before the datagram is out.
        await asyncio.sleep(0.05)

    # -- events out --------------------------------------------------------------------------------------------

    def send(self, event: JsonObject) -> None:
        channel = self._channel
        if channel is None:
            # Held for a channel still to open; an audio-only call will never have one to hold them for.
            if self.has_channel and not self._closing and len(self._pending) < _MAX_PENDING_EVENTS:
                self._pending.append(event)
            return
        if channel.readyState == "open":
            channel.send(json.dumps(event))
            self.record.server_event_types.append(event["type"])

    # -- teardown ----------------------------------------------------------------------------------------------

    async def end(self, reason: EndReason) -> None:
        """Say goodbye as the behaviour does for `reason`, then tear down. Idempotent: the first reason wins, and
        safe from any task of the peer, including the ones it cancels."""
        if self._ending:
            await self.closed.wait()
            return
        self._ending = True
        if self.behaviour is not None and reason != "connection_lost":
            closing = self.behaviour.closing_events(reason)
            for event in closing:
                self.send(event)
            if closing:
                await self._flush()
        self._closing = True
        self.record.end(reason)
        try:
            if self.behaviour is not None:
                await self.behaviour.aclose()
            current = asyncio.current_task()
            tasks = [t for t in self._tasks if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.output.stop()
            await self.pc.close()
        finally:
            self.closed.set()
            if self._on_closed is not None:
                self._on_closed(self)

    async def close(self) -> None:
        await self.end("shutdown")
