"""The Python client and `talk` against the whole local system: the real function in worker processes behind the
local API Gateway, moto, the leash, and the OpenAI stand-in; once per backend."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.system import LocalSystem
from realtime_client import (
    AuthError,
    CallRefused,
    CallSetup,
    ClientError,
    EndpointNotFound,
    EndpointUnreachable,
    RateLimited,
    RealtimeSession,
    ServerError,
    fetch_token,
    fetch_token_async,
)
from realtime_client.cli import ExitCode
from realtime_client.cli import main as talk
from tests.audio_files import wav_stats, write_tone
from tokenvend.api_keys import ApiKeyStore

TALK = str(Path(sys.executable).parent / "talk")
MAX_CALL_SECONDS = 10  # the template's minimum: the leash tests wait for it


def start(backend: str) -> LocalSystem:
    parameters = {"AnonymousBurst": "30", "MaxCallSeconds": str(MAX_CALL_SECONDS), "VoiceBackend": backend}
    if backend == "realtime":
        parameters["EnableTokenRoute"] = "true"
    system = LocalSystem(port=0, parameters=parameters).start()
    probe = httpx.post(system.calls_url, json={}, timeout=30)
    if probe.status_code == 404:
        system.stop()
        pytest.skip("POST /calls answers 404 on the local system: the function has no /calls route yet")
    return system


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    running = start("realtime")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live_system() -> Iterator[LocalSystem]:
    running = start("live")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real spoken sentence when espeak-ng and sox are there (make test installs them), else a tone."""
    folder = tmp_path_factory.mktemp("speech")
    target = folder / "question.wav"
    if shutil.which("espeak-ng") and shutil.which("sox"):
        subprocess.run(["espeak-ng", "-w", str(folder / "raw.wav"), "What is the weather like today?"], check=True)
        subprocess.run(["sox", str(folder / "raw.wav"), "-r", "48000", "-c", "1", "-b", "16", str(target),
                        "pad", "0.3", "1.0"], check=True)
        return target
    return write_tone(target, seconds=1.2, lead_silence=0.3, tail_silence=1.0)


@pytest.fixture(scope="module")
def question_then_quiet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech, then silence past the call's limit: `talk` is still in the call when the leash ends it."""
    path = tmp_path_factory.mktemp("speech") / "question-then-quiet.wav"
    return write_tone(path, seconds=1.2, lead_silence=0.3, tail_silence=MAX_CALL_SECONDS + 5)


def run_talk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TALK, *args], capture_output=True, text=True, timeout=90, check=False)


# --- Realtime ---------------------------------------------------------------------------------------------------


def test_talk_sets_up_a_call_through_the_api_and_writes_the_reply(system: LocalSystem, spoken_wav: Path,
                                                                   tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    result = run_talk("--endpoint", system.api_url, "--wav", str(spoken_wav), "--out", str(reply), "--seconds", "9")

    assert result.returncode == ExitCode.OK, result.stderr
    assert f"talk: setting up a call at {system.calls_url} (backend realtime)" in result.stderr
    assert f"talk: call limit: {MAX_CALL_SECONDS} s" in result.stderr
    assert "of the call limit given back" in result.stderr
    assert "you:" in result.stdout and "assistant:" in result.stdout
    audio = wav_stats(reply)
    print(f"\nreply: {audio}")
    assert audio.seconds > 0.8, audio
    assert audio.rms > 300, audio  # 16-bit units: about -40 dBFS, far above silence (0)
    assert "ek_" not in result.stdout + result.stderr


def test_talk_say_text_with_a_route_url(system: LocalSystem, tmp_path: Path) -> None:
    reply = tmp_path / "said.wav"

    code = talk(["--endpoint", system.calls_url, "--say", "Hello there", "--out", str(reply), "--voice", "cedar"])

    assert code == ExitCode.OK
    assert wav_stats(reply).seconds > 0.3


def test_the_leash_ends_a_session_at_the_limit(system: LocalSystem) -> None:
    async def call() -> tuple[RealtimeSession, float]:
        session = RealtimeSession(CallSetup(system.api_url))
        started = time.monotonic()  # the server's clock starts at setup, inside connect()
        await session.connect()
        await asyncio.wait_for(session.ended.wait(), MAX_CALL_SECONDS + 20)
        elapsed = time.monotonic() - started
        await session.close()
        return session, elapsed

    session, elapsed = asyncio.run(call())

    print(f"\nleash: the call ended {elapsed:.2f} s after setup (limit {MAX_CALL_SECONDS} s)")
    assert session.end_reason == "expired"
    assert session.max_seconds == MAX_CALL_SECONDS
    assert session.recorder.frames_received > 100, "audio came in until the end"
    assert system.standin is not None
    record = system.standin.call(session.call_id or "")
    assert record is not None and record.end_reason == "hangup" and record.ended_at is not None
    # At OpenAI's side: set up, then hung up by the leash between 10 s and 12 s later.
    assert MAX_CALL_SECONDS <= record.ended_at - record.created_at <= MAX_CALL_SECONDS + 2
    leash_hangups = [h for h in system.standin.hangups_for(session.call_id or "") if h.status == 200]
    assert len(leash_hangups) == 1, "the leash's, exactly once (a later hangup by the client finds it gone: 404)"


def test_setup_errors_through_the_real_api(system: LocalSystem) -> None:
    async def connect(setup: CallSetup) -> None:
        async with RealtimeSession(setup):
            pass

    with pytest.raises(AuthError) as bad_key:
        asyncio.run(connect(CallSetup(system.api_url, api_key="rtv_not-a-real-key")))
    assert bad_key.value.code == "invalid_api_key"

    with pytest.raises(ClientError) as bad_voice:
        asyncio.run(connect(CallSetup(system.api_url, voice="nova")))
    assert bad_voice.value.status == 400 and "voice" in bad_voice.value.message

    assert system.stack is not None
    key, _ = ApiKeyStore(system.client("dynamodb"), system.stack.table_name).create("e2e", burst=1, rate_per_hour=1)
    asyncio.run(connect(CallSetup(system.api_url, api_key=key)))
    with pytest.raises(RateLimited) as limited:
        asyncio.run(connect(CallSetup(system.api_url, api_key=key)))
    assert limited.value.code == "rate_limited" and limited.value.retry_after >= 3000
    assert talk(["--endpoint", system.api_url, "--api-key", key, "--say", "hi"]) == ExitCode.RATE_LIMITED

    control = {"pk": {"S": "control"}}
    system.client("dynamodb").put_item(TableName=system.stack.table_name, Item={**control, "paused": {"BOOL": True}})
    try:
        with pytest.raises(ServerError) as paused:
            asyncio.run(connect(CallSetup(system.api_url)))
        assert paused.value.status == 503 and paused.value.code == "issuing_paused"
    finally:
        system.client("dynamodb").delete_item(TableName=system.stack.table_name, Key=control)

    with pytest.raises(EndpointNotFound) as wrong:
        asyncio.run(connect(CallSetup(system.api_url + "/prod")))
    assert wrong.value.message.startswith(f"POST {system.api_url}/prod/calls answered 404")

    with pytest.raises(EndpointUnreachable):
        asyncio.run(connect(CallSetup("http://127.0.0.1:9", timeout=2)))


def test_the_token_route_still_works_when_enabled(system: LocalSystem) -> None:
    token = fetch_token(system.api_url)

    assert token.token.startswith("ek_")
    assert talk(["--endpoint", system.api_url, "--token-route", "--say", "hi"]) == ExitCode.OK


async def test_expired_token_is_refused_by_the_peer(system: LocalSystem) -> None:
    token = await fetch_token_async(system.token_url)
    assert system.standin is not None
    system.standin.registry.expire(token.token)

    with pytest.raises(CallRefused) as refused:
        async with RealtimeSession(token):
            pass

    assert refused.value.status == 401


# --- GPT-Live ---------------------------------------------------------------------------------------------------


def test_talk_on_live_hears_and_answers(live_system: LocalSystem, spoken_wav: Path) -> None:
    result = run_talk("--endpoint", live_system.api_url, "--wav", str(spoken_wav), "--seconds", "9")

    assert result.returncode == ExitCode.OK, result.stderr
    assert "(backend live)" in result.stderr
    assert "you: " in result.stdout and "assistant: " in result.stdout
    assert "server error" not in result.stderr


def test_talk_on_live_refuses_text(live_system: LocalSystem) -> None:
    result = run_talk("--endpoint", live_system.api_url, "--say", "hi")

    assert result.returncode == ExitCode.USAGE
    assert "use --wav instead of --say" in result.stderr


def test_talk_on_live_says_the_limit_ended_an_answered_call(live_system: LocalSystem,
                                                             question_then_quiet: Path) -> None:
    result = run_talk("--endpoint", live_system.api_url, "--wav", str(question_then_quiet), "--seconds", "30")

    assert result.returncode == ExitCode.OK, result.stderr
    assert "talk: receiving audio" in result.stderr
    assert "talk: the call ended: the time limit was reached" in result.stderr


def test_no_token_route_on_a_default_stack(live_system: LocalSystem) -> None:
    with pytest.raises(EndpointNotFound, match="EnableTokenRoute=true"):
        fetch_token(live_system.api_url)
