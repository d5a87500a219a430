"""The local system as a user gets it: resources from the template, a token over HTTP, a WebRTC call to the
local Realtime peer with audio both ways, and `python -m local` (what `make run` runs) starting and stopping."""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from av import AudioFrame

from local.system import LocalSystem
from local.template_stack import load_template

ROOT = Path(__file__).resolve().parents[3]
RATE = 48_000
SAMPLES = 960  # 20 ms


class SpeechLikeTrack(MediaStreamTrack):
    """A microphone saying something: 1.2 s of a warbling tone, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._index = 0
        self._started: float | None = None

    async def recv(self) -> AudioFrame:
        if self._started is None:
            self._started = time.monotonic()
        due = self._started + self._index * SAMPLES / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (np.arange(SAMPLES) + self._index * SAMPLES) / RATE
        in_speech = (self._index * SAMPLES / RATE) % 4.0 < 1.2
        wave = 0.4 * np.sin(2 * math.pi * (300 + 80 * np.sin(2 * math.pi * 3 * t)) * t) if in_speech else 0 * t
        frame = AudioFrame.from_ndarray((wave * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._index * SAMPLES, fractions.Fraction(1, RATE)
        self._index += 1
        return frame


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(port=0, parameters={"TokenTtlSeconds": "120", "EnableTokenRoute": "true"}) as running:
        yield running


def test_resources_are_created_from_the_template_not_by_hand(system: LocalSystem) -> None:
    assert system.stack is not None
    template = load_template()["Resources"]
    declared = template["LimitsTable"]["Properties"]
    dynamodb = system.client("dynamodb")
    table = dynamodb.describe_table(TableName=system.stack.table_name)["Table"]
    assert table["KeySchema"] == declared["KeySchema"]
    assert table["AttributeDefinitions"] == declared["AttributeDefinitions"]
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
    ttl = dynamodb.describe_time_to_live(TableName=system.stack.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == declared["TimeToLiveSpecification"]["AttributeName"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"

    secretsmanager = system.client("secretsmanager")
    salt = secretsmanager.get_secret_value(SecretId=system.stack.physical_ids["HashSaltSecret"])["SecretString"]
    generate = template["HashSaltSecret"]["Properties"]["GenerateSecretString"]
    assert len(salt) == generate["PasswordLength"] and salt.isalnum()
    assert "OpenAIKeySecret" in system.stack.physical_ids

    env = system.function_env
    variables = template["TokenFunction"]["Properties"]["Environment"]["Variables"]
    assert set(variables) <= set(env)
    assert env["TOKEN_TTL_SECONDS"] == "120"  # the parameter given, through the template's !Ref
    assert env["TABLE_NAME"] == system.stack.table_name
    assert env["OPENAI_SECRET_ARN"] == system.stack.physical_ids["OpenAIKeySecret"]


def test_a_chunked_body_reaches_the_function_whole_under_the_same_caps(system: LocalSystem) -> None:
    def chunks(body: bytes, size: int = 7) -> Iterator[bytes]:  # no length known: httpx sends it chunked
        yield from (body[i:i + size] for i in range(0, len(body), size))

    calls = f"{system.api_url}/calls"
    headers = {"content-type": "application/json"}
    offer = httpx.post(calls, headers=headers, content=chunks(json.dumps({"sdp": "not an offer"}).encode()))
    assert offer.status_code == 400 and offer.json()["error"]["message"].startswith("sdp"), offer.text
    big = httpx.post(calls, headers=headers, content=chunks(json.dumps({"sdp": "v=0\r\n" * 5000}).encode(), 4096))
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    api = urlsplit(system.api_url)
    with socket.create_connection((api.hostname, api.port)) as raw:
        raw.sendall(b"POST /calls HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")


def test_cors_preflight_and_origin_check_follow_the_template(system: LocalSystem) -> None:
    page_origin = system.page_url.rstrip("/")
    preflight = httpx.options(system.token_url, headers={
        "Origin": page_origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == page_origin
    foreign = httpx.post(system.token_url, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    allowed = httpx.post(system.token_url, headers={"Origin": page_origin})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == page_origin
    assert "ratelimit-remaining" in allowed.headers["access-control-expose-headers"]


async def test_a_webrtc_call_completes_against_the_local_peer(system: LocalSystem) -> None:
    async with httpx.AsyncClient() as http:
        token = (await http.post(system.token_url, json={"voice": "cedar"})).json()
        assert token["realtime_url"].startswith(system.standin.base_url)

        pc = RTCPeerConnection()
        events: list[dict] = []
        got_event = asyncio.Event()
        channel = pc.createDataChannel("oai-events")
        channel.on("message", lambda raw: (events.append(json.loads(raw)), got_event.set()))
        pc.addTrack(SpeechLikeTrack())
        received: list[float] = []
        drains: list[asyncio.Task] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            async def drain() -> None:
                while True:
                    try:
                        frame = await track.recv()
                    except Exception:
                        return
                    samples = frame.to_ndarray().astype(np.float64) / 32768
                    received.append(float(np.sqrt(np.mean(samples**2))))
            drains.append(asyncio.ensure_future(drain()))

        await pc.setLocalDescription(await pc.createOffer())
        started = time.perf_counter()
        answer = await http.post(token["realtime_url"], content=pc.localDescription.sdp,
                                 headers={"Authorization": f"Bearer {token['token']}",
                                          "Content-Type": "application/sdp"})
        assert answer.status_code == 201, answer.text
        assert answer.headers["location"].startswith("/v1/realtime/calls/rtc_")
        await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        try:
            async with asyncio.timeout(15):
                while pc.connectionState != "connected":
                    await asyncio.sleep(0.02)
                connected_ms = (time.perf_counter() - started) * 1000
                while not any(e["type"] == "response.done" for e in events):
                    got_event.clear()
                    await got_event.wait()
        finally:
            types = [e["type"] for e in events]
            await pc.close()
    print(f"\nconnected {connected_ms:.0f} ms after the SDP POST; events: {types}")
    assert types[0] == "session.created"
    assert events[0]["session"]["audio"]["output"]["voice"] == "cedar"
    for expected in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                     "conversation.item.input_audio_transcription.completed",
                     "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
                     "output_audio_buffer.started"):
        assert expected in types, expected
    loud = [level for level in received if level > 0.05]
    assert len(loud) > 10, f"expected our audio played back; loud frames: {len(loud)} of {len(received)}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_python_m_local_starts_fast_serves_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", "PARAMETER_OVERRIDES": "EnableTokenRoute=true"}
    env.pop("OPENAI_API_KEY", None)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "click Talk" in line:
                break
        ready_s = time.perf_counter() - started
        assert ready_s < 60, ready_s
        assert any(f"http://localhost:{port}/" in line for line in lines)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
        assert httpx.post(f"http://127.0.0.1:{port}/token").status_code == 200
        api = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{api}/config.json").json() == {
            "apiUrl": f"{api}/", "callsUrl": f"{api}/calls", "optionsUrl": f"{api}/options", "tokenUrl": f"{api}/token"}

        busy = subprocess.run([sys.executable, "-m", "local"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert busy.returncode == 1 and "busy" in busy.stderr
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    output = "".join(lines) + rest
    print(f"\n`python -m local` ready in {ready_s:.1f} s")
    assert process.returncode == 0
    assert "POST   /token" in output and " 200 " in output  # the readable request line
    assert "Stopped." in output
    assert "ek_" not in output and "sk-" not in output
