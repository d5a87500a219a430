"""The Python client and `talk` against the whole local system: the real function in worker processes behind the
local API Gateway, moto, the leash, and the OpenAI stand-in; on Realtime's audio-only default, on Realtime with its
data channel, and on GPT-Live (the stack's default)."""

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


def start(**parameters: str) -> LocalSystem:
    return LocalSystem(port=0, parameters={"AnonymousBurst": "30", "MaxCallSeconds": str(MAX_CALL_SECONDS),
                                           **parameters}).start()


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    """Realtime as deployed by default (audio-only calls), with the old token route on."""
    running = start(VoiceBackend="realtime", EnableTokenRoute="true")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel_system() -> Iterator[LocalSystem]:
    """Realtime with RealtimeDataChannel=true: transcripts, and the text path."""
    running = start(VoiceBackend="realtime", RealtimeDataChannel="true")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live_system() -> Iterator[LocalSystem]:
    running = start()  # GPT-Live, the default
    assert httpx.get(f"{running.api_url}/options", timeout=10).json()["backend"] == "live"
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


def test_talk_sets_up_an_audio_only_call_through_the_api_and_writes_the_reply(system: LocalSystem, spoken_wav: Path,
                                                                               tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    result = run_talk("--endpoint", system.api_url, "--wav", str(spoken_wav), "--out", str(reply), "--seconds", "9")

    assert result.returncode == ExitCode.OK, result.stderr
    assert f"talk: setting up a call at {system.calls_url} (backend realtime, audio only)" in result.stderr
    assert "talk: no transcripts or events: the call has no data channel" in result.stderr
    assert f"talk: call limit: {MAX_CALL_SECONDS} s" in result.stderr
    assert "of the call limit given back" in result.stderr
    assert result.stdout == ""
    audio = wav_stats(reply)
    print(f"\nreply: {audio}")
    assert audio.seconds > 0.8, audio
    assert audio.rms > 300, audio  # 16-bit units: about -40 dBFS, far above silence (0)
    assert "ek_" not in result.stdout + result.stderr


def test_an_offer_with_a_channel_is_refused_where_the_stack_allows_none(system: LocalSystem) -> None:
    async def connect(setup: CallSetup) -> None:
        async with RealtimeSession(setup):
            pass

    # What a client that ignored GET /options would offer: the function refuses it before anything is charged.
    with pytest.raises(ClientError) as refused:
        asyncio.run(connect(CallSetup(system.api_url, data_channel=True)))
    assert (refused.value.status, refused.value.code) == (400, "invalid_request")
    assert refused.value.message.startswith("sdp:")
    result = run_talk("--endpoint", system.api_url, "--say", "hi")
    assert result.returncode == ExitCode.USAGE
    assert "use --wav instead of --say" in result.stderr


def test_talk_with_the_channel_prints_both_sides_and_says_text(channel_system: LocalSystem, spoken_wav: Path,
                                                               tmp_path: Path) -> None:
    result = run_talk("--endpoint", channel_system.api_url, "--wav", str(spoken_wav), "--seconds", "9")

    assert result.returncode == ExitCode.OK, result.stderr
    assert f"talk: setting up a call at {channel_system.calls_url} (backend realtime)" in result.stderr
    assert "you:" in result.stdout and "assistant:" in result.stdout

    reply = tmp_path / "said.wav"
    code = talk(["--endpoint", channel_system.calls_url, "--say", "Hello there", "--out", str(reply),
                 "--voice", "cedar"])
    assert code == ExitCode.OK
    assert wav_stats(reply).seconds > 0.3


@pytest.mark.parametrize("which", ["system", "live_system"])
def test_the_leash_ends_a_session_at_the_limit(request: pytest.FixtureRequest, which: str) -> None:
    """No event says so on either (Realtime audio only; GPT-Live, whose session.closed is kept from the client):
    the connection closing at the call's limit does."""
    system: LocalSystem = request.getfixturevalue(which)

    async def call() -> tuple[RealtimeSession, float, list[str]]:
        seen: list[str] = []
        session = RealtimeSession(CallSetup(system.api_url), on_event=lambda event: seen.append(event["type"]))
        started = time.monotonic()  # the server's clock starts at setup, inside connect()
        await session.connect()
        assert await session.wait_ready(5) is None  # neither says the session is up: connected is
        await asyncio.wait_for(session.ended.wait(), MAX_CALL_SECONDS + 20)
        elapsed = time.monotonic() - started
        await session.close()
        return session, elapsed, seen

    session, elapsed, seen = asyncio.run(call())

    print(f"\nleash: the call ended {elapsed:.2f} s after setup (limit {MAX_CALL_SECONDS} s)")
    assert session.end_reason == "expired"
    assert session.max_seconds == MAX_CALL_SECONDS
    assert session.recorder.frames_received > 100, "audio came in until the end"
    assert {"session.started", "session.closed"}.isdisjoint(seen), seen
    assert system.standin is not None
    record = system.standin.call(session.call_id or "")
    assert record is not None and record.end_reason == "hangup" and record.ended_at is not None
    # At OpenAI's side: set up, then hung up by the leash no sooner than the limit.
    assert record.ended_at - record.created_at >= MAX_CALL_SECONDS
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
    assert talk(["--endpoint", system.api_url, "--api-key", key, "--seconds", "1"]) == ExitCode.RATE_LIMITED

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
    assert wrong.value.message.startswith(f"GET {system.api_url}/prod/options answered 404")

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
