"""Setting up and hanging up calls (`CallDesk`), with in-memory collaborators: nothing charged for a bad request,
the reservation given back on every upstream failure, never a call without its leash, and early hangups that need
the call's token, end it once and credit the unused seconds."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.unit.token.fakes import Backend, Clock, LeashClock, Limiter, Records, Secrets
from tokenvend.admission import Admission, RequestFacts
from tokenvend.call_ending import CallEnder
from tokenvend.call_records import CallState
from tokenvend.calls import LEASH_SLACK_SECONDS, CallDesk, check_offer, sha256
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Spend
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.policy import SessionPolicy
from tokenvend.settings import Settings

SETTINGS = Settings.from_env({
    "OPENAI_SECRET_ARN": "arn:key", "HASH_SALT_SECRET_ARN": "arn:salt", "TABLE_NAME": "limits",
    "ALLOWED_VOICES": "marin,cedar", "INSTRUCTION_PRESETS": json.dumps({"default": "Be kind.", "tutor": "Teach."}),
    "MAX_CALL_SECONDS": "20",
})
FACTS = RequestFacts(authorization=None, source_ip="203.0.113.9")
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


class Desk:
    def __init__(self) -> None:
        self.secrets, self.limiter, self.backend = Secrets(), Limiter(), Backend()
        self.records, self.leash, self.clock = Records(), LeashClock(), Clock()
        ender = CallEnder(self.secrets, self.records, {"realtime": self.backend}, clock=self.clock)  # type: ignore
        admission = Admission(self.secrets, self.limiter, allow_anonymous=True)  # type: ignore[arg-type]
        self.desk = CallDesk(SessionPolicy(SETTINGS), admission, self.limiter, self.backend,  # type: ignore
                             self.records, self.leash, ender,  # type: ignore[arg-type]
                             max_call_seconds=SETTINGS.max_call_seconds, clock=self.clock)

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
    assert d.leash.started == [("rtc_1", body["ends_at"])]
    ((key, offer, choice, safety_id),) = d.backend.created
    assert (key, offer, choice.voice, safety_id) == ("sk-fake-cached", OFFER, "cedar", record.caller)


@pytest.mark.parametrize(("sdp", "words"), [
    ("", "v=0"), ("hello", "v=0"), ("v=1\r\nm=audio 9 x\r\n", "v=0"),
    ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "m=audio"), ("v=0\r\nm=application 9 UDP/DTLS/SCTP x\r\n", "m=audio"),
])
def test_an_offer_without_audio_is_400_and_charges_nothing(sdp: str, words: str) -> None:
    d = Desk()
    error = refused(lambda: d.start(sdp))
    assert (error.status, error.code) == (400, Code.INVALID_REQUEST) and words in error.message
    assert error.message.startswith("sdp: ")
    assert (d.limiter.charged, d.backend.created, d.secrets.reads) == ([], [], [])


def test_check_offer_accepts_a_leading_newline_and_any_audio_line() -> None:
    check_offer("\r\n" + OFFER)


def test_a_voice_outside_the_policy_is_400_and_charges_nothing() -> None:
    d = Desk()
    assert refused(lambda: d.start(voice="alloy")).message.startswith("voice: ")
    assert d.limiter.charged == []


@pytest.mark.parametrize(("kind", "param", "status"), [
    (FailureKind.BUSY, None, 503), (FailureKind.ERROR, None, 502), (FailureKind.TIMEOUT, None, 504),
    (FailureKind.UNREACHABLE, None, 502),
    (FailureKind.REJECTED, "session.model", 502),  # OpenAI refused our session: the owner's to fix
    (FailureKind.REJECTED, None, 400), (FailureKind.REJECTED, "transport.sdp", 400),  # the caller's offer
])
def test_an_openai_failure_gives_the_reservation_back(kind: FailureKind, param: str | None, status: int) -> None:
    d = Desk()
    d.backend.create_failures.append(UpstreamFailure(kind, 400, "x", param=param))
    error = refused(d.start)
    assert error.status == status
    if status == 400:
        assert error.message.startswith("sdp: ")
    assert len(d.limiter.released) == 1 and d.records.items == {} and d.leash.started == []


def test_a_refused_key_is_refreshed_once() -> None:
    d = Desk()
    d.backend.create_failures.append(UpstreamFailure(FailureKind.AUTH, 401, "401"))
    d.start()
    assert [c[0] for c in d.backend.created] == ["sk-fake-cached", "sk-fake-rotated"]


def test_no_timer_means_no_call_the_call_is_hung_up_and_given_back() -> None:
    d = Desk()
    d.leash.fail_start = True
    error = refused(d.start)
    assert (error.status, error.code) == (503, Code.LEASH_UNAVAILABLE) and int(error.headers["Retry-After"]) > 0
    assert d.backend.hung_up == ["rtc_1"]
    assert d.records.get("rtc_1").state is CallState.ENDED  # type: ignore[union-attr]
    assert len(d.limiter.released) == 1


def test_no_record_means_no_call_either() -> None:
    d = Desk()
    d.records.fail_create = True
    assert refused(d.start).code == Code.LEASH_UNAVAILABLE
    assert d.backend.hung_up == ["rtc_1"] and d.leash.started == [] and len(d.limiter.released) == 1


def test_an_unleashed_call_that_cannot_be_hung_up_keeps_its_reservation_and_record() -> None:
    """Still running at OpenAI: the sweeper will end it from its record, and its minutes stay spent."""
    d = Desk()
    d.leash.fail_start = True
    d.backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 500, "x"))
    assert refused(d.start).code == Code.LEASH_UNAVAILABLE
    assert d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert d.limiter.released == []


def test_early_hangup_ends_the_call_once_and_credits_the_rest() -> None:
    d = Desk()
    body = d.start()
    d.clock.now += 8
    first = d.desk.hang_up(body["call_id"], body["hangup_token"]).body
    assert first == {"call_id": "rtc_1", "state": "ended", "credited_seconds": 12}
    assert d.backend.hung_up == ["rtc_1"] and d.leash.stopped == ["rtc_1"]
    assert d.limiter.credited == [("2030-05-17", 12)]
    assert d.records.get("rtc_1").ended_by == "caller"  # type: ignore[union-attr]
    second = d.desk.hang_up(body["call_id"], body["hangup_token"]).body
    assert second["credited_seconds"] == 0 and d.backend.hung_up == ["rtc_1"] and len(d.limiter.credited) == 1


def test_a_hangup_after_the_end_credits_nothing() -> None:
    d = Desk()
    body = d.start()
    d.clock.now += 40
    assert d.desk.hang_up(body["call_id"], body["hangup_token"]).body["credited_seconds"] == 0


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 43])
def test_a_wrong_or_missing_token_is_403_and_the_call_goes_on(token: str | None) -> None:
    d = Desk()
    body = d.start()
    error = refused(lambda: d.desk.hang_up(body["call_id"], token))
    assert (error.status, error.code) == (403, Code.INVALID_HANGUP_TOKEN)
    assert d.backend.hung_up == [] and d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]


def test_another_calls_token_is_403() -> None:
    d = Desk()
    one, two = d.start(), d.start()
    assert refused(lambda: d.desk.hang_up(one["call_id"], two["hangup_token"])).status == 403


def test_an_unknown_call_is_404() -> None:
    assert refused(lambda: Desk().desk.hang_up("rtc_nope", "x")).status == 404


def test_if_openai_cannot_hang_up_the_call_keeps_its_leash() -> None:
    d = Desk()
    body = d.start()
    d.backend.hangup_failures.append(UpstreamFailure(FailureKind.ERROR, 500, "x"))
    assert refused(lambda: d.desk.hang_up(body["call_id"], body["hangup_token"])).status == 502
    assert d.records.get("rtc_1").state is CallState.ACTIVE  # type: ignore[union-attr]
    assert d.leash.stopped == [] and d.limiter.credited == []
