"""Both voice backends against httpx's in-memory transport: what each sends OpenAI to set up a call (the owner's
session, the safety identifier), how it reads the answer, and how each hangs up (Realtime: 404 = already over;
Live: ended only when the sideband confirms it, whatever the hangup answered; the sideband itself is tested over a
real WebSocket in the integration tier)."""

from __future__ import annotations

import json

import httpx
import pytest

from tokenvend.backends import LiveBackend, LiveHangup, RealtimeBackend, hangups
from tokenvend.openai_client import FailureKind, OpenAIClient, Timed, UpstreamFailure
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.settings import (
    LIVE_ALLOWED_CLIENT_EVENTS,
    LIVE_ALLOWED_SERVER_EVENTS,
    Settings,
    SettingsError,
)

BASE = {"OPENAI_SECRET_ARN": "arn:key", "HASH_SALT_SECRET_ARN": "arn:salt", "TABLE_NAME": "limits",
        "INSTRUCTION_PRESETS": json.dumps({"default": "Be kind.", "tutor": "Teach."})}
OFFER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = "v=0\r\no=- answer\r\n"
CHOICE = SessionChoice("cedar", "tutor")


class OpenAI:
    def __init__(self, *answers: httpx.Response) -> None:
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)

    def client(self) -> OpenAIClient:
        return OpenAIClient("https://openai.test/v1", http=httpx.Client(transport=httpx.MockTransport(self)))


def policy(**env: str) -> SessionPolicy:
    return SessionPolicy(Settings.from_env({**BASE, **env}))


def test_realtime_posts_the_offer_and_the_session_as_multipart() -> None:
    openai = OpenAI(httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/rtc_abc123"}))
    created = RealtimeBackend(openai.client(), policy(VOICE_BACKEND="realtime")).create_call(
        "sk-fake", OFFER, CHOICE, "who").value
    assert (created.call_id, created.answer_sdp) == ("rtc_abc123", ANSWER)
    (request,) = openai.requests
    assert str(request.url) == "https://openai.test/v1/realtime/calls"
    assert request.headers["accept"] == "application/sdp" and request.headers["openai-safety-identifier"] == "who"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content.decode()
    assert 'name="sdp"\r\nContent-Type: application/sdp\r\n\r\n' + OFFER in body
    session = json.loads(body.split('name="session"\r\nContent-Type: application/json\r\n\r\n')[1].split("\r\n--")[0])
    assert session["type"] == "realtime" and session["instructions"] == "Teach."
    assert session["audio"]["output"]["voice"] == "cedar" and "filename" not in body
    # Audio only (the default on Realtime): no channel carries a transcript, so none is paid for.
    assert "transcription" not in session["audio"]["input"]


def test_a_realtime_call_with_its_channel_allowed_is_transcribed() -> None:
    openai = OpenAI(httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/rtc_abc123"}))
    p = policy(VOICE_BACKEND="realtime", REALTIME_DATA_CHANNEL="true")
    RealtimeBackend(openai.client(), p).create_call("sk-fake", OFFER, CHOICE, "who")
    body = openai.requests[0].content.decode()
    session = json.loads(body.split('name="session"\r\nContent-Type: application/json\r\n\r\n')[1].split("\r\n--")[0])
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}


@pytest.mark.parametrize("answer", [
    httpx.Response(201, text=ANSWER),  # no Location
    httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/"}),
    httpx.Response(201, text="not sdp", headers={"Location": "/v1/realtime/calls/rtc_x"}),
    httpx.Response(200, text=ANSWER, headers={"Location": "/v1/realtime/calls/rtc_x"}),
])
def test_realtime_refuses_an_answer_it_cannot_use(answer: httpx.Response) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        RealtimeBackend(OpenAI(answer).client(), policy()).create_call("sk-fake", OFFER, CHOICE, "who")
    assert caught.value.kind is FailureKind.ERROR


def test_live_posts_json_with_a_locked_session() -> None:
    openai = OpenAI(httpx.Response(201, json={"session": {"id": "live_abc"},
                                              "transport": {"type": "webrtc", "sdp": ANSWER}}))
    p = policy(VOICE_BACKEND="live")
    created = LiveBackend(openai.client(), p).create_call("sk-fake", OFFER, CHOICE, "who").value
    assert (created.call_id, created.answer_sdp) == ("live_abc", ANSWER)
    (request,) = openai.requests
    assert str(request.url) == "https://openai.test/v1/live/sessions"
    sent = json.loads(request.content)
    assert sent["transport"] == {"type": "webrtc", "sdp": OFFER}
    assert sent["session"] == {
        "model": "gpt-live-1.1", "instructions": "Teach.", "audio": {"output": {"voice": "cedar"}},
        "client": {"data_channel": {"allowed_client_events": [],
                                    "allowed_server_events": [{"type": t} for t in LIVE_ALLOWED_SERVER_EVENTS]}},
        "safety_identifier": "who"}  # GPT-Live's own field for it, not the Realtime API's header
    assert "openai-safety-identifier" not in request.headers and request.headers["accept"] == "application/json"


def test_the_browser_may_send_nothing_that_steers_a_live_session_nor_read_it() -> None:
    assert LIVE_ALLOWED_CLIENT_EVENTS == ()
    assert {"session.usage.updated", "error"} <= set(LIVE_ALLOWED_SERVER_EVENTS)
    # Both carry the whole session resource, the owner's instructions included.
    assert not {"session.started", "session.closed", "session.updated"} & set(LIVE_ALLOWED_SERVER_EVENTS)
    assert not any(t.startswith(("response.", "session.delegation")) for t in LIVE_ALLOWED_SERVER_EVENTS)


@pytest.mark.parametrize("answer", [
    httpx.Response(201, json={"session": {"id": "rtc_x"}, "transport": {"sdp": ANSWER}}),
    httpx.Response(201, json={"session": {"id": "live_x"}, "transport": {}}),
    httpx.Response(201, text="v=0"),
    httpx.Response(200, json={"session": {"id": "live_x"}, "transport": {"sdp": ANSWER}}),
])
def test_live_refuses_an_answer_it_cannot_use(answer: httpx.Response) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        LiveBackend(OpenAI(answer).client(), policy()).create_call("sk-fake", OFFER, CHOICE, "who")
    assert caught.value.kind is FailureKind.ERROR


def test_a_realtime_hangup_path_is_escaped() -> None:
    openai = OpenAI(httpx.Response(200))
    assert hangups(openai.client())["realtime"].hang_up("sk-fake", "rtc_a/b").value is True
    (request,) = openai.requests
    assert request.url.raw_path.decode() == "/v1/realtime/calls/rtc_a%2Fb/hangup" and request.content == b""


def test_a_realtime_404_is_already_over() -> None:
    openai = OpenAI(httpx.Response(404, json={"error": {"message": "gone"}}))
    assert hangups(openai.client())["realtime"].hang_up("sk-fake", "rtc_x").value is False


class Sideband:
    """Stands in for Live's sideband: what it was asked, and what it answers (True: it closed the running session
    on our session.close; False: 404, the session was already over; a failure: it could not say)."""

    def __init__(self, answer: bool | UpstreamFailure) -> None:
        self.answer, self.asked = answer, []

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        self.asked.append(call_id)
        if isinstance(self.answer, UpstreamFailure):
            raise self.answer
        return Timed(self.answer, 5.0)


# The hangup's answer, the sideband's -> whether the session was still going (the sideband always decides).
@pytest.mark.parametrize(("hangup", "sideband", "was_running"), [
    pytest.param(200, False, True, id="hangup ended it, the sideband confirms (404)"),
    pytest.param(200, True, True, id="hangup said 2xx but the session ran on: the sideband closed it"),
    pytest.param(404, False, False, id="both say it was over"),
    pytest.param(404, True, True, id="hangup says unknown, the sideband finds it running and closes it"),
    pytest.param(400, True, True, id="hangup refused (SIP only), the sideband closes it"),
    pytest.param(409, False, False, id="hangup refused, the sideband says over"),
    pytest.param(500, True, True, id="hangup failed, the sideband closes it"),
])
def test_a_live_hangup_is_decided_by_the_sideband(hangup: int, sideband: bool, was_running: bool) -> None:
    openai = OpenAI(*[httpx.Response(hangup, json={"error": {"message": "x"}})] * 2)
    second = Sideband(sideband)
    timed = LiveHangup(openai.client(), second).hang_up("sk-fake", "live_a/b")
    assert timed.value is was_running and second.asked == ["live_a/b"]
    assert openai.requests[0].url.raw_path.decode() == "/v1/live/sessions/live_a%2Fb/hangup"


def test_a_live_hangup_is_not_done_until_the_sideband_says_so() -> None:
    openai = OpenAI(httpx.Response(200))
    failure = UpstreamFailure(FailureKind.TIMEOUT, None, "sideband timed out")
    with pytest.raises(UpstreamFailure):
        LiveHangup(openai.client(), Sideband(failure)).hang_up("sk-fake", "live_x")


def test_a_refused_key_is_not_tried_on_the_sideband() -> None:
    """The same key would be refused there too: the caller refreshes it and asks again."""
    openai = OpenAI(httpx.Response(401))
    second = Sideband(True)
    with pytest.raises(UpstreamFailure) as caught:
        LiveHangup(openai.client(), second).hang_up("sk-fake", "live_x")
    assert caught.value.kind is FailureKind.AUTH and second.asked == []


def test_hangup_failures_are_raised() -> None:
    openai = OpenAI(httpx.Response(401), httpx.Response(500), httpx.Response(500))
    hangup = hangups(openai.client())["realtime"]
    with pytest.raises(UpstreamFailure):
        hangup.hang_up("sk-fake", "rtc_x")
    with pytest.raises(UpstreamFailure):
        hangup.hang_up("sk-fake", "rtc_x")


@pytest.mark.parametrize(("env", "name"), [({"VOICE_BACKEND": "sip"}, "VOICE_BACKEND"),
                                           ({"LIVE_MODEL": "gpt-realtime"}, "LIVE_MODEL"),
                                           ({"LIVE_MODEL": "gpt-live-"}, "LIVE_MODEL"),
                                           ({"LIVE_MODEL": "gpt-live-1;rm"}, "LIVE_MODEL")])
def test_settings_refuse_a_backend_or_live_model_outside_the_rules(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE, **env})


def test_the_call_model_follows_the_backend() -> None:
    assert Settings.from_env({**BASE, "VOICE_BACKEND": "realtime"}).call_model == "gpt-realtime-2.1"
    assert Settings.from_env(BASE).call_model == "gpt-live-1.1"  # GPT-Live by default
    assert Settings.from_env({**BASE, "VOICE_BACKEND": "live", "LIVE_MODEL": "gpt-live-1"}).call_model == "gpt-live-1"
