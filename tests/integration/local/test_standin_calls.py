"""The stand-in's Realtime calls, end to end on loopback: a real aiohttp server, a real aiortc client.

The conversation (VAD, transcripts, the echo, session.update, the text path) is the same whichever way the call was
set up; these tests set it up the old browser way (an `ek_` token and a raw offer). Server-side setup and hangup
are in test_standin_server_calls.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.integration.local.conftest import (
    ECHO_RMS,
    LEAD_IN_SECONDS,
    REALTIME_SESSION,
    SILENCE_RMS,
    SPEECH_SECONDS,
    assert_openai_error,
    multipart,
    offer_sdp,
    speech_like,
)

pytestmark = pytest.mark.usefixtures("no_leaks")

CALLS = "/v1/realtime/calls"


def without_turn_detection() -> dict[str, Any]:
    return {**REALTIME_SESSION, "audio": {"input": {"turn_detection": None}, "output": {"voice": "marin"}}}


# -- the conversation over WebRTC -----------------------------------------------------------------------------


async def test_speech_is_detected_transcribed_answered_and_played_back(standin_server, peer_client):
    server = await standin_server()
    token = server.token()
    client = peer_client(mic=speech_like(SPEECH_SECONDS, lead_in=LEAD_IN_SECONDS))
    call_id = await client.connect_with_token(server, token)
    assert call_id.startswith("rtc_") and call_id in server.active

    _, created = await client.wait_for("session.created")
    assert client.events[0][1]["type"] == "session.created"
    assert created["session"] == server.standin.registry.lookup(token).session
    assert created["session"]["id"].startswith("sess_")

    i_started, started = await client.wait_for("input_audio_buffer.speech_started")
    i_stopped, stopped = await client.wait_for("input_audio_buffer.speech_stopped", after=i_started)
    i_heard, heard = await client.wait_for("conversation.item.input_audio_transcription.completed", after=i_stopped)
    i_created, response_created = await client.wait_for("response.created", after=i_heard)
    i_playing, playing = await client.wait_for("output_audio_buffer.started", after=i_created)
    i_delta, _ = await client.wait_for("response.output_audio_transcript.delta", after=i_playing)
    i_said, said = await client.wait_for("response.output_audio_transcript.done", after=i_delta)
    i_done, done = await client.wait_for("response.done", after=i_said)
    i_drained, drained = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=6)

    assert stopped["item_id"] == heard["item_id"] == started["item_id"]
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
    played_at, drained_at = client.event_time(i_playing), client.event_time(i_drained)
    playback_seconds = drained_at - played_at
    assert SPEECH_SECONDS - 0.4 <= playback_seconds <= SPEECH_SECONDS + 0.8
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
    # What went over the channel is on the record, for tests that cannot see the peer.
    record = server.standin.call(call_id)
    assert record is not None and record.connected and not record.server_side
    assert record.server_event_types[: len(client.events)] == client.types()


async def test_session_update_is_faithful_and_malformed_events_are_refused(standin_server, peer_client):
    """On Realtime a connected browser can rewrite its own session; the stand-in lets it, as OpenAI does."""
    server = await standin_server()
    client = peer_client()
    call_id = await client.connect_with_token(server, server.token())
    await client.wait_for("session.created")

    client.send({
        "type": "session.update",
        "event_id": "evt_update_1",
        "session": {
            "type": "realtime",
            "instructions": "Talk like a pirate.",
            "audio": {"input": {"turn_detection": None}, "output": {"voice": "cedar"}},
        },
    })
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
    client.send({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime-mini"}})
    _, model = await client.wait_for("error", after=mark)
    assert model["error"]["param"] == "session.model"

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

    mark = len(client.events)
    client.send({"event_id": "evt_typeless"})
    _, typeless = await client.wait_for("error", after=mark)
    assert typeless["error"]["code"] == "invalid_event"

    mark = len(client.events)
    client.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "output": "{}"}})
    _, not_a_message = await client.wait_for("error", after=mark)
    assert not_a_message["error"]["param"] == "item.type"
    # The session survives all of this, and the record holds every client event as sent.
    assert call_id in server.active
    record = server.standin.call(call_id)
    assert record is not None
    assert record.client_events[0]["event_id"] == "evt_update_1" and "{not json" in record.client_events


async def test_the_python_clients_text_path(standin_server, peer_client):
    """conversation.item.create with a user message, then response.create: the answer quotes it over a tone."""
    server = await standin_server()
    client = peer_client(mic=speech_like(SPEECH_SECONDS, lead_in=0.2))
    await client.connect_with_token(server, server.token(without_turn_detection()))
    await client.wait_for("session.created")

    client.send({"type": "response.create"})
    _, said = await client.wait_for("response.output_audio_transcript.done")
    assert "nothing to answer yet" in said["transcript"]
    await client.wait_for("response.done")
    await client.wait_for("output_audio_buffer.stopped", timeout=5)

    mark = len(client.events)
    client.send({
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
    })
    client.send({"type": "response.create"})
    # A second response while one is active is refused.
    client.send({"type": "response.create", "event_id": "evt_second"})
    i_playing, _ = await client.wait_for("output_audio_buffer.started", after=mark)
    _, busy = await client.wait_for("error", after=mark)
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    assert busy["error"]["event_id"] == "evt_second"
    _, said = await client.wait_for("response.output_audio_transcript.done", after=i_playing)
    assert said["transcript"] == "You wrote: hello there"
    _, done = await client.wait_for("response.done", after=i_playing)
    assert done["response"]["status"] == "completed"
    i_drained, _ = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=5)
    tone = client.audio_between(client.event_time(i_playing) + 0.15, client.event_time(i_drained) - 0.05)
    assert tone and sum(tone) / len(tone) > ECHO_RMS
    # No turn detection: the microphone's utterance produced no turn events.
    assert "input_audio_buffer.speech_started" not in client.types()


async def test_barge_in_cuts_the_answer(standin_server, peer_client):
    server = await standin_server()
    # Speak, pause long enough for the echo to start, then talk over it.
    mic = speech_like(0.8) + speech_like(0.8, lead_in=0.8)
    client = peer_client(mic=mic)
    await client.connect_with_token(server, server.token())
    i_playing, playing = await client.wait_for("output_audio_buffer.started")
    _, started = await client.wait_for("input_audio_buffer.speech_started", after=i_playing)
    _, cleared = await client.wait_for("output_audio_buffer.cleared", after=i_playing)
    _, done = await client.wait_for("response.done", after=i_playing)
    assert cleared["response_id"] == playing["response_id"] == done["response"]["id"]
    assert started["audio_start_ms"] > 0
    if done["response"]["status"] == "cancelled":  # unless it had finished generating before the barge-in
        assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


@pytest.mark.parametrize("direction", ["recvonly", "sendonly"])
async def test_one_way_offers(standin_server, peer_client, direction):
    """A listen-only page still hears answers; a send-only one gets the same events, paced as if it listened."""
    server = await standin_server()
    client = peer_client()
    await client.connect_with_token(server, server.token(), direction=direction)
    await client.wait_for("session.created")
    client.send({"type": "response.create"})
    i_playing, _ = await client.wait_for("output_audio_buffer.started")
    _, said = await client.wait_for("response.output_audio_transcript.done", after=i_playing)
    assert "tone" in said["transcript"]
    i_drained, _ = await client.wait_for("output_audio_buffer.stopped", after=i_playing, timeout=5)
    played_at, drained_at = client.event_time(i_playing), client.event_time(i_drained)
    assert 0.3 <= drained_at - played_at <= 1.5  # the 0.6 s tone, in about real time (event delivery jitters)
    heard = client.audio_between(played_at + 0.15, drained_at - 0.05)
    if direction == "recvonly":
        assert heard and sum(heard) / len(heard) > ECHO_RMS
    else:
        assert not client.audio


# -- the call's lifetime --------------------------------------------------------------------------------------


async def test_max_session_length_is_enforced(standin_server, peer_client):
    server = await standin_server(max_session_seconds=1.5)
    client = peer_client()
    began = time.monotonic()
    call_id = await client.connect_with_token(server, server.token())
    _, expired = await client.wait_for("error", timeout=5)
    assert expired["error"]["code"] == "session_expired"
    assert expired["error"]["message"] == "Your session hit the maximum duration of 1.5 seconds."
    assert 1.4 <= time.monotonic() - began <= 3.0
    await client.wait_ended(5)
    assert call_id not in server.active
    record = server.standin.call(call_id)
    assert record is not None and record.end_reason == "expired"


async def test_call_ends_when_the_peer_goes_away(standin_server, peer_client):
    server = await standin_server()
    client = peer_client()
    call_id = await client.connect_with_token(server, server.token())
    await client.wait_for("session.created")
    peer = server.active.get(call_id)
    assert peer is not None
    await client.pc.close()
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert call_id not in server.active
    assert peer.pc.connectionState == "closed"
    record = server.standin.call(call_id)
    assert record is not None and record.end_reason == "connection_lost" and record.ended_at is not None


async def test_shutdown_closes_running_calls(standin_server, peer_client):
    server = await standin_server()
    client = peer_client()
    call_id = await client.connect_with_token(server, server.token())
    await client.wait_for("session.created")
    peer = server.active.get(call_id)
    assert peer is not None
    await server.standin.aclose()
    assert peer.closed.is_set() and peer.pc.connectionState == "closed"
    assert not server.active
    record = server.standin.call(call_id)
    assert record is not None and record.end_reason == "shutdown"


async def test_one_token_starts_several_calls(standin_server, peer_client):
    server = await standin_server()
    token = server.token()
    first, second = peer_client(), peer_client()
    ids = await asyncio.gather(first.connect_with_token(server, token), second.connect_with_token(server, token))
    assert ids[0] != ids[1]
    assert len(server.active) == 2


# -- the HTTP contract of the browser form --------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ek_0123456789abcdef0123456789abcdef", "Basic ek_x", "Bearer sk-proj-abc"],
)
async def test_unknown_or_missing_token_is_401(standin_server, authorization):
    server = await standin_server()
    server.token()
    headers = {"Content-Type": "application/sdp", "Origin": "https://page.example"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await server.post(CALLS, key="", content=await offer_sdp(), headers=headers)
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert error["type"] == "invalid_request_error"
    # Errors are readable cross-origin too, or a page could not show why its call failed.
    assert response.headers["access-control-allow-origin"] == "https://page.example"
    assert not server.active


async def test_expired_token_is_401(standin_server):
    server = await standin_server()
    token = server.token()
    server.standin.registry.expire(token)
    response = await server.post(CALLS, key=token, content=await offer_sdp(),
                                 headers={"Content-Type": "application/sdp"})
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert token not in error["message"]  # echoed masked, like OpenAI


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
async def test_wrong_content_type_with_a_token_is_400(standin_server, content_type):
    server = await standin_server()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await server.post(CALLS, key=server.token(), content=await offer_sdp(), headers=headers)
    assert_openai_error(response, 400, "unsupported_content_type")
    assert not server.active


async def test_a_token_cannot_use_the_multipart_form(standin_server):
    server = await standin_server()
    response = await server.post(CALLS, key=server.token(), files=multipart(await offer_sdp(), REALTIME_SESSION))
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert "standard API key" in error["message"]
    assert not server.active


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
async def test_bad_sdp_is_400(standin_server, make_body):
    server = await standin_server()
    body = make_body()
    if asyncio.iscoroutine(body):
        body = await body
    response = await server.post(CALLS, key=server.token(), content=body,
                                 headers={"Content-Type": "application/sdp"})
    assert_openai_error(response, 400, "invalid_offer")
    assert not server.active
    assert server.standin.calls.all() == []  # an offer refused created nothing


async def test_cors_preflight_and_exposed_location(standin_server):
    server = await standin_server()
    async with httpx.AsyncClient() as http:
        preflight = await http.options(
            server.url(CALLS),
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

    answer = await server.post(CALLS, key=server.token(), content=await offer_sdp(),
                               headers={"Content-Type": "application/sdp", "Origin": "https://page.example"})
    assert answer.status_code == 201
    assert answer.headers["access-control-allow-origin"] == "https://page.example"
    assert "location" in answer.headers["access-control-expose-headers"].lower()
    assert answer.headers["location"].startswith("/v1/realtime/calls/rtc_")
    assert answer.text.startswith("v=0") and "a=candidate:" in answer.text and "a=end-of-candidates" in answer.text
    # The offer's peer never connects here; the call is torn down by the fixture's shutdown.
    assert len(server.active) == 1
