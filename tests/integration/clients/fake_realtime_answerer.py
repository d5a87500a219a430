"""A minimal OpenAI Realtime WebRTC answerer: just enough of the GA protocol to exercise the client.

It answers the SDP offer (201 + Location), sends `session.created` when `oai-events` opens, and then behaves
like a parrot: a crude voice-activity detector buffers what the client says and, once the client is quiet,
answers with the same audio (`response.*`, `output_audio_buffer.*` events around it). A text message plus
`response.create` is answered with a tone. `mute=True` sends every event but only silence;
`hang_up_after_reply=True` closes the call once the first reply has played, as a server ending a session would.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import math
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000
FRAME = 960
SPEECH_PEAK = 1000
QUIET_FRAMES_TO_END_TURN = 15  # 300 ms, like server_vad's silence_duration_ms
REPLY_TONE_SECONDS = 0.6


def _peak(pcm: bytes) -> int:
    values = array("h")
    values.frombytes(pcm)
    return max((abs(v) for v in values), default=0)


def tone(seconds: float, freq: float = 660.0, amplitude: int = 8000) -> bytes:
    count = int(seconds * RATE)
    return array("h", (int(amplitude * math.sin(2 * math.pi * freq * n / RATE)) for n in range(count))).tobytes()


class ReplyTrack(MediaStreamTrack):
    """Plays queued PCM in real time, else silence; calls `on_drained(response_id)` when a reply has played."""

    kind = "audio"

    def __init__(self, on_drained: Any) -> None:
        super().__init__()
        self._queue: list[tuple[bytes, str]] = []
        self._buffer = b""
        self._current: str | None = None
        self._on_drained = on_drained
        self._start: float | None = None
        self._pts = 0

    def play(self, pcm: bytes, response_id: str) -> None:
        self._queue.append((pcm, response_id))

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(self._start + self._pts / RATE - time.monotonic())
        if not self._buffer and self._queue:
            self._buffer, self._current = self._queue.pop(0)
        chunk, self._buffer = self._buffer[: FRAME * 2], self._buffer[FRAME * 2 :]
        if not self._buffer and self._current is not None:
            finished, self._current = self._current, None
            self._on_drained(finished)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.ljust(FRAME * 2, b"\0"))
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self._pts
        self._pts += FRAME
        return frame


@dataclass
class FakeCall:
    call_id: str
    mute: bool = False
    hang_up_after_reply: bool = False
    client_events: list[dict[str, Any]] = field(default_factory=list)
    frames_received: int = 0
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._channel: Any = None
        self._reply = ReplyTrack(self._drained)
        self._pending_text: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def answer(self, offer_sdp: str) -> str:
        @self.pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            if channel.label != "oai-events":
                return
            self._channel = channel
            channel.on("message", self._on_message)
            self._send({"type": "session.created", "session": {"type": "realtime", "id": f"sess_{self.call_id}"}})

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._listen(track)))

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        self.pc.addTrack(self._reply)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()

    def _next(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def _send(self, event: dict[str, Any]) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps({"event_id": self._next("event"), **event}))

    def _on_message(self, message: str) -> None:
        event = json.loads(message)
        self.client_events.append(event)
        kind = event.get("type")
        if kind == "conversation.item.create":
            item = event.get("item", {})
            content = item.get("content") or [{}]
            if item.get("type") != "message" or item.get("role") != "user" or content[0].get("type") != "input_text":
                self._send({"type": "error", "error": {"type": "invalid_request_error", "message": "bad item"}})
                return
            self._pending_text = content[0]["text"]
            self._send({"type": "conversation.item.added", "item": {"id": self._next("item"), **item}})
        elif kind == "response.create":
            self._respond(f"You said: {self._pending_text}", tone(REPLY_TONE_SECONDS))
        else:
            self._send({"type": "error", "error": {"type": "invalid_request_error", "message": f"unknown {kind}"}})

    def _respond(self, transcript: str, pcm: bytes) -> None:
        response_id, item_id = self._next("resp"), self._next("item")
        self._send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        self._send({"type": "output_audio_buffer.started", "response_id": response_id})
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        for word in transcript.split(" "):
            self._send({"type": "response.output_audio_transcript.delta", **where, "delta": word + " "})
        self._send({"type": "response.output_audio_transcript.done", **where, "transcript": transcript})
        self._send({"type": "response.done", "response": {"id": response_id, "status": "completed"}})
        self._reply.play(bytes(len(pcm)) if self.mute else pcm, response_id)

    def _drained(self, response_id: str) -> None:
        self._send({"type": "output_audio_buffer.stopped", "response_id": response_id})
        if self.hang_up_after_reply:
            self._tasks.append(asyncio.create_task(self.pc.close()))

    async def _listen(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        speech = bytearray()
        quiet = 0
        try:
            while True:
                frame = await track.recv()
                self.frames_received += 1
                for out in resampler.resample(frame):
                    pcm = bytes(out.planes[0])[: out.samples * 2]
                    loud = _peak(pcm) >= SPEECH_PEAK
                    if not speech and not loud:
                        continue
                    if not speech:
                        self._send({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0})
                    speech += pcm
                    quiet = 0 if loud else quiet + 1
                    if quiet >= QUIET_FRAMES_TO_END_TURN:
                        self._end_turn(bytes(speech))
                        speech.clear()
                        quiet = 0
        except MediaStreamError:
            return

    def _end_turn(self, speech: bytes) -> None:
        item_id = self._next("item")
        self._send({"type": "input_audio_buffer.speech_stopped", "item_id": item_id})
        self._send({"type": "input_audio_buffer.committed", "item_id": item_id})
        seconds = len(speech) / 2 / RATE
        self._send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": f"a tone of {seconds:.1f} seconds",
                "usage": {"type": "duration", "seconds": seconds},
            }
        )
        self._respond("I heard you.", speech)
