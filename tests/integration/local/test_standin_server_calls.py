"""Server-side Realtime calls at the stand-in: the multipart `POST /v1/realtime/calls` with the standard key, the
strict `session` part, and `POST /v1/realtime/calls/{call_id}/hangup`, over real HTTP and WebRTC."""

from __future__ import annotations

import re
import time

import pytest

from local.openai_standin.endpoint import Hangup
from local.openai_standin.faults import Fault
from tests.integration.local.conftest import REALTIME_SESSION, assert_openai_error, multipart, offer_sdp

pytestmark = pytest.mark.usefixtures("no_leaks")

CALLS = "/v1/realtime/calls"


async def test_a_server_side_call_runs_the_session_it_was_given(standin_server, peer_client):
    server = await standin_server()
    session = {**REALTIME_SESSION, "instructions": "You are a patient tutor.",
               "audio": {**REALTIME_SESSION["audio"], "output": {"voice": "cedar"}}}
    client = peer_client()
    call_id = await client.connect_server_side(server, session)
    assert re.fullmatch(r"rtc_[0-9a-f]{32}", call_id)

    _, created = await client.wait_for("session.created")
    assert created["session"]["instructions"] == "You are a patient tutor."
    assert created["session"]["audio"]["output"]["voice"] == "cedar"
    assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"  # defaults filled in
    client.send({"type": "response.create"})
    _, done = await client.wait_for("response.done")
    assert done["response"]["status"] == "completed"

    record = server.standin.call(call_id)
    assert record is not None and record.server_side and record.kind == "realtime" and not record.ended
    (sent,) = server.standin.requests_to("calls")
    assert sent.authorized and sent.status == 201 and sent.path == CALLS
    assert sent.body["session"] == session and sent.body["sdp"].startswith("v=0")
    assert "Authorization" not in sent.headers and server.key not in repr(sent)


async def test_the_answer_carries_location_and_no_session_part_means_defaults(standin_server):
    server = await standin_server()
    response = await server.post(CALLS, files=multipart(await offer_sdp()), headers={"Accept": "application/sdp"})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/sdp"
    assert re.fullmatch(r"/v1/realtime/calls/rtc_[0-9a-f]{32}", response.headers["location"])
    assert response.text.startswith("v=0") and "a=end-of-candidates" in response.text
    call_id = response.headers["location"].rsplit("/", 1)[1]
    record = server.standin.call(call_id)
    assert record is not None and record.session["model"] == "gpt-realtime"


async def test_hangup_ends_the_call_and_the_browser_sees_it_within_a_second(standin_server, peer_client):
    server = await standin_server()
    client = peer_client()
    call_id = await client.connect_server_side(server)
    await client.wait_for("session.created")

    began = time.monotonic()
    response = await server.hang_up(call_id)
    assert response.status_code == 200 and response.content == b""
    await client.wait_ended(timeout=1.0)
    assert time.monotonic() - began < 1.5
    assert call_id not in server.active
    record = server.standin.call(call_id)
    assert record is not None and record.end_reason == "hangup"
    assert "error" not in client.types()  # Realtime has no terminal event: the connection just ends

    again = await server.hang_up(call_id)
    assert_openai_error(again, 404, "call_not_found")
    assert server.standin.hangups_for(call_id) == [Hangup(call_id, 200, "hangup"), Hangup(call_id, 404, "hangup")]


async def test_a_browser_call_can_be_hung_up_by_the_server_too(standin_server, peer_client):
    server = await standin_server()
    client = peer_client()
    call_id = await client.connect_with_token(server, server.token())
    assert (await server.hang_up(call_id)).status_code == 200
    await client.wait_ended(timeout=1.0)


@pytest.mark.parametrize("call_id", ["rtc_0123456789abcdef0123456789abcdef", "rtc_x", "live_0123456789abcdef"])
async def test_hangup_of_an_unknown_call_is_404(standin_server, call_id):
    server = await standin_server()
    response = await server.post(f"{CALLS}/{call_id}/hangup")
    error = assert_openai_error(response, 404, "call_not_found")
    assert error["type"] == "invalid_request_error" and call_id in error["message"]
    assert server.standin.hangups_for(call_id) == [Hangup(call_id, 404, "hangup")]


async def test_hangup_takes_the_standard_key_only_and_a_refusal_leaves_the_call_alone(standin_server):
    server = await standin_server()
    created = await server.post(CALLS, files=multipart(await offer_sdp(), REALTIME_SESSION))
    call_id = created.headers["location"].rsplit("/", 1)[1]
    token = server.token()
    for key in (token, "sk-wrong-key-0000000000", ""):
        response = await server.hang_up(call_id, key=key)
        error = assert_openai_error(response, 401, "invalid_api_key")
        assert "sk-wrong-key-0000000000" not in error["message"] and token not in error["message"]
    assert call_id in server.active
    assert [h.status for h in server.standin.hangups_for(call_id)] == [401, 401, 401]
    assert [r.authorized for r in server.standin.requests_to("hangup")] == [False, False, False]


# -- strict requests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("session", "param", "code"), [
    ({**REALTIME_SESSION, "temperature": 0.8}, "session.temperature", "unknown_parameter"),
    ({"model": "gpt-realtime"}, "session.type", "missing_required_parameter"),
    ({"type": "transcription"}, "session.type", "invalid_value"),
    ({"type": "realtime", "audio": {"output": {"voice": "cedar", "pitch": 2}}}, "session.audio.output.pitch",
     "unknown_parameter"),
    ({"type": "realtime", "output_modalities": "audio"}, "session.output_modalities", "invalid_type"),
    ({"type": "realtime", "max_output_tokens": 5000}, "session.max_output_tokens", "invalid_value"),
    ({"type": "realtime", "modalities": ["audio"]}, "session.modalities", "unknown_parameter"),  # the beta shape
    ([{"type": "realtime"}], "session", "invalid_type"),
])
async def test_the_session_part_is_checked_strictly(standin_server, session, param, code):
    server = await standin_server()
    response = await server.post(CALLS, files=multipart(await offer_sdp(), session))
    assert_openai_error(response, 400, code, param)
    assert not server.active and server.standin.calls.all() == []


@pytest.mark.parametrize(("files", "code", "param"), [
    ({"sdp": None, "session": (None, '{"type": "realtime"}', "application/json")}, "missing_required_parameter",
     "sdp"),
    ({"session": (None, "{not json", "application/json")}, "invalid_json", "session"),
    ({"session": (None, '{"type": "realtime"}', "text/plain")}, "invalid_content_type", "session"),
    ({"sdp": "text/plain"}, "invalid_content_type", "sdp"),
    ({"model": (None, "gpt-realtime", "text/plain")}, "unknown_parameter", "model"),
])
async def test_the_multipart_body_is_checked(standin_server, files, code, param):
    server = await standin_server()
    body = multipart(await offer_sdp(), REALTIME_SESSION)
    for name, value in files.items():
        if value is None:
            body.pop(name)
        elif name == "sdp":
            body["sdp"] = (None, body["sdp"][1], value)
        else:
            body[name] = value
    response = await server.post(CALLS, files=body)
    assert_openai_error(response, 400, code, param)
    assert not server.active


@pytest.mark.parametrize(("content", "content_type", "code"), [
    ("OFFER", "application/sdp", "unsupported_content_type"),  # the raw form is for ek_ tokens only
    ("{}", "application/json", "unsupported_content_type"),
    ("OFFER", "multipart/form-data; boundary=nowhere", "invalid_multipart"),
])
async def test_the_standard_key_needs_a_well_formed_multipart_body(standin_server, content, content_type, code):
    server = await standin_server()
    body = (await offer_sdp()) if content == "OFFER" else content
    response = await server.post(CALLS, content=body, headers={"Content-Type": content_type})
    assert_openai_error(response, 400, code)
    assert not server.active


async def test_a_bad_offer_in_the_sdp_part_is_400(standin_server):
    server = await standin_server()
    response = await server.post(CALLS, files=multipart("v=0\r\n", REALTIME_SESSION))
    assert_openai_error(response, 400, "invalid_offer")


async def test_a_wrong_key_is_401_quoting_only_a_masked_fragment(standin_server):
    server = await standin_server()
    wrong = "sk-proj-wrongwrongwrong-0123456789"
    response = await server.post(CALLS, key=wrong, files=multipart(await offer_sdp(), REALTIME_SESSION))
    error = assert_openai_error(response, 401, "invalid_api_key")
    assert wrong not in error["message"] and "sk-pro***6789" in error["message"]
    (sent,) = server.standin.requests_to("calls")
    assert not sent.authorized and sent.status == 401


async def test_a_rotated_key_applies_to_calls_and_hangups_too(standin_server):
    server = await standin_server()
    server.standin.client_secrets.api_key = "sk-rotated-0000000000000000"
    refused = await server.post(CALLS, files=multipart(await offer_sdp(), REALTIME_SESSION))
    assert_openai_error(refused, 401, "invalid_api_key")
    created = await server.post(CALLS, key="sk-rotated-0000000000000000",
                                files=multipart(await offer_sdp(), REALTIME_SESSION))
    assert created.status_code == 201


# -- faults per endpoint --------------------------------------------------------------------------------------


async def test_faults_hit_only_their_endpoint_in_order(standin_server):
    server = await standin_server()
    server.standin.faults.add(Fault(status=503, endpoint="calls", headers={"Retry-After": "4"}))
    server.standin.faults.add(Fault(status=500, times=3, endpoint="hangup"))
    minted = await server.post("/v1/realtime/client_secrets", json={"session": {"type": "realtime"}})
    assert minted.status_code == 200  # client_secrets has no fault queued

    busy = await server.post(CALLS, files=multipart(await offer_sdp(), REALTIME_SESSION))
    assert_openai_error(busy, 503, "injected")
    assert busy.headers["retry-after"] == "4"
    created = await server.post(CALLS, files=multipart(await offer_sdp(), REALTIME_SESSION))
    call_id = created.headers["location"].rsplit("/", 1)[1]

    statuses = [(await server.hang_up(call_id)).status_code for _ in range(4)]
    assert statuses == [500, 500, 500, 200]
    assert [h.status for h in server.standin.hangups_for(call_id)] == statuses
    record = server.standin.call(call_id)
    assert record is not None and record.end_reason == "hangup"
    assert server.standin.faults.pending() == []


async def test_a_slow_openai_that_proceeds_still_creates_the_call(standin_server):
    """A call created after its caller gave up is one the caller never learns the id of."""
    server = await standin_server()
    server.standin.faults.add(Fault(delay_seconds=0.3, proceed=True, endpoint="calls"))
    began = time.monotonic()
    response = await server.post(CALLS, files=multipart(await offer_sdp(), REALTIME_SESSION))
    assert response.status_code == 201 and time.monotonic() - began >= 0.3
    assert len(server.active) == 1


async def test_a_dropped_connection(standin_server):
    server = await standin_server()
    server.standin.faults.add(Fault(drop=True, endpoint="hangup"))
    with pytest.raises(Exception):  # noqa: B017 - httpx names it RemoteProtocolError or ReadError by timing
        await server.hang_up("rtc_whatever")
    assert server.standin.hangups_for("rtc_whatever") == [Hangup("rtc_whatever", 0, "hangup")]
