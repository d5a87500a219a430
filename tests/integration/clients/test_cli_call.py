"""`talk` through a whole call against the fake answerer: transcripts, events, the WAV written, exit codes 0/6/7."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from realtime_client.cli import API_KEY_ENV, ExitCode, main
from tests.audio_files import wav_stats
from tests.integration.clients.fake_services import FakeServices


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


def assert_no_token_leaked(services: FakeServices, *texts: str) -> None:
    for token in services.issued:
        for text in texts:
            assert token not in text


def test_wav_as_microphone_prints_transcripts_and_writes_the_reply(
    services: FakeServices,
    speech_wav: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "reply.wav"

    code = main(["--endpoint", services.url("/token"), "--wav", str(speech_wav), "--out", str(out), "--seconds", "15"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    you, assistant = stdout.splitlines()
    assert re.fullmatch(r"you: a tone of 1\.\d seconds", you)  # the fake's VAD adds its 300 ms tail
    assert assistant == "assistant: I heard you."
    progress = [line.split(" (")[0] for line in stderr.splitlines()]
    assert progress == [
        f"talk: fetching token from {services.url('/token')}",
        "talk: token ok",
        f"talk: connecting to {services.url('/v1/realtime/calls')}",
        "talk: connected",
        f"talk: playing {speech_wav}",
        "talk: receiving audio",
        "talk: done",
    ]
    assert f"written to {out}, 48000 Hz mono 16-bit" in stderr
    stats = wav_stats(out)
    assert (stats.rate, stats.channels) == (48_000, 1)
    assert 0.9 <= stats.seconds <= 2.5
    assert stats.rms > 1500
    assert_no_token_leaked(services, stdout, stderr, caplog.text)


def test_say_with_events_prints_json_lines_only(
    services: FakeServices, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reply.wav"

    code = main(["--endpoint", services.url("/token"), "--say", "hello there", "--out", str(out), "--events"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "session.created"
    assert kinds[-1] == "output_audio_buffer.stopped"
    assert "response.done" in kinds
    assert "talk: sent text" in stderr
    assert wav_stats(out).rms > 1000
    assert_no_token_leaked(services, stdout, stderr)


def test_say_prints_the_assembled_assistant_line(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("/token"), "--say", "good morning"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert stdout == "assistant: You said: good morning\n"
    assert "s of audio, 48000 Hz" in stderr


def test_expired_token_exits_6(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("/token/expired"), "--say", "hi"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.CALL_REFUSED == 6
    assert "talk: call refused: HTTP 401: Ephemeral token expired or not found." in stderr


def test_no_audio_back_exits_7(services: FakeServices, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reply.wav"

    code = main(["--endpoint", services.url("/token/mute"), "--say", "hi", "--out", str(out), "--seconds", "5"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.NO_CONNECTION == 7
    assert "no audio came back" in stderr
    assert stdout == "assistant: You said: hi\n"
    assert not out.exists()


def test_seconds_bounds_a_call_with_nothing_to_say(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--endpoint", services.url("/token"), "--seconds", "0.5"])

    _, stderr = capsys.readouterr()
    assert code == ExitCode.NO_CONNECTION
    assert "talk: 0.5 s elapsed" in stderr


def test_server_hanging_up_after_the_answer_is_still_success(
    services: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--endpoint", services.url("/token/hangup"), "--say", "bye", "--seconds", "10"])

    stdout, stderr = capsys.readouterr()
    assert code == ExitCode.OK, stderr
    assert stdout == "assistant: You said: bye\n"
    assert "talk: the connection closed" in stderr
