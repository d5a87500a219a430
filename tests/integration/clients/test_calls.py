"""RealtimeSession on the default path: our API sets the call up (`POST /calls`) and hangs it up, over real HTTP
(a fake of our API for failures) and real WebRTC (the OpenAI stand-in behind it), on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from local.openai_standin.server import StandIn
from realtime_client import (
    CallSetup,
    ClientError,
    ConnectionFailed,
    EndpointError,
    EndpointNotFound,
    EndpointUnreachable,
    InvalidResponse,
    MicrophoneTrack,
    RateLimited,
    RealtimeSession,
    ServerError,
    SessionError,
    hang_up_call,
)
from tests.audio_files import wav_stats
from tests.integration.clients.fake_services import DEFAULT_MAX_SECONDS, ERROR_TYPES, FAILURES, FakeServices
from tests.integration.clients.polling import types, until

BACKENDS = pytest.mark.parametrize("backend", ["realtime", "live"])
READY = {"realtime": "session.created", "live": "session.started"}
REPLY_TRANSCRIPT = {"realtime": "response.output_audio_transcript.delta", "live": "session.output_transcript.delta"}




def standin_call(standin: StandIn, call_id: str | None) -> Any:
    assert call_id is not None
    record = standin.calls.get(call_id)
    assert record is not None, f"the stand-in never saw {call_id}"
    return record


@BACKENDS
async def test_a_call_set_up_by_our_api_talks_and_its_hangup_gives_time_back(
    services: FakeServices, standin: StandIn, speech_wav: Path, tmp_path: Path, backend: str
) -> None:
    out = tmp_path / "reply.wav"
    events: list[dict[str, Any]] = []
    setup = CallSetup(services.url(backend=backend), api_key="rtv_our-key", voice="cedar")
    session = RealtimeSession(
        setup, microphone=MicrophoneTrack.from_wav(speech_wav), record_to=out, on_event=events.append
    )

    async with session:
        first = await session.wait_ready(5)
        await until(lambda: REPLY_TRANSCRIPT[backend] in types(events) and session.recorder.audible, 15)
        await until(lambda: session.recorder.quiet_for() > 1.0, 10)
        assert session.connected
        assert abs(session.ends_at - (time.time() + DEFAULT_MAX_SECONDS)) < 30  # type: ignore[operator]

    assert first["type"] == READY[backend]
    assert session.backend == backend
    assert session.call_id is not None and session.call_id.startswith("live_" if backend == "live" else "rtc_")
    assert session.max_seconds == DEFAULT_MAX_SECONDS
    setup_request = services.last("/calls")
    assert setup_request.headers["Authorization"] == "Bearer rtv_our-key"
    offer = setup_request.json()
    assert set(offer) == {"sdp", "voice"} and offer["voice"] == "cedar"
    assert offer["sdp"].startswith("v=0") and "m=audio" in offer["sdp"] and "m=application" in offer["sdp"]
    hangup = services.last("/hangup")
    assert hangup.path.endswith(f"/calls/{session.call_id}/hangup")
    assert hangup.json() == {"hangup_token": services.calls[session.call_id].hangup_token}
    assert session.hangup is not None and session.hangup.credited_seconds > DEFAULT_MAX_SECONDS - 60
    assert session.end_reason == "close_requested"
    assert standin_call(standin, session.call_id).wait_ended(5)
    assert standin_call(standin, session.call_id).end_reason == "hangup"
    stats = wav_stats(out)
    assert stats.seconds > 0.5 and stats.rms > 1000
    assert not any("ek_" in json.dumps(event) for event in events)  # no OpenAI token on this path, anywhere
    if backend == "live":
        assert session.usage_seconds is not None and session.usage_seconds > 0  # session.usage.updated


async def test_the_api_url_as_a_string_and_no_choices(services: FakeServices) -> None:
    async with RealtimeSession(services.url("ok", "calls")) as session:
        await session.wait_ready(5)

    request = services.last("/calls")
    assert request.path == "/realtime/ok/calls"
    assert "Authorization" not in request.headers
    assert set(request.json()) == {"sdp"}


async def test_live_takes_no_text_from_the_client(services: FakeServices) -> None:
    async with RealtimeSession(services.url(backend="live")) as session:
        await session.wait_ready(5)
        with pytest.raises(SessionError, match="live backend does not accept text"):
            session.send_text("hello")




@pytest.mark.parametrize(("status", "error_type"), ERROR_TYPES.items())
async def test_setup_failures_are_typed_and_leave_nothing_behind(
    services: FakeServices, status: int, error_type: type[EndpointError]
) -> None:
    code, message, retry_after = FAILURES[status]
    session = RealtimeSession(CallSetup(services.url(f"fail-{status}")))

    with pytest.raises(error_type) as caught:
        await session.connect()

    error = caught.value
    assert type(error) is error_type
    assert (error.status, error.code, error.message) == (status, code, message)
    if isinstance(error, RateLimited | ServerError):
        assert error.retry_after == retry_after
    assert session.call is None and session.hangup is None
    assert session.microphone.readyState == "ended"
    assert not services.last("/calls").path.endswith("hangup")


async def test_503_leash_unavailable_says_when_to_retry(services: FakeServices) -> None:
    with pytest.raises(ServerError) as caught:
        async with RealtimeSession(services.url("fail-503")):
            pass

    assert (caught.value.code, caught.value.retry_after) == ("leash_unavailable", 4)


async def test_non_json_and_redirect_answers_are_typed(services: FakeServices) -> None:
    with pytest.raises(ServerError) as html:
        await RealtimeSession(services.url("html-502")).connect()
    with pytest.raises(InvalidResponse) as moved:
        await RealtimeSession(services.url("redirect")).connect()

    assert (html.value.status, html.value.code) == (502, "http_502")
    assert (moved.value.status, moved.value.code) == (301, "unexpected_redirect")


async def test_wrong_url_is_a_404_naming_it_and_what_was_expected(services: FakeServices) -> None:
    wrong = services.base_url + "/not/our-api"

    with pytest.raises(EndpointNotFound) as caught:
        await RealtimeSession(wrong).connect()

    assert caught.value.url == wrong + "/calls"
    assert caught.value.message.startswith(f"POST {wrong}/calls answered 404")
    assert caught.value.message.endswith(
        "expected the stack's ApiUrl (https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL"
    )


async def test_unreachable_and_slow_apis_are_endpoint_unreachable(services: FakeServices, refused_url: str) -> None:
    with pytest.raises(EndpointUnreachable) as refused:
        await RealtimeSession(refused_url).connect()
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as slow:
        await RealtimeSession(CallSetup(services.url("slow"), timeout=0.3)).connect()

    assert refused.value.code == "connect_failed"
    assert slow.value.code == "timeout"
    assert time.monotonic() - started < 1.5


async def test_a_call_that_never_connects_is_hung_up_again(services: FakeServices) -> None:
    session = RealtimeSession(services.url("dead"), connect_timeout=1.5)

    with pytest.raises(ConnectionFailed):
        await session.connect()

    assert session.call_id is not None
    assert services.calls[session.call_id].hung_up  # the server was told at once: the minutes go back
    assert session.hangup is not None and session.hangup.credited_seconds > 0


@BACKENDS
async def test_the_leash_ends_the_call_at_its_limit_and_the_client_says_why(
    services: FakeServices, standin: StandIn, backend: str
) -> None:
    session = RealtimeSession(services.url("leash-2", backend=backend))
    await session.connect()
    await session.wait_ready(5)
    started = time.monotonic()

    await asyncio.wait_for(session.ended.wait(), 10)
    seen = [event["type"] async for event in session.events()]  # ends by itself: the call is over
    await session.close()

    assert time.monotonic() - started < 8
    assert session.end_reason == "expired"
    assert session.max_seconds == 2
    assert seen[0] == READY[backend]
    if backend == "live":
        assert "session.closed" in seen
    assert session.call_id in services.leash_hangups
    assert standin_call(standin, session.call_id).end_reason == "hangup"
    with pytest.raises(SessionError):
        await session.wait_for("anything")


async def test_hangup_needs_the_calls_own_token_and_credits_once(services: FakeServices) -> None:
    session = RealtimeSession(services.url())
    await session.connect()
    assert session.call is not None
    setup = session.setup
    assert isinstance(setup, CallSetup)

    with pytest.raises(ClientError) as refused:
        await hang_up_call(setup, dataclasses.replace(session.call, hangup_token="not-the-token"))
    assert session.connected  # a wrong token changes nothing
    first = await hang_up_call(setup, session.call)
    second = await hang_up_call(setup, session.call)
    await session.close()  # best effort: a third hangup is fine, and close() raises nothing

    assert (refused.value.status, refused.value.code) == (403, "invalid_hangup_token")
    assert (first.state, second.state) == ("ended", "ended")
    assert first.credited_seconds > DEFAULT_MAX_SECONDS - 60
    assert second.credited_seconds == 0
    assert session.hangup is not None and session.hangup.credited_seconds == 0
