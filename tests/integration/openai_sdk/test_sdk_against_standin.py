"""OpenAI's own SDK drives the stand-in: every operation the product uses, as openai-python 3.63.0 sends it, with
real SDP offers. The stand-in must take all of it and answer so that the SDK's own models parse the answers (checked
strictly: nothing the model does not declare), while still refusing what OpenAI refuses."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.live import ErrorEvent, LiveCreateResponse, SessionClosedEvent
from openai.types.realtime import ClientSecretCreateResponse
from websockets.exceptions import InvalidStatus

from local.openai_standin.faults import Fault
from local.openai_standin.server import StandIn
from tests.integration.offers import make_offer
from tests.integration.openai_sdk.conftest import WEBSOCKET_OPTIONS, sdk_client, sideband
from tests.openai_shapes import assert_answer

REALTIME_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime-2.1",
    "instructions": "Be brief.",
    "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}, "output": {"voice": "cedar"}},
    "max_output_tokens": 512,
    "truncation": {"type": "retention_ratio", "retention_ratio": 0.8, "token_limits": {"post_instructions": 2048}},
}
LIVE_SESSION: dict[str, Any] = {
    "model": "gpt-live-1.1",
    "instructions": "Be brief.",
    "audio": {"output": {"voice": "cedar"}},
    "client": {"data_channel": {"allowed_client_events": [], "allowed_server_events": [{"type": "error"}]}},
}
LIVE_ID = re.compile(r"^live_[A-Za-z0-9_-]{1,128}$")  # OpenAI's pattern for a Live session id
ENDED_WITHIN_SECONDS = 10.0


@pytest.fixture(scope="module")
def offer() -> str:
    return make_offer()


def create_realtime_call(sdk: OpenAI, offer: str, session: Any = REALTIME_SESSION) -> str:
    """The call id, read from `Location` as OpenAI's docs do (only the raw response shows the header)."""
    raw = sdk.realtime.calls.with_raw_response.create(sdp=offer, session=session)
    assert raw.status_code == 201
    assert raw.headers["content-type"] == "application/sdp"
    assert raw.parse().text.startswith("v=0")
    location = raw.headers["location"]
    assert location.startswith("/v1/realtime/calls/rtc_")
    return location.rsplit("/", 1)[1]


def create_live_session(sdk: OpenAI, offer: str) -> str:
    raw = sdk.live.with_raw_response.create(session=LIVE_SESSION, transport={"type": "webrtc", "sdp": offer})
    assert raw.status_code == 201
    created = assert_answer(LiveCreateResponse, json.loads(raw.text), "POST /v1/live/sessions's answer")
    assert raw.parse() == created  # what the SDK hands its caller is that same answer
    assert created.transport.type == "webrtc" and created.transport.sdp.startswith("v=0")
    assert LIVE_ID.match(created.session.id)
    return created.session.id


def test_a_server_side_call_is_multipart_and_hangs_up(sdk: OpenAI, fresh_standin: StandIn, offer: str) -> None:
    call_id = create_realtime_call(sdk, offer)
    record = fresh_standin.call(call_id)
    assert record is not None and record.server_side and not record.ended
    assert record.session["model"] == REALTIME_SESSION["model"]
    assert record.session["truncation"] == REALTIME_SESSION["truncation"]
    (sent,) = fresh_standin.requests_to("calls")
    assert sent.authorized and sent.headers["Accept"] == "application/sdp"
    assert sent.parts is not None and {name: (p.content_type, p.filename) for name, p in sent.parts.items()} == {
        "sdp": ("application/sdp", None), "session": ("application/json", None)}

    assert sdk.realtime.calls.hangup(call_id) is None
    assert record.wait_ended(ENDED_WITHIN_SECONDS) and record.end_reason == "hangup"
    (hangup,) = fresh_standin.requests_to("hangup")
    # What the SDK sends, and the stand-in must take: an empty body labelled as JSON.
    assert (hangup.status, hangup.body, hangup.headers["Content-Type"]) == (200, "", "application/json")
    with pytest.raises(openai.NotFoundError):
        sdk.realtime.calls.hangup(call_id)  # over now: OpenAI's 404
    assert [(h.call_id, h.status) for h in fresh_standin.hangups] == [(call_id, 200), (call_id, 404)]


def test_a_session_the_sdk_serialises_is_checked_as_strictly(sdk: OpenAI, fresh_standin: StandIn,
                                                             offer: str) -> None:
    misspelt = {**REALTIME_SESSION, "truncation": {**REALTIME_SESSION["truncation"], "retention": 0.5}}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.realtime.calls.create(sdp=offer, session=misspelt)
    assert refused.value.code == "unknown_parameter" and refused.value.param == "session.truncation.retention"
    assert fresh_standin.calls.all() == []


def test_without_a_session_the_sdk_posts_raw_sdp_which_is_for_ephemeral_keys(sdk: OpenAI, fresh_standin: StandIn,
                                                                             offer: str) -> None:
    """openai-python sends the bare offer as `application/sdp` when no session is given, whatever the key. OpenAI's
    spec takes that form from an `ek_` token (whose session it already has), and a server's standard key must send
    the multipart form with the session; an `ek_` token cannot send the multipart form."""
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.realtime.calls.create(sdp=offer)
    assert refused.value.status_code == 400 and refused.value.code == "unsupported_content_type"
    (raw,) = fresh_standin.requests_to("calls")
    assert raw.headers["Content-Type"] == "application/sdp" and raw.parts is None and raw.body == offer

    secret = sdk.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 60},
                                                session=REALTIME_SESSION)
    browser = sdk_client(fresh_standin, api_key=secret.value)
    try:
        raw_call = browser.realtime.calls.with_raw_response.create(sdp=offer)
        assert raw_call.status_code == 201
        record = fresh_standin.call(raw_call.headers["location"].rsplit("/", 1)[1])
        assert record is not None and not record.server_side
        assert record.session["instructions"] == REALTIME_SESSION["instructions"]  # from the token
        with pytest.raises(openai.AuthenticationError):
            browser.realtime.calls.create(sdp=offer, session=REALTIME_SESSION)
        with pytest.raises(openai.AuthenticationError):
            browser.realtime.calls.hangup(record.call_id)  # control takes the standard key only
        with pytest.raises(openai.AuthenticationError):  # GPT-Live has no ephemeral keys at all
            browser.live.create(session=LIVE_SESSION, transport={"type": "webrtc", "sdp": offer})
    finally:
        browser.close()
    assert [r.status for r in fresh_standin.requests_to("calls")] == [400, 201, 401]


def test_client_secrets_answer_parses_into_the_sdk_model(sdk: OpenAI, fresh_standin: StandIn) -> None:
    raw = sdk.realtime.client_secrets.with_raw_response.create(
        expires_after={"anchor": "created_at", "seconds": 120}, session=REALTIME_SESSION)
    assert raw.status_code == 200
    secret = assert_answer(ClientSecretCreateResponse, json.loads(raw.text), "client_secrets' answer")
    assert raw.parse() == secret
    assert secret.value.startswith("ek_") and fresh_standin.registry.lookup(secret.value) is not None
    assert secret.session.type == "realtime" and secret.session.model == REALTIME_SESSION["model"]
    assert secret.session.max_output_tokens == 512
    (sent,) = fresh_standin.requests
    assert sent.body == {"expires_after": {"anchor": "created_at", "seconds": 120}, "session": REALTIME_SESSION}


def test_a_live_session_is_created_and_hung_up(sdk: OpenAI, fresh_standin: StandIn, offer: str) -> None:
    session_id = create_live_session(sdk, offer)
    record = fresh_standin.call(session_id)
    assert record is not None and record.kind == "live" and not record.ended

    assert sdk.live.sessions.hangup(session_id) is None
    assert record.wait_ended(ENDED_WITHIN_SECONDS) and record.end_reason == "hangup"
    (hangup,) = fresh_standin.requests_to("live_hangup")
    assert (hangup.status, hangup.body, hangup.headers["Content-Type"]) == (200, "", "application/json")
    with pytest.raises(openai.NotFoundError):
        sdk.live.sessions.hangup(session_id)


def test_the_sideband_closes_a_live_session(sdk: OpenAI, fresh_standin: StandIn, offer: str) -> None:
    session_id = create_live_session(sdk, offer)
    record = fresh_standin.call(session_id)
    assert record is not None
    with sideband(sdk, session_id) as connection:
        # Anything but session.close is answered with Live's error event, which the SDK's model takes.
        connection.send({"type": "session.input_audio.mute", "event_id": "evt_client_1"})
        refused = assert_answer(ErrorEvent, json.loads(connection.recv_bytes()), "the sideband's error")
        assert refused.client_event_id == "evt_client_1" and refused.error.client_event_id == "evt_client_1"
        assert not record.ended

        connection.send({"type": "session.close"})
        raw = connection.recv_bytes()
    closed = assert_answer(SessionClosedEvent, json.loads(raw), "the sideband's session.closed")
    assert isinstance(connection.parse_event(raw), SessionClosedEvent)
    assert closed.reason == "close_requested" and closed.session.id == session_id
    assert closed.usage.seconds >= 0
    assert record.wait_ended(ENDED_WITHIN_SECONDS) and record.end_reason == "sideband_close"
    assert record.sideband_events == [{"type": "session.input_audio.mute", "event_id": "evt_client_1"},
                                      {"type": "session.close"}]
    (attach,) = fresh_standin.requests_to("live_attach")
    assert (attach.method, attach.status, attach.authorized) == ("GET", 101, True)

    with pytest.raises(InvalidStatus) as over, sideband(sdk, session_id):
        pass
    assert over.value.response.status_code == 404  # the session is over: the attach is refused


def test_a_live_hangup_that_says_yes_but_ends_nothing(sdk: OpenAI, fresh_standin: StandIn, offer: str) -> None:
    """The fault the leash must survive: GPT-Live's `/hangup` answers 200 and the session goes on; only the
    sideband's session.close ends it."""
    session_id = create_live_session(sdk, offer)
    record = fresh_standin.call(session_id)
    assert record is not None
    fresh_standin.faults.add(Fault(endpoint="live_hangup", status=200))

    assert sdk.live.sessions.hangup(session_id) is None  # the SDK, like any client, takes the 200 as done
    assert not record.wait_ended(0.5), "a faulted hangup must leave the session running"
    assert fresh_standin.hangups_for(session_id)[0].status == 200
    (answer,) = fresh_standin.requests_to("live_hangup")
    assert answer.status == 200

    with sdk.live.sideband.connect(session_id=session_id, graceful_close=True, max_retries=0,
                                   websocket_connection_options=WEBSOCKET_OPTIONS) as connection:
        connection.send({"type": "session.close"})
        closed = connection.recv()
    assert isinstance(closed, SessionClosedEvent) and closed.reason == "close_requested"
    assert record.wait_ended(ENDED_WITHIN_SECONDS) and record.end_reason == "sideband_close"
    (attach,) = fresh_standin.requests_to("live_attach")
    assert attach.query == {"graceful_close": "true"}  # the SDK's option, taken as it comes


def test_a_fault_aimed_at_the_sideband(sdk: OpenAI, fresh_standin: StandIn, offer: str) -> None:
    session_id = create_live_session(sdk, offer)
    record = fresh_standin.call(session_id)
    assert record is not None
    fresh_standin.faults.add(Fault(endpoint="live_attach", status=503))
    with pytest.raises(InvalidStatus) as refused, sideband(sdk, session_id):
        pass
    assert refused.value.response.status_code == 503
    assert not record.ended and fresh_standin.faults.pending() == []

    with sideband(sdk, session_id) as connection:  # the fault was for one attach only
        connection.send({"type": "session.close"})
        assert isinstance(connection.recv(), SessionClosedEvent)
    assert [r.status for r in fresh_standin.requests_to("live_attach")] == [503, 101]


@pytest.mark.parametrize("operation", ["realtime_call", "live_session"])
def test_the_wrong_key_is_refused_as_openai_does(fresh_standin: StandIn, offer: str, operation: str) -> None:
    wrong = sdk_client(fresh_standin, api_key="sk-not-the-standin-key-0000")
    try:
        with pytest.raises(openai.AuthenticationError) as refused:
            if operation == "realtime_call":
                wrong.realtime.calls.create(sdp=offer, session=REALTIME_SESSION)
            else:
                wrong.live.create(session=LIVE_SESSION, transport={"type": "webrtc", "sdp": offer})
    finally:
        wrong.close()
    assert refused.value.code == "invalid_api_key"
    assert fresh_standin.calls.all() == []
