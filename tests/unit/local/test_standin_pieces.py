"""The stand-in's pure pieces: fault queues per endpoint, the strict schemas, turn detection and the voice track."""

from __future__ import annotations

import json
import math
from array import array
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from local.openai_standin.audio import FRAME_BYTES, SAMPLE_RATE, OutputTrack
from local.openai_standin.faults import Fault, FaultPlan
from local.openai_standin.live_schema import validate_live_create
from local.openai_standin.schema import RequestError, validate_call_session
from local.openai_standin.vad import Listener, Started, Utterance, VadSettings


def test_faults_queue_per_endpoint_and_count_down() -> None:
    plan = FaultPlan()
    plan.add(Fault(status=500, times=2, endpoint="hangup"))
    plan.add(Fault(status=503, endpoint="hangup"))
    plan.add(Fault(status=429))
    assert plan.take("calls") is None
    assert [plan.take("hangup").status for _ in range(3)] == [500, 500, 503]  # type: ignore[union-attr]
    assert plan.take("hangup") is None
    assert [f.endpoint for f in plan.pending()] == ["client_secrets"]
    plan.clear("client_secrets")
    assert plan.take() is None


@pytest.mark.parametrize("spec", [{"endpoint": "tokens"}, {"status": 500, "retries": 1}, "500"])
def test_a_fault_spec_with_a_typo_is_refused(spec: Any) -> None:
    with pytest.raises(ValueError):
        Fault.from_json(spec)


def test_the_call_session_part_names_the_field_as_openai_does() -> None:
    validate_call_session({"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
    with pytest.raises(RequestError) as refused:
        validate_call_session({"type": "realtime", "voice": "cedar"})
    assert (refused.value.param, refused.value.code) == ("session.voice", "unknown_parameter")
    with pytest.raises(RequestError) as untyped:
        validate_call_session({})
    assert untyped.value.param == "session.type"


def test_the_live_create_body() -> None:
    good = {"session": {"model": "gpt-live-1", "client": {"data_channel": {
        "allowed_client_events": [], "allowed_server_events": [{"type": "response.event",
                                                                 "response_event": "response.done"}]}}},
        "transport": {"type": "webrtc", "sdp": "v=0"}}
    validate_live_create(good)
    with pytest.raises(RequestError) as selector:
        validate_live_create({**good, "session": {"model": "gpt-live-1", "client": {"data_channel": {
            "allowed_server_events": [{"type": "response.event"}]}}}})
    assert selector.value.param == "session.client.data_channel.allowed_server_events"
    with pytest.raises(RequestError) as model:
        validate_live_create({**good, "session": {"model": "gpt-live-2"}})
    assert model.value.param == "session.model"


async def test_a_2xx_fault_is_an_empty_yes_and_an_error_fault_is_openai_s_envelope() -> None:
    request = make_mocked_request("POST", "/v1/live/sessions/live_x/hangup")
    said_yes = await Fault(status=200, endpoint="live_hangup").respond(request)
    assert said_yes is not None and said_yes.status == 200
    assert isinstance(said_yes, web.Response) and said_yes.body is None  # OpenAI's hangup success: no body at all
    refused = await Fault(status=503, endpoint="live_attach").respond(request)
    assert isinstance(refused, web.Response) and refused.status == 503 and refused.body is not None
    assert json.loads(refused.body)["error"]["type"] == "server_error"  # type: ignore[arg-type]
    explicit = await Fault(status=200, body={"error": {"message": "odd"}}).respond(request)
    assert isinstance(explicit, web.Response) and json.loads(explicit.body) == {"error": {"message": "odd"}}  # type: ignore[arg-type]


def test_a_live_session_takes_the_sdk_s_other_startup_fields() -> None:
    transport = {"type": "webrtc", "sdp": "v=0"}
    session = {"model": "gpt-live-1.1", "safety_identifier": "caller-hash", "idle_timeout_s": 30,
               "wake_policy": {"type": "speech", "vad_threshold": 0.6}}
    validate_live_create({"session": session, "transport": transport})
    validate_live_create({"session": {**session, "safety_identifier": None}, "transport": transport})
    for field, value in (("idle_timeout_s", 0), ("idle_timeout_s", 1.5), ("wake_policy", {"type": "noise"}),
                         ("wake_policy", {"type": "speech", "vad_threshold": 2}),
                         ("wake_policy", {"type": "speech", "threshold": 0.5})):
        with pytest.raises(RequestError) as refused:
            validate_live_create({"session": {**session, field: value}, "transport": transport})
        assert refused.value.param is not None and refused.value.param.startswith(f"session.{field}")


def test_truncation_is_openai_s_shape_and_a_misspelt_key_is_named() -> None:
    ratio = {"type": "retention_ratio", "retention_ratio": 0.8, "token_limits": {"post_instructions": 4096}}
    for truncation in ("auto", "disabled", ratio, {"type": "retention_ratio", "retention_ratio": 0}):
        validate_call_session({"type": "realtime", "truncation": truncation})
    for misspelt, param in (({**ratio, "retention": 0.5}, "session.truncation.retention"),
                            ({**ratio, "token_limits": {"post_instruction": 1}},
                             "session.truncation.token_limits.post_instruction")):
        with pytest.raises(RequestError) as unknown:
            validate_call_session({"type": "realtime", "truncation": misspelt})
        assert (unknown.value.code, unknown.value.param) == ("unknown_parameter", param)
    for wrong in ({**ratio, "retention_ratio": 1.5}, {"type": "retention_ratio"}, "never",
                  {**ratio, "token_limits": {"post_instructions": 0}}):
        with pytest.raises(RequestError) as refused:
            validate_call_session({"type": "realtime", "truncation": wrong})
        assert refused.value.param is not None and refused.value.param.startswith("session.truncation")


def _frames(level: float, seconds: float) -> list[bytes]:
    count = int(seconds * SAMPLE_RATE)
    samples = array("h", (int(32767 * level * math.sin(2 * math.pi * 200 * n / SAMPLE_RATE)) for n in range(count)))
    pcm = samples.tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def test_the_listener_cuts_an_utterance_with_its_padding() -> None:
    listener = Listener(VadSettings())
    heard = [listener.feed(f) for f in _frames(0, 1.0) + _frames(0.3, 0.6) + _frames(0, 1.0)]
    started = [h for h in heard if isinstance(h, Started)]
    utterances = [h for h in heard if isinstance(h, Utterance)]
    assert len(started) == 1 and len(utterances) == 1
    assert started[0].audio_start_ms == 1000 - 300  # the onset less the prefix padding
    said = utterances[0]
    assert said.speech_seconds == pytest.approx(0.6, abs=0.03)
    assert said.audio_end_ms >= 1600 + 300
    assert len(said.pcm) / 2 / SAMPLE_RATE == pytest.approx(0.3 + 0.6 + 0.12, abs=0.05)


def test_without_turn_detection_nothing_is_heard() -> None:
    listener = Listener(None)
    assert {listener.feed(f) for f in _frames(0.3, 1.0)} == {None}


async def test_the_voice_plays_queued_audio_in_order_then_silence() -> None:
    track = OutputTrack()
    first = track.play(b"\x01\x00" * (FRAME_BYTES // 2 + 10), "one")
    second = track.play(b"\x02\x00" * 10, "two")
    chunks = [track.next_chunk() for _ in range(4)]
    assert chunks[0] == b"\x01\x00" * (FRAME_BYTES // 2)
    assert chunks[1] == b"\x01\x00" * 10 and first.finished.result() == "done"
    assert chunks[2] == b"\x02\x00" * 10 and second.finished.result() == "done"
    assert chunks[3] == bytes(FRAME_BYTES)
    third = track.play(b"\x03\x00" * FRAME_BYTES, "three")
    assert [p.tag for p in track.clear()] == ["three"] and third.finished.result() == "cleared"
    track.stop()
    assert track.play(b"\x04\x00", "late").finished.result() == "stopped"
