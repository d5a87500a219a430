"""The Python client and the `talk` CLI against the whole local system: moto, the real handler behind the local
API Gateway, and the local OpenAI Realtime stand-in."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.system import LocalSystem
from realtime_client import (
    AuthError,
    CallRefused,
    ClientError,
    EndpointUnreachable,
    RateLimited,
    RealtimeSession,
    ServerError,
    fetch_token,
    fetch_token_async,
)
from realtime_client.cli import main as talk
from tests.audio_files import wav_stats, write_tone
from tokenvend.api_keys import ApiKeyStore

TALK = str(Path(sys.executable).parent / "talk")


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(port=0, parameters={"AnonymousBurst": "20"}) as running:
        yield running


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


def test_talk_cli_completes_a_call_and_writes_the_reply(system: LocalSystem, spoken_wav: Path,
                                                        tmp_path: Path) -> None:
    reply = tmp_path / "reply.wav"
    result = subprocess.run([TALK, "--endpoint", system.token_url, "--wav", str(spoken_wav), "--out", str(reply),
                             "--seconds", "20"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "connected" in result.stderr
    assert "you:" in result.stdout and "assistant:" in result.stdout
    audio = wav_stats(reply)
    print(f"\nreply: {audio}")
    assert audio.seconds > 0.8, audio
    assert audio.rms > 300, audio  # 16-bit units: about -40 dBFS, far above silence (0)
    assert "ek_" not in result.stdout + result.stderr


def test_talk_cli_say_text(system: LocalSystem, tmp_path: Path) -> None:
    reply = tmp_path / "said.wav"
    code = talk(["--endpoint", system.token_url, "--say", "Hello there", "--out", str(reply), "--voice", "cedar"])
    assert code == 0
    assert wav_stats(reply).seconds > 0.3


async def test_expired_token_is_refused_by_the_peer(system: LocalSystem) -> None:
    token = await fetch_token_async(system.token_url)
    assert system.standin is not None
    system.standin.registry.expire(token.token)
    with pytest.raises(CallRefused) as refused:
        async with RealtimeSession(token):
            pass
    assert refused.value.status == 401


def test_talk_cli_says_so_when_the_token_expired_before_the_call(system: LocalSystem,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    registry = system.standin.registry if system.standin else None
    assert registry is not None
    real_lookup = registry.lookup

    def expired_on_arrival(value: str):
        registry.expire(value)  # as if the token's lifetime ran out between the fetch and the SDP POST
        return real_lookup(value)

    monkeypatch.setattr(registry, "lookup", expired_on_arrival)
    code = talk(["--endpoint", system.token_url, "--say", "hi"])
    assert code == 6
    err = capsys.readouterr().err
    print(err)
    assert "refused" in err.lower() and "401" in err
    monkeypatch.undo()


def test_token_error_paths_through_the_real_api(system: LocalSystem, tmp_path: Path) -> None:
    with pytest.raises(AuthError) as bad_key:
        fetch_token(system.token_url, api_key="rtv_not-a-real-key")
    assert bad_key.value.code == "invalid_api_key"

    with pytest.raises(ClientError) as bad_voice:
        fetch_token(system.token_url, voice="nova")
    assert bad_voice.value.status == 400 and "voice" in bad_voice.value.message

    assert system.stack is not None
    key, _ = ApiKeyStore(system.client("dynamodb"), system.stack.table_name).create("e2e", burst=1,
                                                                                     rate_per_hour=1)
    assert fetch_token(system.token_url, api_key=key).token.startswith("ek_")
    with pytest.raises(RateLimited) as limited:
        fetch_token(system.token_url, api_key=key)
    assert limited.value.code == "rate_limited" and limited.value.retry_after >= 3000

    code = talk(["--endpoint", system.token_url, "--api-key", key, "--say", "hi"])
    assert code == 4

    control = {"pk": {"S": "control"}}
    system.client("dynamodb").put_item(TableName=system.stack.table_name, Item={**control, "paused": {"BOOL": True}})
    try:
        with pytest.raises(ServerError) as paused:
            fetch_token(system.token_url)
        assert paused.value.status == 503 and paused.value.code == "issuing_paused"
    finally:
        system.client("dynamodb").delete_item(TableName=system.stack.table_name, Key=control)

    with pytest.raises(EndpointUnreachable):
        fetch_token("http://127.0.0.1:9/token", timeout=2)
