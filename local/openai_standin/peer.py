"""One WebRTC call: the aiortc peer connection, the `oai-events` channel, both audio directions, and time limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from local.openai_standin.audio import MonoPcm, OutputTrack
from local.openai_standin.conversation import Conversation
from local.openai_standin.events import JsonObject, error_event
from local.openai_standin.offer import InvalidOffer, check_offer

log = logging.getLogger(__name__)

EVENTS_LABEL = "oai-events"
# A call whose peer never completes ICE/DTLS is dropped after this long instead of lingering until the maximum.
CONNECT_TIMEOUT_SECONDS = 30.0
# How long the expiry error may take to leave before the connection is torn down under it.
_FLUSH_SECONDS = 1.0
# Events held until `oai-events` opens; a peer that never opens it must not grow this for the whole session.
_MAX_PENDING_EVENTS = 1000


def describe_duration(seconds: float) -> str:
    """As OpenAI words it: "60 minutes"; sub-minute limits (tests) in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")


class RealtimeCall:
    def __init__(
        self,
        call_id: str,
        session: JsonObject,
        *,
        max_session_seconds: float,
        on_closed: Callable[[RealtimeCall], None] | None = None,
    ) -> None:
        self.call_id = call_id
        self.max_session_seconds = max_session_seconds
        # iceServers must be an explicit empty list: None makes aiortc fall back to Google's STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.output = OutputTrack()
        self.conversation = Conversation(session, self._send, self.output)
        self._on_closed = on_closed
        self._channel: RTCDataChannel | None = None
        self._pending: list[JsonObject] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.closed = asyncio.Event()
        self.connected = asyncio.Event()

    # -- setup -------------------------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer, with every ICE candidate gathered; InvalidOffer (and a closed call) if it cannot be."""
        try:
            offered = check_offer(offer_sdp)
        except InvalidOffer:
            await self.close()
            raise
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            self._attach_output(offered)
            # setLocalDescription returns once ICE gathering is complete, so the answer carries all candidates.
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # aiortc reports unusable offers (no common codec, bad roles) in many ways
            await self.close()
            raise InvalidOffer(f"The SDP offer could not be answered ({type(exc).__name__}: {exc}).") from exc
        if not any(
            t.sender.track is self.output and t.currentDirection in ("sendrecv", "sendonly")
            for t in self.pc.getTransceivers()
        ):
            # Nobody pulls the track's frames, so drain it here to keep playback (and its events) in real time.
            self._spawn(self._drain_output())
        self._spawn(self._expire_after(self.max_session_seconds))
        self._spawn(self._drop_if_unconnected())
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
        if channel.label != EVENTS_LABEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self.conversation.on_client_message)
        # session.created goes first, then anything the conversation said before the channel opened.
        self._send(self.conversation.session_created())
        pending, self._pending = self._pending, []
        for event in pending:
            self._send(event)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._consume_input(track))

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self._spawn(self.close())

    # -- tasks -------------------------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
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
                self.conversation.on_audio(chunk)

    async def _drain_output(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await self.output.recv()

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._send(
            error_event(
                "session_expired",
                f"Your session hit the maximum duration of {describe_duration(seconds)}.",
            )
        )
        await self._flush()
        await self.close()

    async def _drop_if_unconnected(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), CONNECT_TIMEOUT_SECONDS)
        except TimeoutError:
            log.info("call %s: peer never connected; closing", self.call_id)
            await self.close()

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

    def _send(self, event: JsonObject) -> None:
        channel = self._channel
        if channel is None:
            if not self._closing and len(self._pending) < _MAX_PENDING_EVENTS:
                self._pending.append(event)
            return
        if channel.readyState == "open":
            channel.send(json.dumps(event))

    # -- teardown ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Idempotent; safe from any task of the call, including the ones it cancels."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        try:
            await self.conversation.aclose()
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
