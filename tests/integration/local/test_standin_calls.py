"""The stand-in's WebRTC calls, end to end on loopback: a real aiohttp server, a real aiortc client.

Audio is generated here (speech-like bursts: a voiced tone with a syllable-rate envelope), sent as the client's
microphone, detected by the stand-in's VAD and played back; the test measures the level of what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import math
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from local.openai_standin.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, MonoPcm, rms
from local.openai_standin.calls import CALLS_KEY, add_routes
from local.openai_standin.tokens import TokenRegistry

SPEECH_SECONDS = 1.2
LEAD_IN_SECONDS = 0.4
# Received audio quieter than this is silence; the speech-like signal comes back at roughly 0.1-0.2.
SILENCE_RMS = 0.005
ECHO_RMS = 0.03


def session_config(**overrides: Any) -> dict[str, Any]:
    """An effective session as client_secrets returns it (defaults filled in)."""
    session: dict[str, Any] = {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_teststandincalls0001",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": "Be brief.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": 0,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }
    session.update(overrides)
    return session


def speech_like(seconds: float, lead_in: float = 0.0) -> bytes:
    """A voiced 140 Hz buzz (with harmonics) under a 4 Hz syllable envelope, after `lead_in` seconds of silence."""
    silence = int(lead_in * SAMPLE_RATE)
    count = int(seconds * SAMPLE_RATE)
    samples = array("h", bytes(2 * (silence + count)))
    for n in range(count):
        t = n / SAMPLE_RATE
        envelope = 0.45 + 0.55 * abs(math.sin(math.pi * 4 * t))
        ramp = min(1.0, n / 480, (count - 1 - n) / 480)
        voice = math.sin(2 * math.pi * 140 * t) + 0.5 * math.sin(2 * math.pi * 280 * t) + 0.25 * math.sin(
            2 * math.pi * 420 * t
        )
        samples[silence + n] = int(9000 * envelope * ramp * voice)
    return samples.tobytes()


class PcmTrack(MediaStreamTrack):
    """A microphone that plays `pcm` once (48 kHz mono) and then stays silent, in real time."""

    kind = "audio"

    def __init__(self, pcm: bytes = b"") -> None:
        super().__init__()
        self._pcm = pcm
        self._offset = 0
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            await asyncio.sleep(max(0.0, self._start + self._pts / SAMPLE_RATE - loop.time()))
        chunk = self._pcm[self._offset : self._offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        self._offset += FRAME_BYTES
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


@pytest.fixture(autouse=True)
async def standin_calls_leak_check():
    """After each test (and its servers and clients) no task of ours or aiortc's is left, and no new thread."""
    threads = set(threading.enumerate())
    yield
    current = asyncio.current_task()
    for _ in range(50):
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.02)
    assert not left, left
    # asyncio_N threads are the loop's default executor (getaddrinfo), joined when the loop closes.
    assert {t for t in threading.enumerate() if not t.name.startswith("asyncio_")} <= threads


@dataclass
class CallsServer:
    base_url: str
    registry: TokenRegistry
    app: web.Application
    runner: web.AppRunner

    @property
    def calls_url(self) -> str:
        return self.base_url + "/v1/realtime/calls"

    def token(self, session: dict[str, Any] | None = None, ttl: int = 60) -> str:
        return self.registry.issue(session or session_config(), ttl).value

    @property
    def live_calls(self) -> dict[str, Any]:
        return self.app[CALLS_KEY]


@pytest.fixture
async def standin_calls_server():
    """A factory: `await standin_calls_server(max_session_seconds=...)` serves add_routes on 127.0.0.1:<free>."""
    runners: list[web.AppRunner] = []

    async def start(max_session_seconds: float = 60.0) -> CallsServer:
        registry = TokenRegistry()
        app = web.Application()
        add_routes(app, registry, max_session_seconds=max_session_seconds)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        return CallsServer(f"http://127.0.0.1:{port}", registry, app, runner)

    yield start
    for runner in runners:
        await runner.cleanup()


@dataclass
class RealtimeTestClient:
    """An aiortc peer that behaves like the page: `oai-events` channel first, then a sendrecv audio offer."""

    mic: bytes = b""
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio: list[tuple[float, float]] = field(default_factory=list)  # (arrival time, rms) per 20 ms received
    location: str = ""
    connected_after_answer: float = 0.0
    connected_at: float = 0.0  # monotonic; the microphone starts about then
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self, server: CallsServer, token: str, direction: str = "sendrecv") -> None:
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", self._on_message)
        if direction == "recvonly":
            self.pc.addTransceiver("audio", direction="recvonly")
        else:
            self.pc.addTransceiver(PcmTrack(self.mic), direction=direction)
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._record(track))))
        connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected":
                connected.set()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                server.calls_url,
                content=self.pc.localDescription.sdp,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
            )
        assert answer.status_code == 201, answer.text
        assert answer.headers["content-type"] == "application/sdp"
        self.location = answer.headers["location"]
        started = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        await asyncio.wait_for(connected.wait(), 10)
        self.connected_at = time.monotonic()
        self.connected_after_answer = self.connected_at - started

    def _on_message(self, message: str) -> None:
        self.events.append((time.monotonic(), json.loads(message)))
        self._arrived.set()

    async def _record(self, track: MediaStreamTrack) -> None:
        converter = MonoPcm()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for chunk in converter.feed(frame):
                    self.audio.append((time.monotonic(), rms(chunk)))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    def types(self) -> list[str]:
        return [event["type"] for _, event in self.events]

    async def wait_for(self, event_type: str, *, after: int = 0, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        """The first event of `event_type` at index >= `after`, as (index, event)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(after, len(self.events)):
                if self.events[index][1]["type"] == event_type:
                    return index, self.events[index][1]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {event_type} after #{after} within {timeout}s; got {self.types()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def audio_between(self, start: float, end: float) -> list[float]:
        return [level for at, level in self.audio if start <= at <= end]

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def realtime_test_client():
    """A factory of RealtimeTestClient that closes them all afterwards."""
    clients: list[RealtimeTestClient] = []

    def make(mic: bytes = b"") -> RealtimeTestClient:
        clients.append(RealtimeTestClient(mic=mic))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


def event_time(client: RealtimeTestClient, index: int) -> float:
    return client.events[index][0]


# -- the conversation over WebRTC -----------------------------------------------------------------------------


async def test_speech_is_detected_transcribed_answered_and_played_back(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    session = session_config()
    client = realtime_test_client(mic=speech_like(SPEECH_SECONDS, lead_in=LEAD_IN_SECONDS))
    await client.connect(server, server.token(session))
    assert client.location.startswith("/v1/realtime/calls/rtc_")
    assert client.location.removeprefix("/v1/realtime/calls/") in server.live_calls

    _, created = await client.wait_for("session.created")
    assert client.events[0][1]["type"] == "session.created"
    assert created["session"] == session
    assert created["session"]["id"].startswith("sess_")

    i_started, started = await client.wait_for("input_audio_buffer.speech_started")
    i_stopped, stopped = await client.wait_for("input_audio_buffer.speech_stopped", after=i_started)
    i_committed, committed = await client.wait_for("input_audio_buffer.committed", after=i_stopped)
    i_heard, heard = await client.wait_for(
        "conversation.item.input_audio_transcription.completed", after=i_committed
    )
    i_created, response_created = await client.wait_for("response.created", after=i_heard)
    i_playing, playing = await client.wait_for("output_audio_buffer.started", after=i_created)
    i_delta, _ = await client.wait_for("response.output_audio_transcript.delta", after=i_playing)
    i_said, said = await client.wait_for("response.output_audio_transcript.done", after=i_delta)
    i_done, done = await client.wait_for("response.done", after=i_said)
    i_drained, drained = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=6)

    item_id = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == heard["item_id"] == item_id
    assert started["audio_start_ms"] < stopped["audio_end_ms"]
    # The utterance starts ~LEAD_IN_SECONDS into the call; audio_start_ms includes the 300 ms prefix padding.
    assert 0 <= started["audio_start_ms"] <= LEAD_IN_SECONDS * 1000 + 200
    speech_ms = stopped["audio_end_ms"] - started["audio_start_ms"]
    assert SPEECH_SECONDS * 1000 <= speech_ms <= SPEECH_SECONDS * 1000 + 1200
    assert "local stand-in heard 1.2 s of speech" in heard["transcript"]
    assert heard["content_index"] == 0 and heard["usage"]["type"] == "duration"

    response_id = response_created["response"]["id"]
    assert response_created["response"]["status"] == "in_progress"
    assert playing["response_id"] == drained["response_id"] == done["response"]["id"] == response_id
    deltas = [e for _, e in client.events[i_created:i_said] if e["type"] == "response.output_audio_transcript.delta"]
    assert len(deltas) >= 2
    assert "".join(d["delta"] for d in deltas) == said["transcript"]
    assert said["transcript"] == "You said something for 1.2 seconds; here it is played back."
    response = done["response"]
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0] == {"type": "output_audio", "transcript": said["transcript"]}
    assert response["usage"]["total_tokens"] == response["usage"]["input_tokens"] + response["usage"]["output_tokens"]
    assert response["usage"]["input_token_details"]["audio_tokens"] > 0
    # OpenAI's order: the response is done generating before its audio has drained.
    assert i_done < i_drained

    event_ids = [event["event_id"] for _, event in client.events]
    assert len(set(event_ids)) == len(event_ids)

    # The echo: silence before the answer, the utterance's energy while it plays, then silence again.
    played_at, drained_at = event_time(client, i_playing), event_time(client, i_drained)
    playback_seconds = drained_at - played_at
    assert SPEECH_SECONDS - 0.1 <= playback_seconds <= SPEECH_SECONDS + 0.8
    before = client.audio_between(played_at - 1.0, played_at - 0.1)
    during = client.audio_between(played_at + 0.2, drained_at - 0.1)
    assert before and max(before) < SILENCE_RMS
    assert during and sum(during) / len(during) > ECHO_RMS
    await asyncio.sleep(0.4)
    after = client.audio_between(drained_at + 0.2, time.monotonic())
    assert after and max(after) < SILENCE_RMS
    # A steady 50 frames a second, also in silence, so a browser's audio element keeps running.
    first, last = client.audio[0][0], client.audio[-1][0]
    assert len(client.audio) >= 0.9 * 50 * (last - first)
    print(
        f"\nconnected {client.connected_after_answer * 1000:.0f} ms after the answer; "
        f"echo rms {sum(during) / len(during):.3f} over {playback_seconds:.2f} s; silence rms max {max(before):.4f}"
    )


async def test_session_update_and_malformed_events(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    client = realtime_test_client()
    await client.connect(server, server.token())
    await client.wait_for("session.created")

    client.send(
        {
            "type": "session.update",
            "event_id": "evt_update_1",
            "session": {
                "type": "realtime",
                "instructions": "Talk like a pirate.",
                "audio": {"input": {"turn_detection": None}, "output": {"voice": "cedar"}},
            },
        }
    )
    _, updated = await client.wait_for("session.updated")
    assert updated["session"]["instructions"] == "Talk like a pirate."
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"
    # Fields not in the update keep their values.
    assert updated["session"]["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert updated["session"]["model"] == "gpt-realtime"
    assert updated["event_id"] != "evt_update_1"

    mark = len(client.events)
    client.send({"type": "session.update", "event_id": "evt_untyped", "session": {"instructions": "x"}})
    _, missing_type = await client.wait_for("error", after=mark)
    assert missing_type["error"]["type"] == "invalid_request_error"
    assert missing_type["error"]["param"] == "session.type"
    assert missing_type["error"]["event_id"] == "evt_untyped"

    mark = len(client.events)
    client.send({"type": "session.update", "session": {"type": "realtime", "temperature": 0.7}})
    _, unknown_param = await client.wait_for("error", after=mark)
    assert unknown_param["error"]["code"] == "unknown_parameter"
    assert unknown_param["error"]["param"] == "session.temperature"
    assert unknown_param["error"]["event_id"] is None

    mark = len(client.events)
    client.send({"type": "conversation.frobnicate", "event_id": "evt_unknown"})
    _, unknown = await client.wait_for("error", after=mark)
    assert unknown == {
        "type": "error",
        "event_id": unknown["event_id"],
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": unknown["error"]["message"],
            "param": "type",
            "event_id": "evt_unknown",
        },
    }
    assert "conversation.frobnicate" in unknown["error"]["message"]

    mark = len(client.events)
    client.channel.send("{not json")
    _, bad_json = await client.wait_for("error", after=mark)
    assert bad_json["error"]["code"] == "invalid_json"
    assert bad_json["error"]["event_id"] is None

    mark = len(client.events)
    client.send({"event_id": "evt_typeless"})
    _, typeless = await client.wait_for("error", after=mark)
    assert typeless["error"]["code"] == "invalid_event"

    mark = len(client.events)
    client.send({"type": "response.cancel", "event_id": "evt_cancel"})
    _, nothing_to_cancel = await client.wait_for("error", after=mark)
    assert nothing_to_cancel["error"]["code"] == "response_cancel_not_active"
    # The session survives all of this.
    assert server.live_calls


async def test_manual_turns_text_responses_cancel_and_clear(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    session = session_config()
    session["audio"]["input"]["turn_detection"] = None
    session["audio"]["input"]["transcription"] = None
    client = realtime_test_client(mic=speech_like(SPEECH_SECONDS, lead_in=0.2))
    await client.connect(server, server.token(session))
    await client.wait_for("session.created")

    # A text turn: the transcript echoes it and a tone plays.
    client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
        }
    )
    _, added = await client.wait_for("conversation.item.added")
    assert added["item"]["role"] == "user" and added["item"]["id"].startswith("item_")
    client.send({"type": "response.create"})
    i_playing, _ = await client.wait_for("output_audio_buffer.started")
    _, said = await client.wait_for("response.output_audio_transcript.done", after=i_playing)
    assert said["transcript"] == "You wrote: hello there"
    _, answered = await client.wait_for("response.done", after=i_playing)
    i_drained, _ = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=5)
    tone = client.audio_between(event_time(client, i_playing) + 0.15, event_time(client, i_drained) - 0.05)
    assert tone and sum(tone) / len(tone) > ECHO_RMS

    # No turn detection: the utterance produced no VAD events; once it is over, a commit takes the buffer.
    await asyncio.sleep(client.connected_at + 0.2 + SPEECH_SECONDS + 0.3 - time.monotonic())
    assert "input_audio_buffer.speech_started" not in client.types()
    mark = len(client.events)
    client.send({"type": "input_audio_buffer.commit"})
    _, committed = await client.wait_for("input_audio_buffer.committed", after=mark)
    assert committed["previous_item_id"] == answered["response"]["output"][0]["id"]
    assert "conversation.item.input_audio_transcription.completed" not in client.types()
    await asyncio.sleep(0.3)
    assert "response.created" not in client.types()[mark:]  # a commit alone does not answer
    client.send({"type": "response.create", "response": {"metadata": {"turn": "2"}}})
    # A second response while one is active is refused.
    client.send({"type": "response.create", "event_id": "evt_second"})
    i_playing, _ = await client.wait_for("output_audio_buffer.started", after=mark)
    _, busy = await client.wait_for("error", after=mark)
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    assert busy["error"]["event_id"] == "evt_second"
    _, said = await client.wait_for("response.output_audio_transcript.done", after=i_playing)
    assert said["transcript"] == "You said something for 1.2 seconds; here it is played back."
    _, done = await client.wait_for("response.done", after=i_playing)
    assert done["response"]["metadata"] == {"turn": "2"}
    i_drained, _ = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=5)

    mark = len(client.events)
    client.send({"type": "response.create"})
    i_created, created = await client.wait_for("response.created", after=mark)
    client.send({"type": "response.cancel"})
    client.send({"type": "output_audio_buffer.clear"})
    _, cancelled = await client.wait_for("response.done", after=i_created)
    assert cancelled["response"]["id"] == created["response"]["id"]
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    _, cleared = await client.wait_for("output_audio_buffer.cleared", after=i_created)
    assert cleared["response_id"] == created["response"]["id"]
    # Cancelling ends the response and its audio, within a jitter buffer's worth of the cancel.
    await asyncio.sleep(0.6)
    tail = client.audio_between(event_time(client, len(client.events) - 1) + 0.3, time.monotonic())
    assert tail and max(tail) < SILENCE_RMS


async def test_barge_in_cuts_the_answer(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    client = realtime_test_client()
    await client.connect(server, server.token())
    await client.wait_for("session.created")
    # Input over the data channel (24 kHz PCM, as OpenAI takes it) drives the same VAD as the microphone track.
    speech_24k = array("h", speech_like(0.8))[::2].tobytes()
    append = {"type": "input_audio_buffer.append", "audio": base64.b64encode(speech_24k).decode()}
    client.send(append)
    client.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48_000)).decode()})
    i_playing, playing = await client.wait_for("output_audio_buffer.started")
    client.send(append)  # the caller talks over the answer
    _, started = await client.wait_for("input_audio_buffer.speech_started", after=i_playing)
    _, cleared = await client.wait_for("output_audio_buffer.cleared", after=i_playing)
    _, done = await client.wait_for("response.done", after=i_playing)
    assert cleared["response_id"] == playing["response_id"]
    assert started["audio_start_ms"] > 0
    if done["response"]["status"] == "cancelled":  # unless it had finished generating before the barge-in
        assert done["response"]["status_details"]["reason"] == "turn_detected"


@pytest.mark.parametrize("direction", ["recvonly", "sendonly"])
async def test_one_way_offers(standin_calls_server, realtime_test_client, direction):
    """A listen-only page still hears answers; a send-only one gets the same events, paced as if it listened."""
    server = await standin_calls_server()
    client = realtime_test_client()
    await client.connect(server, server.token(), direction=direction)
    await client.wait_for("session.created")
    client.send({"type": "response.create"})
    i_playing, _ = await client.wait_for("output_audio_buffer.started")
    _, said = await client.wait_for("response.output_audio_transcript.done", after=i_playing)
    assert "tone" in said["transcript"]
    i_drained, _ = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=5)
    played_at, drained_at = event_time(client, i_playing), event_time(client, i_drained)
    assert 0.5 <= drained_at - played_at <= 1.2  # the 0.6 s tone, in real time
    heard = client.audio_between(played_at + 0.15, drained_at - 0.05)
    if direction == "recvonly":
        assert heard and sum(heard) / len(heard) > ECHO_RMS
    else:
        assert not client.audio


# -- the call's lifetime --------------------------------------------------------------------------------------


async def test_max_session_length_is_enforced(standin_calls_server, realtime_test_client):
    server = await standin_calls_server(max_session_seconds=1.5)
    client = realtime_test_client()
    began = time.monotonic()
    await client.connect(server, server.token())
    _, expired = await client.wait_for("error", timeout=5)
    assert expired["error"]["code"] == "session_expired"
    assert expired["error"]["message"] == "Your session hit the maximum duration of 1.5 seconds."
    assert 1.4 <= time.monotonic() - began <= 3.0
    for _ in range(100):
        if not server.live_calls and client.pc.connectionState in ("closed", "failed"):
            break
        await asyncio.sleep(0.05)
    assert not server.live_calls
    assert client.pc.connectionState in ("closed", "failed")


async def test_call_ends_when_the_peer_hangs_up(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    client = realtime_test_client()
    await client.connect(server, server.token())
    await client.wait_for("session.created")
    (call,) = server.live_calls.values()
    await client.pc.close()
    await asyncio.wait_for(call.closed.wait(), 5)
    assert not server.live_calls
    assert call.pc.connectionState == "closed"


async def test_shutdown_closes_live_calls(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    client = realtime_test_client()
    await client.connect(server, server.token())
    await client.wait_for("session.created")
    (call,) = server.live_calls.values()
    await server.runner.cleanup()
    assert call.closed.is_set()
    assert call.pc.connectionState == "closed"
    assert not server.live_calls


async def test_one_token_starts_several_calls(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    token = server.token()
    first, second = realtime_test_client(), realtime_test_client()
    await asyncio.gather(first.connect(server, token), second.connect(server, token))
    assert first.location != second.location
    assert len(server.live_calls) == 2


# -- the HTTP contract ----------------------------------------------------------------------------------------


async def offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("oai-events")
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] is None and error["message"]
    if code is not None:
        assert error["code"] == code
    # Errors are readable cross-origin too, or a page could not show why its call failed.
    assert response.headers["access-control-allow-origin"] in ("*", "https://page.example")
    return error


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ek_0123456789abcdef0123456789abcdef", "Basic ek_x", "Bearer sk-proj-abc"],
)
async def test_unknown_or_missing_token_is_401(standin_calls_server, authorization):
    server = await standin_calls_server()
    server.token()
    headers = {"Content-Type": "application/sdp", "Origin": "https://page.example"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with httpx.AsyncClient() as http:
        response = await http.post(server.calls_url, content=await offer_sdp(), headers=headers)
    assert_openai_error(response, 401, "invalid_api_key")
    assert not server.live_calls


async def test_expired_token_is_401(standin_calls_server):
    server = await standin_calls_server()
    token = server.token()
    server.registry.expire(token)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.calls_url,
            content=await offer_sdp(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert token not in error["message"]  # echoed masked, like OpenAI


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "multipart/form-data; boundary=x"])
async def test_wrong_content_type_is_400(standin_calls_server, content_type):
    server = await standin_calls_server()
    headers = {"Authorization": f"Bearer {server.token()}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with httpx.AsyncClient() as http:
        response = await http.post(server.calls_url, content=await offer_sdp(), headers=headers)
    assert_openai_error(response, 400, "unsupported_content_type")
    assert not server.live_calls


async def _no_fingerprint() -> str:
    return "\r\n".join(line for line in (await offer_sdp()).split("\r\n") if not line.startswith("a=fingerprint"))


async def _video_only() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def _no_common_codec() -> str:
    sdp = await offer_sdp()
    return "\r\n".join(
        line.replace("opus/48000/2", "x-nope/48000/2").replace("PCMU/8000", "x-no/8000").replace("PCMA", "x-na")
        .replace("G722/8000", "x-ng/8000")
        for line in sdp.split("\r\n")
    )


@pytest.mark.parametrize(
    "make_body",
    [
        lambda: b"",
        lambda: b"hello",
        lambda: b"v=0\r\n",
        lambda: b"v=0\r\nm=audio x\r\n",
        lambda: b"\xff\xfe not utf-8",
        lambda: _no_fingerprint(),
        lambda: _video_only(),
        lambda: _no_common_codec(),
    ],
    ids=["empty", "garbage", "no-media", "broken-m-line", "not-utf8", "no-fingerprint", "video-only", "no-codec"],
)
async def test_bad_sdp_is_400(standin_calls_server, make_body):
    server = await standin_calls_server()
    body = make_body()
    if asyncio.iscoroutine(body):
        body = await body
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.calls_url,
            content=body,
            headers={"Authorization": f"Bearer {server.token()}", "Content-Type": "application/sdp"},
        )
    assert_openai_error(response, 400, "invalid_offer")
    assert not server.live_calls


async def test_cors_preflight_and_exposed_location(standin_calls_server, realtime_test_client):
    server = await standin_calls_server()
    async with httpx.AsyncClient() as http:
        preflight = await http.options(
            server.calls_url,
            headers={
                "Origin": "https://page.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == "https://page.example"
        allowed_headers = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed_headers
        allowed_methods = {m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")}
        assert {"POST", "OPTIONS"} <= allowed_methods

        answer = await http.post(
            server.calls_url,
            content=await offer_sdp(),
            headers={
                "Authorization": f"Bearer {server.token()}",
                "Content-Type": "application/sdp",
                "Origin": "https://page.example",
            },
        )
    assert answer.status_code == 201
    assert answer.headers["access-control-allow-origin"] == "https://page.example"
    assert "location" in answer.headers["access-control-expose-headers"].lower()
    assert answer.headers["location"].startswith("/v1/realtime/calls/rtc_")
    assert answer.text.startswith("v=0") and "a=candidate:" in answer.text and "a=end-of-candidates" in answer.text
    # The offer's peer never connects here; the call is torn down by the fixture's shutdown.
    assert len(server.live_calls) == 1
