"""RealtimeSession on the default path: our API sets the call up (`POST /calls`) and hangs it up, over real HTTP
(a fake of our API for failures) and real WebRTC (the OpenAI stand-in behind it), on each kind of stack: Realtime's
audio-only default, Realtime with its data channel, and GPT-Live (whose allow-list keeps `session.started` and
`session.closed` from the client)."""

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
from tests.integration.clients.fake_services import (
    AUDIO_ONLY,
    DEFAULT_MAX_SECONDS,
    ERROR_TYPES,
    FAILURES,
    STACKS,
    FakeServices,
    media_sections,
)
from tests.integration.clients.polling import types, until

EACH_STACK = pytest.mark.parametrize("stack", list(STACKS))
# What `wait_ready` returns the type of: only Realtime with its channel says the session is up.
READY = {"realtime": None, "realtime-dc": "session.created", "live": None}
REPLY_TRANSCRIPT = {"realtime": None, "realtime-dc": "response.output_audio_transcript.delta",
                    "live": "session.output_transcript.delta"}
HIDDEN_LIVE_EVENTS = {"session.started", "session.closed"}  # they carry the owner's instructions




def standin_call(standin: StandIn, call_id: str | None) -> Any:
    assert call_id is not None
    record = standin.calls.get(call_id)
    assert record is not None, f"the stand-in never saw {call_id}"
    return record


@EACH_STACK
async def test_a_call_set_up_by_our_api_talks_and_its_hangup_gives_time_back(
    services: FakeServices, standin: StandIn, speech_wav: Path, tmp_path: Path, stack: str
) -> None:
    backend, data_channel = STACKS[stack]
    out = tmp_path / "reply.wav"
    events: list[dict[str, Any]] = []
    setup = CallSetup(services.url(stack=stack), api_key="rtv_our-key", voice="cedar")
    session = RealtimeSession(
        setup, microphone=MicrophoneTrack.from_wav(speech_wav), record_to=out, on_event=events.append
    )
    transcript = REPLY_TRANSCRIPT[stack]

    async with session:
        first = await session.wait_ready(5)
        await until(lambda: session.recorder.audible and (transcript is None or transcript in types(events)), 15)
        await until(lambda: session.recorder.quiet_for() > 1.0, 10)
        assert session.connected
        assert abs(session.ends_at - (time.time() + DEFAULT_MAX_SECONDS)) < 30  # type: ignore[operator]

    assert (first["type"] if first else None) == READY[stack]
    assert (session.backend, session.data_channel) == (backend, data_channel)
    assert session.call_id is not None and session.call_id.startswith("live_" if backend == "live" else "rtc_")
    assert session.max_seconds == DEFAULT_MAX_SECONDS
    # The setup said nothing of the channel, so the client asked GET /options first, then offered what it allows.
    asked = [r.path for r in services.requests if r.path.startswith(f"/{stack}/ok/")][-3:]
    assert asked == [f"/{stack}/ok/options", f"/{stack}/ok/calls", f"/{stack}/ok/calls/{session.call_id}/hangup"]
    setup_request = services.last("/calls")
    assert setup_request.headers["Authorization"] == "Bearer rtv_our-key"
    offer = setup_request.json()
    assert set(offer) == {"sdp", "voice"} and offer["voice"] == "cedar"
    assert offer["sdp"].startswith("v=0")
    assert media_sections(offer["sdp"]) == (["audio", "application"] if data_channel else ["audio"])
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
    if not data_channel:
        assert events == [] and standin_call(standin, session.call_id).server_event_types == []
    if backend == "live":
        assert session.usage_seconds is not None and session.usage_seconds > 0  # session.usage.updated
        assert HIDDEN_LIVE_EVENTS.isdisjoint(types(events))


async def test_the_api_url_as_a_string_and_no_choices(services: FakeServices) -> None:
    async with RealtimeSession(services.url("ok", "calls")) as session:
        assert await session.wait_ready(5) is None  # an audio-only call: connected is ready

    assert services.last("/options").path == "/realtime/ok/options"
    request = services.last("/calls")
    assert request.path == "/realtime/ok/calls"
    assert "Authorization" not in request.headers
    assert set(request.json()) == {"sdp"}
    assert media_sections(request.json()["sdp"]) == ["audio"]


async def test_live_takes_no_text_from_the_client(services: FakeServices) -> None:
    async with RealtimeSession(services.url(stack="live")) as session:
        assert await session.wait_ready(5) is None  # no session.started: the channel opening was the start
        with pytest.raises(SessionError, match="live backend does not accept text"):
            session.send_text("hello")


async def test_an_audio_only_call_has_no_channel_to_send_on(services: FakeServices) -> None:
    session = RealtimeSession(services.url())
    async with session:
        await session.wait_ready(5)
        assert session.connected and session.data_channel is False
        with pytest.raises(SessionError, match="audio-only calls"):
            session.send_text("hello")
        with pytest.raises(SessionError, match="audio-only calls"):
            session.send({"type": "response.create"})

    assert [event async for event in session.events()] == []


async def test_what_the_setup_says_of_the_channel_is_offered_without_asking(services: FakeServices) -> None:
    asked = len([r for r in services.requests if r.path.endswith("/options")])
    setup = CallSetup(services.url(stack="realtime-dc"), backend="realtime", data_channel=True)

    async with RealtimeSession(setup) as session:
        created = await session.wait_ready(5)

    assert created is not None and created["type"] == "session.created"
    assert len([r for r in services.requests if r.path.endswith("/options")]) == asked
    assert media_sections(services.last("/calls").json()["sdp"]) == ["audio", "application"]

    # The same on a stack without the channel: refused before anything is set up, naming the offer.
    refused = RealtimeSession(CallSetup(services.url(), data_channel=True))
    with pytest.raises(ClientError) as caught:
        await refused.connect()
    assert (caught.value.status, caught.value.code, caught.value.message) == (400, "invalid_request", AUDIO_ONLY)
    assert refused.call is None and refused.microphone.readyState == "ended"




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
    with pytest.raises(EndpointNotFound) as told:  # told what the stack allows: no GET /options to fail first
        await RealtimeSession(CallSetup(wrong, data_channel=False)).connect()

    assert caught.value.url == wrong + "/options"
    assert caught.value.message.startswith(f"GET {wrong}/options answered 404")
    assert told.value.url == wrong + "/calls"
    assert told.value.message.startswith(f"POST {wrong}/calls answered 404")
    assert caught.value.message.endswith(
        "expected the stack's ApiUrl (https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL"
    )


async def test_unreachable_and_slow_apis_are_endpoint_unreachable(services: FakeServices, refused_url: str) -> None:
    with pytest.raises(EndpointUnreachable) as refused:
        await RealtimeSession(refused_url).connect()
    with pytest.raises(EndpointUnreachable) as slow:  # the fake answers /calls after 2 s
        await RealtimeSession(CallSetup(services.url("slow"), timeout=0.3)).connect()

    assert refused.value.code == "connect_failed"
    assert slow.value.code == "timeout"
    assert slow.value.message.startswith("no answer within 0.3 s")


async def test_a_call_that_never_connects_is_hung_up_again(services: FakeServices) -> None:
    session = RealtimeSession(services.url("dead"), connect_timeout=1.5)

    with pytest.raises(ConnectionFailed):
        await session.connect()

    assert session.call_id is not None
    assert services.calls[session.call_id].hung_up  # the server was told at once: the minutes go back
    assert session.hangup is not None and session.hangup.credited_seconds > 0


@EACH_STACK
async def test_the_leash_ends_the_call_at_its_limit_and_the_client_says_why(
    services: FakeServices, standin: StandIn, stack: str
) -> None:
    session = RealtimeSession(services.url("leash-2", stack=stack))
    await session.connect()
    await session.wait_ready(5)

    await asyncio.wait_for(session.ended.wait(), 10)
    seen = [event["type"] async for event in session.events()]  # ends by itself: the call is over
    await session.close()

    # No event said so on any stack: the connection closing at the call's limit did.
    assert session.end_reason == "expired"
    assert session.max_seconds == 2
    if READY[stack] is not None:
        assert seen[0] == READY[stack]
    if not STACKS[stack][1]:
        assert seen == []
    assert HIDDEN_LIVE_EVENTS.isdisjoint(seen)
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
