"""The Python client and `talk` on the signed-in users' lane, against the whole local system deployed with
JwtIssuer and JwtAudience (a throwaway issuer on loopback): the owner's hook is asked for a fresh token for each
call, calls are set up on POST /user/calls behind the local JWT authorizer and hung up as any call; a token the
authorizer refuses, or a hook that gives none, is a clear error, and nothing reaches the function."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.system import LocalSystem
from realtime_client import (
    AuthError,
    CallSetup,
    RealtimeSession,
    SignInRefused,
    UserTokenFailed,
    command_token,
)
from realtime_client.cli import ExitCode
from realtime_client.cli import main as talk
from tests.audio_files import wav_stats, write_tone
from tests.jwt_issuer import AUDIENCE, Issuer

TALK = str(Path(sys.executable).parent / "talk")


@pytest.fixture(scope="module")
def system(issuer: Issuer) -> Iterator[LocalSystem]:
    parameters = {"VoiceBackend": "realtime", "MaxCallSeconds": "10", "JwtIssuer": issuer.url,
                  "JwtAudience": AUDIENCE}
    with LocalSystem(port=0, parameters=parameters) as running:
        yield running


@pytest.fixture(scope="module")
def routes_invoked(system: LocalSystem) -> list[str]:
    """The route key of every event the gateway hands the function."""
    seen: list[str] = []
    lock = threading.Lock()
    pool = system.functions
    assert pool is not None
    invoke = pool.invoke

    def recorded(event: dict[str, Any], timeout: float = 30) -> Any:
        with lock:
            seen.append(event["routeKey"])
        return invoke(event, timeout)

    pool.invoke = recorded  # type: ignore[method-assign]
    return seen


@pytest.fixture(scope="module")
def spoken_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tone(tmp_path_factory.mktemp("speech") / "q.wav", seconds=1.2, lead_silence=0.3, tail_silence=1.0)


async def test_the_hook_gives_a_fresh_token_for_each_call_on_the_user_route(
        system: LocalSystem, issuer: Issuer, routes_invoked: list[str]) -> None:
    asked: list[str] = []

    async def user_token() -> str:
        asked.append(issuer.mint(sub=f"user-{len(asked)}"))
        return asked[-1]

    setup = CallSetup(system.api_url, user_token=user_token)
    before = len(routes_invoked)
    for _ in range(2):
        async with RealtimeSession(setup) as session:
            assert session.call is not None and session.call_id
        assert session.hangup is not None and session.hangup.state == "ended", session.hangup
    assert len(asked) == 2 and asked[0] != asked[1]
    assert routes_invoked[before:] == ["GET /options", "POST /user/calls", "POST /calls/{call_id}/hangup"] * 2


async def test_a_token_the_authorizer_refuses_is_a_clear_error(system: LocalSystem, issuer: Issuer,
                                                                routes_invoked: list[str]) -> None:
    async def expired() -> str:
        return issuer.mint(exp=-300, iat=-900)

    before = len(routes_invoked)
    with pytest.raises(SignInRefused) as refused:
        async with RealtimeSession(CallSetup(system.api_url, user_token=expired)):
            pass
    assert isinstance(refused.value, AuthError) and refused.value.status == 401
    assert "API Gateway refused the sign-in token (the token has expired)" in refused.value.message
    assert refused.value.challenge is not None and refused.value.challenge.startswith("Bearer ")
    assert "POST /user/calls" not in routes_invoked[before:]


async def test_a_hook_with_no_token_sends_nothing(system: LocalSystem, routes_invoked: list[str],
                                                  tmp_path: Path) -> None:
    async def signed_out() -> str:
        return ""

    before = len(routes_invoked)
    with pytest.raises(UserTokenFailed):
        async with RealtimeSession(CallSetup(system.api_url, user_token=signed_out)):
            pass
    failing = command_token(f"{shlex.quote(sys.executable)} -c \"import sys; sys.exit('not signed in')\"")
    with pytest.raises(UserTokenFailed, match="the user token command exited 1: not signed in"):
        async with RealtimeSession(CallSetup(system.api_url, user_token=failing)):
            pass
    assert "POST /user/calls" not in routes_invoked[before:]


def test_talk_calls_as_a_signed_in_user_with_a_token_command(system: LocalSystem, issuer: Issuer, spoken_wav: Path,
                                                             tmp_path: Path, routes_invoked: list[str]) -> None:
    token = issuer.mint(sub="user-talk")
    saved = tmp_path / "token"
    saved.write_text(token + "\n")
    reply = tmp_path / "reply.wav"
    before = len(routes_invoked)
    result = subprocess.run(
        [TALK, "--endpoint", system.api_url, "--user-token-command", f"cat {shlex.quote(str(saved))}",
         "--wav", str(spoken_wav), "--out", str(reply), "--seconds", "9"],
        capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == ExitCode.OK, result.stderr
    assert f"setting up a call at {system.api_url}/user/calls as a signed-in user" in result.stderr
    assert wav_stats(reply).seconds > 0.8
    assert token not in result.stdout + result.stderr
    assert "POST /user/calls" in routes_invoked[before:]


@pytest.mark.parametrize(("command", "expected"), [
    ("echo 'no session, sign in first' >&2; exit 3", "the user token command exited 3: no session, sign in first"),
    ("true", "the user token command printed no token"),
])
def test_talk_says_when_the_token_command_gives_none(system: LocalSystem, capsys: pytest.CaptureFixture[str],
                                                     command: str, expected: str) -> None:
    assert talk(["--endpoint", system.api_url, "--user-token-command", command, "--seconds", "1"]) == ExitCode.AUTH
    assert expected in capsys.readouterr().err


def test_talk_says_when_api_gateway_refuses_the_token(system: LocalSystem, issuer: Issuer, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "token"
    saved.write_text(issuer.mint(aud="another-app"))
    code = talk(["--endpoint", system.api_url, "--user-token-command", f"cat {shlex.quote(str(saved))}",
                 "--seconds", "1"])
    assert code == ExitCode.AUTH
    err = capsys.readouterr().err
    assert "API Gateway refused the sign-in token (the token does not have a valid audience)" in err
    assert saved.read_text() not in err


@pytest.mark.parametrize("extra", [["--api-key", "k"], ["--token-route"]])
def test_talk_refuses_a_token_command_with_an_api_key_or_the_token_route(system: LocalSystem, extra: list[str],
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert talk(["--endpoint", system.api_url, "--user-token-command", "true", *extra]) == ExitCode.USAGE
    assert "--user-token-command" in capsys.readouterr().err
