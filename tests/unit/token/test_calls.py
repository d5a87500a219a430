"""Setting up and hanging up calls (`CallDesk`), with in-memory collaborators: nothing charged for a bad request, a
settlement for every way out after the charge (all given back, a refused offer's slot kept, a maybe-created call's
cost kept), never a call without its leash, and early hangups that need the call's token, end it once, credit the
unused seconds (never GPT-Live's 15 s minimum) and leave the timer running."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.unit.token.fakes import Backend, CallTimer, Clock, Limiter, Records, Secrets
from tokenvend.admission import Admission, RequestFacts
from tokenvend.call_ending import CallEnder
from tokenvend.call_records import CallState
from tokenvend.calls import LEASH_SLACK_SECONDS, CallDesk, sha256
from tokenvend.errors import ApiError, Code
from tokenvend.human_check import HumanCheck
from tokenvend.limiter import Spend
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.policy import SessionPolicy
from tokenvend.settings import Settings

SETTINGS = Settings.from_env({
    "OPENAI_SECRET_ARN": "arn:key", "HASH_SALT_SECRET_ARN": "arn:salt", "TABLE_NAME": "limits",
    "ALLOWED_VOICES": "marin,cedar", "INSTRUCTION_PRESETS": json.dumps({"default": "Be kind.", "tutor": "Teach."}),
    "MAX_CALL_SECONDS": "20", "VOICE_BACKEND": "realtime",
})
FACTS = RequestFacts(authorization=None, source_ip="203.0.113.9")
OFFER = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\n"
         "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\n"
         "a=setup:actpass\r\n")
CHANNEL = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"
SLOT_KEPT, SLOT_BACK = True, False


class Desk:
    def __init__(self, backend: str = "realtime", *, data_channel: bool = False) -> None:
        self.secrets, self.limiter, self.backend = Secrets(), Limiter(), Backend(name=backend)
        self.records, self.timer, self.clock = Records(), CallTimer(), Clock()
        ender = CallEnder(self.secrets, self.records, {backend: self.backend}, clock=self.clock)  # type: ignore
        admission = Admission(self.secrets, self.limiter, allow_anonymous=True)  # type: ignore[arg-type]
        self.desk = CallDesk(SessionPolicy(SETTINGS), admission, self.limiter, self.secrets,  # type: ignore
                             self.backend, self.records, self.timer, ender,  # type: ignore[arg-type]
                             HumanCheck(None, self.limiter, 0),  # type: ignore[arg-type]
                             max_call_seconds=SETTINGS.max_call_seconds, data_channel=data_channel,
                             clock=self.clock)

    def start(self, sdp: str = OFFER, voice: str | None = None, preset: str | None = None) -> dict:
        return self.desk.start(FACTS, sdp, voice, preset).body


def refused(action: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        action()
    return caught.value


def test_a_call_is_reserved_created_recorded_and_leashed() -> None:
    d = Desk()
    answer = d.desk.start(FACTS, OFFER, "cedar", "tutor")
    body = answer.body
    assert body["call_id"] == "rtc_1" and body["sdp"].startswith("v=0")
    assert body["ends_at"] == 1_900_000_000 + 20 and body["max_seconds"] == 20
    assert body["session"] == {"model": SETTINGS.model, "voice": "cedar", "preset": "tutor"}
    assert len(body["hangup_token"]) >= 40
    assert answer.headers["RateLimit-Remaining"] == "2"
    assert d.limiter.charged == [Spend.call(SETTINGS.limits, 20 + LEASH_SLACK_SECONDS)]
    record = d.records.get("rtc_1")
    assert record is not None and record.state is CallState.ACTIVE and record.ends_at == body["ends_at"]
    assert record.hangup_token_sha256 == sha256(body["hangup_token"]) != body["hangup_token"]
    assert record.reserved_seconds == 25 and len(record.caller) == 32
    assert d.timer.started == [("rtc_1", "realtime", body["ends_at"])]
    ((key, offer, choice, safety_id),) = d.backend.created
    assert (key, offer, choice.voice, safety_id) == ("sk-fake-cached", OFFER, "cedar", record.caller)


def test_the_offers_policy_is_checked_before_anything_is_charged() -> None:
    d = Desk()
    error = refused(lambda: d.start(OFFER + CHANNEL))
    assert (error.status, error.code) == (400, Code.INVALID_REQUEST) and error.message.startswith("sdp: ")
    assert (d.limiter.charged, d.backend.created, d.secrets.reads) == ([], [], [])


def test_a_data_channel_is_taken_where_the_owner_allows_it() -> None:
    d = Desk(data_channel=True)
    assert d.start(OFFER + CHANNEL)["call_id"] == "rtc_1"


def test_a_voice_outside_the_policy_is_400_and_charges_nothing() -> None:
    d = Desk()
    assert refused(lambda: d.start(voice="alloy")).message.startswith("voice: ")
    assert d.limiter.charged == []


# (kind, status, OpenAI's param, may OpenAI have acted) -> (our status, seconds kept, caller's slot kept)
SETTLEMENTS = [
    pytest.param(FailureKind.BUSY, 429, None, False, 503, 0, SLOT_BACK, id="busy"),
    pytest.param(FailureKind.AUTH, 401, None, False, 502, 0, SLOT_BACK, id="key refused twice"),
    pytest.param(FailureKind.ERROR, 500, None, False, 502, 0, SLOT_BACK, id="openai's own 500"),
    pytest.param(FailureKind.UNREACHABLE, None, None, False, 502, 0, SLOT_BACK, id="never connected"),
    pytest.param(FailureKind.REJECTED, 400, "session.model", False, 502, 0, SLOT_BACK, id="our session refused"),
    pytest.param(FailureKind.REJECTED, 400, None, False, 400, 0, SLOT_KEPT, id="offer refused"),
    pytest.param(FailureKind.REJECTED, 400, "transport.sdp", False, 400, 0, SLOT_KEPT, id="offer refused, param"),
    pytest.param(FailureKind.TIMEOUT, None, None, True, 504, "minimum", SLOT_KEPT, id="timed out after sending"),
    pytest.param(FailureKind.ERROR, 502, None, True, 502, "minimum", SLOT_KEPT, id="a gateway's 502"),
    pytest.param(FailureKind.ERROR, 201, None, True, 502, "minimum", SLOT_KEPT, id="an unreadable 201"),
]


@pytest.mark.parametrize("backend", ["realtime", "live"])
@pytest.mark.parametrize(("kind", "status", "param", "acted", "answer", "kept", "slot"), SETTLEMENTS)
def test_every_openai_failure_is_settled(backend: str, kind: FailureKind, status: int | None, param: str | None,
                                         acted: bool, answer: int, kept: int | str, slot: bool) -> None:
    d = Desk(backend)
    d.backend.create_failures.extend([UpstreamFailure(kind, status, "x", param=param, may_have_acted=acted)] * 2)
    error = refused(d.start)
    assert error.status == answer
    if answer == 400:
        assert error.message.startswith("sdp: ")
    minimum = {"realtime": 0, "live": 15}[backend]
    assert d.limiter.released == [(d.limiter.charged[0], minimum if kept == "minimum" else kept, slot)]
    assert d.records.items == {} and d.timer.started == []


@pytest.mark.parametrize("backend", ["realtime", "live"])
def test_an_unexpected_exception_while_creating_keeps_what_a_call_may_cost(backend: str) -> None:
    """A bug, or an input our request builder chokes on after the charge: whether the request went out is unknown,
    so the day keeps what an unconnected call costs and the caller's slot stays spent. Nothing else."""
    d = Desk(backend)
    d.backend.create_failures.append(UnicodeEncodeError("ascii", "\udcff", 0, 1, "surrogates not allowed"))
    with pytest.raises(UnicodeEncodeError):
        d.start()
    assert d.limiter.released == [(d.limiter.charged[0], {"realtime": 0, "live": 15}[backend], SLOT_KEPT)]


def test_a_refused_key_is_refreshed_once() -> None:
    d = Desk()
    d.backend.create_failures.append(UpstreamFailure(FailureKind.AUTH, 401, "401"))
    d.start()
    assert [c[0] for c in d.backend.created] == ["sk-fake-cached", "sk-fake-rotated"]


def test_no_timer_means_no_call_the_call_is_hung_up_and_given_back() -> None:
    d = Desk()
    d.timer.fail_start = True
    error = refused(d.start)
    assert (error.status, error.code) == (503, Code.LEASH_UNAVAILABLE) and int(error.headers["Retry-After"]) > 0
    assert d.backend.hung_up == ["rtc_1"]
    assert d.records.get("rtc_1").state is CallState.ENDED  # type: ignore[union-attr]
    assert d.limiter.released == [(d.limiter.charged[0], 0, SLOT_BACK)]


def test_no_record_means_no_call_either_but_its_timer_still_runs() -> None:
    d = Desk("live")
    d.records.fail_create = True
    assert refused(d.start).code == Code.LEASH_UNAVAILABLE
    assert d.backend.hung_up == ["rtc_1"]
    assert d.timer.started == [("rtc_1", "live", 1_900_000_000 + 20)]  # it finds the call over at its end
    assert d.limiter.released == [(d.limiter.charged[0], 15, SLOT_BACK)]  # the Live session's 15 s stay spent


def test_an_unleashed_call_that_cannot_be_hung_up_keeps_its_reservation_and_record() -> None:
    """Still running at OpenAI: the sweeper will end it from its record, and its minutes stay spent."""
    d = Desk()
    d.timer.fail_start = True
    d.backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 500, "x"))
    assert refused(d.start).code == Code.LEASH_UNAVAILABLE
    assert d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert d.limiter.released == []


def test_early_hangup_ends_the_call_once_credits_the_rest_and_leaves_the_timer() -> None:
    d = Desk()
    body = d.start()
    d.clock.now += 8
    first = d.desk.hang_up(body["call_id"], body["hangup_token"]).body
    assert first == {"call_id": "rtc_1", "state": "ended", "credited_seconds": 12}
    assert d.backend.hung_up == ["rtc_1"] and d.timer.started == [("rtc_1", "realtime", body["ends_at"])]
    assert d.limiter.credited == [("2030-05-17", 12)]
    assert d.records.get("rtc_1").ended_by == "caller"  # type: ignore[union-attr]
    second = d.desk.hang_up(body["call_id"], body["hangup_token"]).body
    assert second["credited_seconds"] == 0 and d.backend.hung_up == ["rtc_1"] and len(d.limiter.credited) == 1


@pytest.mark.parametrize(("after", "credited"), [(1, 5), (4, 5), (10, 5), (14, 5), (16, 4), (19, 1), (25, 0)])
def test_an_early_live_hangup_keeps_openais_15_second_minimum(after: int, credited: int) -> None:
    d = Desk("live")
    body = d.start()
    d.clock.now += after
    assert d.desk.hang_up(body["call_id"], body["hangup_token"]).body["credited_seconds"] == credited


def test_a_hangup_after_the_end_credits_nothing() -> None:
    d = Desk()
    body = d.start()
    d.clock.now += 40
    assert d.desk.hang_up(body["call_id"], body["hangup_token"]).body["credited_seconds"] == 0


@pytest.mark.parametrize("token", [None, "", "x" * 43, "y" * 43])
def test_a_wrong_or_missing_token_is_403_and_the_call_goes_on(token: str | None) -> None:
    d = Desk()
    body = d.start()
    error = refused(lambda: d.desk.hang_up(body["call_id"], token))
    assert (error.status, error.code) == (403, Code.INVALID_HANGUP_TOKEN)
    assert d.backend.hung_up == [] and d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]


@pytest.mark.parametrize("token", ["wrong", "x" * 42, "x" * 44, "x" * 42 + "=", "x" * 42 + "\u00e9", " " + "x" * 42])
def test_a_malformed_token_is_400_before_any_read(token: str) -> None:
    d = Desk()
    body = d.start()
    d.records.items.clear()  # a read would now say 404: the 400 proves none happened
    error = refused(lambda: d.desk.hang_up(body["call_id"], token))
    assert (error.status, error.code) == (400, Code.INVALID_REQUEST) and error.message.startswith("hangup_token: ")


@pytest.mark.parametrize("call_id", ["", "x", "rtc_", "rtc_a/b", "call#rtc_1", "rtc_" + "a" * 129, "sess_1"])
def test_a_call_id_no_openai_call_has_is_404_without_a_read(call_id: str) -> None:
    d = Desk()
    body = d.start()
    d.records.fail_create = True
    assert refused(lambda: d.desk.hang_up(call_id, body["hangup_token"])).status == 404


def test_another_calls_token_is_403() -> None:
    d = Desk()
    one, two = d.start(), d.start()
    assert refused(lambda: d.desk.hang_up(one["call_id"], two["hangup_token"])).status == 403


def test_an_unknown_call_is_404() -> None:
    assert refused(lambda: Desk().desk.hang_up("rtc_nope", "x" * 43)).status == 404


def test_if_openai_cannot_hang_up_the_call_keeps_its_leash() -> None:
    d = Desk()
    body = d.start()
    d.backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 500, "x"))
    assert refused(lambda: d.desk.hang_up(body["call_id"], body["hangup_token"])).status == 502
    assert d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert d.limiter.credited == []
