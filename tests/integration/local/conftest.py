"""Shared pieces of the stand-in's contract tests: the stand-in served on the test's own loop (so a test can see
every task it leaves behind), an aiortc client that behaves like the page, and speech-like audio.

Audio is generated here (a voiced buzz under a syllable-rate envelope), sent as the client's microphone, detected
by the stand-in's VAD and played back; tests measure the level of what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.audio import SAMPLE_RATE, MonoPcm, rms
from local.openai_standin.realtime_session import effective_session
from local.openai_standin.server import ACTIVE_CALLS_KEY, StandIn
from realtime_client.audio import MicrophoneTrack

SPEECH_SECONDS = 1.2
LEAD_IN_SECONDS = 0.4
# Received audio quieter than this is silence; the speech-like signal comes back at roughly 0.1-0.2.
SILENCE_RMS = 0.005
ECHO_RMS = 0.03

REALTIME_SESSION = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "Be brief.",
    "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                        "turn_detection": {"type": "server_vad"}},
              "output": {"voice": "marin"}},
}

LIVE_SESSION = {
    "model": "gpt-live-1.1",
    "instructions": "Be brief.",
    "audio": {"output": {"voice": "cedar"}},
    "client": {"data_channel": {
        "allowed_client_events": ["session.close"],
        "allowed_server_events": [{"type": t} for t in ("session.started", "session.input_transcript.delta",
                                                        "session.output_transcript.delta", "session.usage.updated",
                                                        "session.closed", "error")],
    }},
}


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


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """After the test (and its servers and clients) no task of ours or aiortc's is left, and no new thread."""
    threads = set(threading.enumerate())
    yield
    current = asyncio.current_task()
    left: list[asyncio.Task[Any]] = []
    for _ in range(50):
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.02)
    assert not left, left
    # asyncio_N threads are the loop's default executor (getaddrinfo), joined when the loop closes.
    assert {t for t in threading.enumerate() if not t.name.startswith("asyncio_")} <= threads


@dataclass
class Served:
    """A StandIn served on the test's loop: the object tests in this process use, and its running peers."""

    standin: StandIn
    app: web.Application

    @property
    def origin(self) -> str:
        return self.standin.base_url.removesuffix("/v1")

    @property
    def key(self) -> str:
        return self.standin.api_key

    @property
    def active(self) -> ActiveCalls:
        return self.app[ACTIVE_CALLS_KEY]

    def url(self, path: str) -> str:
        return self.origin + path

    def token(self, session: dict[str, Any] | None = None, ttl: int = 60) -> str:
        return self.standin.registry.issue(effective_session(session or REALTIME_SESSION), ttl).value

    async def post(self, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key != "":
            headers.setdefault("Authorization", f"Bearer {self.key if key is None else key}")
        async with httpx.AsyncClient() as http:
            return await http.post(self.url(path), headers=headers, **kwargs)

    async def hang_up(self, call_id: str, *, key: str | None = None) -> httpx.Response:
        kind = "live/sessions" if call_id.startswith("live_") else "realtime/calls"
        return await self.post(f"/v1/{kind}/{call_id}/hangup", key=key)


@pytest.fixture
async def standin_server() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """A factory: `await standin_server(max_session_seconds=...)` serves a StandIn on 127.0.0.1:<free>."""
    started: list[StandIn] = []

    async def start(**options: Any) -> Served:
        standin = StandIn(**options)
        app = await standin.serve()
        started.append(standin)
        return Served(standin, app)

    yield start
    for standin in started:
        await standin.aclose()


def multipart(sdp: str, session: Any = None, *, sdp_type: str = "application/sdp",
              session_type: str = "application/json", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """httpx `files=` for a server-side call: parts without filenames, as openai-python sends them."""
    files: dict[str, Any] = {"sdp": (None, sdp, sdp_type)}
    if session is not None:
        files["session"] = (None, session if isinstance(session, str) else json.dumps(session), session_type)
    files.update(extra or {})
    return files


async def offer_sdp() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.createDataChannel("oai-events")
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None,
                        param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


@dataclass
class PeerClient:
    """An aiortc peer that behaves like the page: `oai-events` channel first, then a sendrecv audio offer."""

    mic: bytes = b""
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio: list[tuple[float, float]] = field(default_factory=list)  # (arrival time, rms) per 20 ms received
    connected_at: float = 0.0  # monotonic; the microphone starts about then
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def offer(self, direction: str = "sendrecv") -> str:
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", self._on_message)
        if direction == "recvonly":
            self.pc.addTransceiver("audio", direction="recvonly")
        else:
            self.pc.addTransceiver(MicrophoneTrack(self.mic), direction=direction)
        self.pc.on("track", lambda track: self._tasks.append(asyncio.ensure_future(self._record(track))))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str) -> None:
        connected = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected":
                connected.set()

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        await asyncio.wait_for(connected.wait(), 10)
        self.connected_at = time.monotonic()

    async def connect_with_token(self, server: Served, token: str, direction: str = "sendrecv") -> str:
        """The old browser flow: raw SDP with an ek_ token. Returns the call id."""
        response = await server.post("/v1/realtime/calls", key=token, content=await self.offer(direction),
                                     headers={"Content-Type": "application/sdp"})
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == "application/sdp"
        await self.accept(response.text)
        return response.headers["location"].rsplit("/", 1)[1]

    async def connect_server_side(self, server: Served, session: Any = None) -> str:
        """The product's flow: a server posts the offer as multipart with the standard key. Returns the call id."""
        files = multipart(await self.offer(), REALTIME_SESSION if session is None else session)
        response = await server.post("/v1/realtime/calls", files=files)
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == "application/sdp"
        await self.accept(response.text)
        return response.headers["location"].rsplit("/", 1)[1]

    async def connect_live(self, server: Served, session: Any = None) -> str:
        body = {"session": LIVE_SESSION if session is None else session,
                "transport": {"type": "webrtc", "sdp": await self.offer()}}
        response = await server.post("/v1/live/sessions", json=body)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert set(answer) == {"session", "transport"} and set(answer["session"]) == {"id"}
        assert answer["transport"]["type"] == "webrtc"
        await self.accept(answer["transport"]["sdp"])
        return answer["session"]["id"]

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

    async def wait_ended(self, timeout: float) -> float:
        """Seconds until the data channel and the connection are both over, as a page would notice."""
        began = time.monotonic()
        while not (self.channel.readyState == "closed" and self.pc.connectionState in ("closed", "failed")):
            if time.monotonic() - began > timeout:
                raise AssertionError(f"still {self.channel.readyState}/{self.pc.connectionState} after {timeout}s")
            await asyncio.sleep(0.02)
        return time.monotonic() - began

    def audio_between(self, start: float, end: float) -> list[float]:
        return [level for at, level in self.audio if start <= at <= end]

    def event_time(self, index: int) -> float:
        return self.events[index][0]

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def peer_client() -> AsyncIterator[Callable[..., PeerClient]]:
    """A factory of PeerClient that closes them all afterwards."""
    clients: list[PeerClient] = []

    def make(mic: bytes = b"") -> PeerClient:
        clients.append(PeerClient(mic=mic))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()
