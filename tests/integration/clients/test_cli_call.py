"""`talk` through whole calls against the real stand-in behind a fake of our API: transcripts, events, the WAV
written, the call's limit, each kind of stack (Realtime audio only, Realtime with its channel, GPT-Live), and the
exit codes 0/2/6/7."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from local.openai_standin.server import StandIn
from realtime_client.cli import API_KEY_ENV, ExitCode, main
from tests.audio_files import wav_stats, write_tone
from tests.integration.clients.fake_services import STACKS, FakeServices, media_sections


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A question followed by a long silence: `talk` is still in the call when its limit comes."""
    path = tmp_path_factory.mktemp("audio") / "question-then-quiet.wav"
    return write_tone(path, seconds=1.0, rate=16_000, lead_silence=0.2, tail_silence=8.0)


def assert_no_secret_leaked(standin: StandIn, services: FakeServices, *texts: str) -> None:
    secrets = standin.registry.values() | {call.hangup_token for call in services.calls.values()}
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_wav_as_microphone_prints_transcripts_limit_and_writes_the_reply(
    services: FakeServices,
    standin: StandIn,
    speech_wav: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "reply.wav"
    url = services.url(stack="realtime-dc")

    code = main(["--endpoint", url, "--wav", str(speech_wav), "--out", str(out), "--seconds", "15"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    you, assistant = stdout.splitlines()
    assert you.startswith("you: ")
    assert re.fullmatch(r"assistant: You said something for 1\.\d seconds; here it is played back\.", assistant)
    lines = stderr.splitlines()
    assert lines[0] == f"talk: setting up a call at {url}/calls (backend realtime)"
    assert re.fullmatch(r"talk: connected \(call rtc_\w+\)", lines[1])
    assert lines[2] == "talk: call limit: 300 s"
    assert lines[3].startswith(f"talk: playing {speech_wav}")
    assert lines[4] == "talk: receiving audio"
    assert re.fullmatch(r"talk: hung up; 29\d s of the call limit given back", lines[5])
    assert lines[6] == f"talk: done ({wav_stats(out).seconds:.1f} s of audio written to {out}, 48000 Hz mono 16-bit)"
    stats = wav_stats(out)
    assert (stats.rate, stats.channels) == (48_000, 1)
    assert 0.8 <= stats.seconds <= 3.0
    assert stats.rms > 1000
    assert_no_secret_leaked(standin, services, stdout, stderr, caplog.text)


def test_say_with_events_prints_json_lines_only(
    services: FakeServices, standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reply.wav"

    url = services.url(stack="realtime-dc")

    code = main(["--endpoint", url, "--say", "hello there", "--out", str(out), "--events"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "session.created"
    assert "response.done" in kinds and "error" not in kinds
    assert "talk: sent text" in stderr
    assert wav_stats(out).rms > 1000
    assert_no_secret_leaked(standin, services, stdout, stderr)


def test_say_prints_the_assembled_assistant_line(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("ok", "calls", stack="realtime-dc"), "--say", "good morning"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert stdout == "assistant: You wrote: good morning\n"
    assert "s of audio, 48000 Hz" in stderr


def test_live_backend_talks_with_its_own_events(
    services: FakeServices, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--endpoint", services.url(stack="live"), "--wav", str(speech_wav), "--seconds", "15"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert "(backend live)" in stderr and "talk: call limit: 300 s" in stderr
    assert "yet; carrying on" not in stderr  # ready when the channel opened: no first event is waited for
    assert "s elapsed" not in stderr  # hung up once the answer was over, not at --seconds
    you, assistant = stdout.splitlines()
    assert re.fullmatch(r"you: \(local stand-in heard 1\.\d s of speech\)", you)
    assert re.fullmatch(r"assistant: You said something for 1\.\d seconds; here it is played back\.", assistant)
    assert "server error" not in stderr  # talk sends nothing the live allow-list refuses
    usage = re.search(r"talk: GPT-Live usage: (\d+\.\d) s \(\d\.\d\d min\)", stderr)
    assert usage is not None and 1.0 <= float(usage.group(1)) <= 15.0


def test_live_backend_refuses_say_before_any_call(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    url = services.url("fail-500", stack="live")  # a call would fail: proof that none is attempted
    before = len(services.requests)

    code = main(["--endpoint", url, "--say", "hello"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.USAGE == 2
    assert "live backend, which takes no text from a client" in stderr
    assert "use --wav instead of --say" in stderr
    assert [r.path for r in services.requests[before:]] == ["/live/fail-500/options"]


def test_an_audio_only_stack_refuses_say_before_any_call(
    services: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(services.requests)

    code = main(["--endpoint", services.url("fail-500"), "--say", "hello"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert "this stack's calls are audio only (no data channel, so no text can be sent)" in stderr
    assert "use --wav instead of --say" in stderr
    assert [r.path for r in services.requests[before:]] == ["/realtime/fail-500/options"]  # no call attempted


def test_an_audio_only_call_is_answered_recorded_and_hung_up_after_the_answer(
    services: FakeServices, standin: StandIn, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reply.wav"

    code = main(["--endpoint", services.url(), "--wav", str(speech_wav), "--out", str(out), "--seconds", "15"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert stdout == ""  # no channel, no transcripts
    lines = stderr.splitlines()
    assert lines[0] == f"talk: setting up a call at {services.url('ok', 'calls')} (backend realtime, audio only)"
    assert lines[3] == "talk: no transcripts or events: the call has no data channel"
    assert "talk: receiving audio" in lines
    # Over when the answer's audio went quiet, not at --seconds: the audio alone told.
    assert "s elapsed" not in stderr and "the call ended" not in stderr
    assert re.search(r"talk: hung up; 29\d s of the call limit given back", stderr)
    assert media_sections(services.last("/calls").json()["sdp"]) == ["audio"]
    call_id = services.last("/hangup").path.split("/")[-2]
    assert standin.calls.get(call_id) is not None and standin.calls.get(call_id).server_event_types == []
    stats = wav_stats(out)
    assert stats.seconds >= 0.8 and stats.rms > 1000
    assert_no_secret_leaked(standin, services, stdout, stderr)


@pytest.mark.parametrize("stack", list(STACKS))
def test_the_leash_ending_an_answered_call_is_success(
    services: FakeServices, long_wav: Path, capsys: pytest.CaptureFixture[str], stack: str
) -> None:
    code = main(["--endpoint", services.url("leash-4", stack=stack), "--wav", str(long_wav), "--seconds", "20"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert "talk: call limit: 4 s" in stderr
    assert "talk: receiving audio" in stderr
    # No event says so on any of them (GPT-Live's session.closed is not let through): the limit and the close do.
    assert "talk: the call ended: the time limit was reached" in stderr
    if STACKS[stack][1]:
        assert "assistant: You said something" in stdout


def test_the_leash_ending_a_call_before_any_answer_is_no_audio(
    services: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--endpoint", services.url("leash-1"), "--seconds", "10"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.NO_CONNECTION == 7
    assert "talk: the call ended: the time limit was reached" in stderr
    assert "no audio came back" in stderr


@pytest.mark.parametrize("how", ["token URL", "--token-route"])
def test_the_token_route_still_works(
    services: FakeServices, standin: StandIn, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    argv = ["--endpoint", services.url("ok", "token")] if how == "token URL" else [
        "--endpoint", services.url(), "--token-route"]

    code = main([*argv, "--say", "hi"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert stderr.startswith(f"talk: fetching token from {services.url('ok', 'token')}\n")
    assert "talk: token ok" in stderr and "call limit" not in stderr
    assert stdout == "assistant: You wrote: hi\n"
    assert_no_secret_leaked(standin, services, stdout, stderr)


def test_expired_token_exits_6(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("expired", "token"), "--say", "hi"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.CALL_REFUSED == 6
    assert "talk: call refused: HTTP 401: Incorrect API key provided: ek_" in stderr


def test_a_call_that_never_connects_exits_7(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("dead"), "--seconds", "5"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.NO_CONNECTION == 7
    assert "talk: connection failed:" in stderr


def test_seconds_bounds_a_call_with_nothing_to_say(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url(), "--seconds", "0.5"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.NO_CONNECTION
    assert "talk: 0.5 s elapsed" in stderr
