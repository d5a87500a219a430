"""RealtimeSession on the token path (an `ek_` from /token, the offer straight to OpenAI) against the real
stand-in: SDP over HTTP, `oai-events`, audio both ways, refusal, hang-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from realtime_client import (
    CallRefused,
    ConnectionFailed,
    MicrophoneTrack,
    RealtimeSession,
    SessionError,
    Token,
    fetch_token_async,
)
from tests.audio_files import wav_stats
from tests.integration.clients.fake_services import FakeServices
from tests.integration.clients.polling import types, until

STANDARD_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length"}




async def test_microphone_audio_comes_back_and_is_recorded(
    services: FakeServices, speech_wav: Path, tmp_path: Path
) -> None:
    token = await fetch_token_async(services.url())
    out = tmp_path / "reply.wav"
    events: list[dict[str, Any]] = []

    async with RealtimeSession(
        token, microphone=MicrophoneTrack.from_wav(speech_wav), record_to=out, on_event=events.append
    ) as session:
        created = await session.wait_ready(5)
        await until(lambda: "output_audio_buffer.stopped" in types(events), 15)
        await until(lambda: session.recorder.quiet_for() > 0.3, 5)
        call_id = session.call_id

    assert created["type"] == "session.created"
    assert created["session"]["type"] == "realtime"
    assert call_id is not None and call_id.startswith("rtc_")
    assert (session.backend, session.ends_at, session.max_seconds) == ("realtime", None, None)
    seen = types(events)
    assert seen[0] == "session.created"
    for expected in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_audio_transcript.done",
        "response.done",
        "output_audio_buffer.stopped",
    ):
        assert expected in seen
    stats = wav_stats(out)
    assert (stats.rate, stats.channels, stats.width) == (48_000, 1, 2)
    # The stand-in plays the one-second tone back; Opus and the quiet before hang-up add a little.
    assert 0.8 <= stats.seconds <= 3.0
    assert stats.rms > 1000


async def test_offer_is_posted_like_a_browser_does(services: FakeServices) -> None:
    token = await fetch_token_async(services.url())

    async with RealtimeSession(token) as session:
        await session.wait_ready(5)

    request = services.last("/openai/realtime/calls")
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["authorization"] == f"Bearer {token.token}"
    assert headers["content-type"] == "application/sdp"
    assert set(headers) - STANDARD_HEADERS == {"authorization", "content-type"}
    assert request.body.startswith(b"v=0")
    assert b"m=audio" in request.body
    assert b"m=application" in request.body  # oai-events was created before the offer


async def test_send_text_sends_ga_events_and_records_the_spoken_answer(services: FakeServices, tmp_path: Path) -> None:
    token = await fetch_token_async(services.url())
    out = tmp_path / "reply.wav"
    events: list[dict[str, Any]] = []

    def broken_callback(event: dict[str, Any]) -> None:
        raise RuntimeError("a bug in user code")

    session = RealtimeSession(token, record_to=out, on_event=broken_callback)
    session.on_event(events.append)
    async with session:
        await session.wait_ready(5)
        session.send_text("hello there")
        done = await session.wait_for("response.done", 10)
        await until(lambda: "output_audio_buffer.stopped" in types(events), 10)
        await until(lambda: session.recorder.quiet_for() > 0.3, 5)

    assert done["response"]["status"] == "completed"
    assert "error" not in types(events)  # the stand-in checks client events against OpenAI's schema
    transcripts = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert len(transcripts) == 1 and "hello there" in transcripts[0]
    stats = wav_stats(out)
    assert stats.seconds >= 0.3
    assert stats.rms > 1000


async def test_events_iterator_yields_in_order_and_ends_on_close(services: FakeServices) -> None:
    token = await fetch_token_async(services.url())
    session = RealtimeSession(token)
    await session.connect()
    await session.wait_ready(5)
    session.send_text("one")
    await session.wait_for("response.done", 10)
    await session.close()

    seen = [event["type"] async for event in session.events()]

    assert seen[0] == "session.created"
    assert seen.index("response.created") < seen.index("response.done")


async def test_close_releases_everything_and_is_idempotent(services: FakeServices) -> None:
    token = await fetch_token_async(services.url())
    session = RealtimeSession(token)
    await session.connect()
    await session.wait_ready(5)
    assert session.connected
    pending = asyncio.create_task(session.wait_for("never.sent"))
    await asyncio.sleep(0)

    await session.close()
    await session.close()

    assert not session.connected
    assert session.end_reason == "close_requested"
    assert session.hangup is None  # the token path has nobody to tell
    assert session.microphone.readyState == "ended"
    assert session.recorder._task is not None and session.recorder._task.done()
    with pytest.raises(SessionError):
        await pending
    with pytest.raises(SessionError):
        session.send_text("too late")


async def test_expired_token_is_call_refused_with_openai_message(services: FakeServices) -> None:
    token = await fetch_token_async(services.url("expired"))
    session = RealtimeSession(token)

    with pytest.raises(CallRefused) as caught:
        async with session:
            pass

    assert caught.value.status == 401
    assert caught.value.message.startswith("Incorrect API key provided: ek_")
    assert token.token not in caught.value.message  # OpenAI masks it, and so does the stand-in
    assert caught.value.code == "invalid_api_key"
    assert session.microphone.readyState == "ended"


async def test_unreachable_realtime_url_is_connection_failed(services: FakeServices, refused_url: str) -> None:
    token = await fetch_token_async(services.url())
    moved = Token(token=token.token, expires_at=token.expires_at, realtime_url=refused_url + "/v1/realtime/calls")

    with pytest.raises(ConnectionFailed, match="could not post the SDP offer"):
        async with RealtimeSession(moved):
            pass
