"""`talk` before the call: argument errors and token failures become documented exit codes and stderr lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime_client.cli import API_KEY_ENV, ExitCode, main
from tests.integration.clients.fake_services import FakeServices


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)


@pytest.mark.parametrize(
    ("path", "exit_code", "expected"),
    [
        ("/fail/401", ExitCode.AUTH, "refused the API key: invalid_api_key: The API key is missing or not valid."),
        (
            "/fail/429",
            ExitCode.RATE_LIMITED,
            "rate limited (rate_limited): Too many tokens requested; slow down. (retry after 7 s)",
        ),
        ("/fail/400", ExitCode.TOKEN_ERROR, "HTTP 400 invalid_request: voice must be one of: marin, cedar"),
        ("/fail/403", ExitCode.TOKEN_ERROR, "HTTP 403 origin_not_allowed"),
        ("/fail/413", ExitCode.TOKEN_ERROR, "HTTP 413 payload_too_large"),
        ("/fail/500", ExitCode.TOKEN_ERROR, "HTTP 500 not_configured"),
        ("/fail/502", ExitCode.TOKEN_ERROR, "HTTP 502 upstream_error"),
        (
            "/fail/503",
            ExitCode.TOKEN_ERROR,
            "HTTP 503 upstream_busy: OpenAI is busy; try again shortly. (retry after 4 s)",
        ),
        ("/fail/504", ExitCode.TOKEN_ERROR, "HTTP 504 upstream_timeout"),
        ("/html/502", ExitCode.TOKEN_ERROR, "HTTP 502 http_502"),
        ("/html/200", ExitCode.TOKEN_ERROR, "HTTP 200 invalid_response"),
    ],
)
def test_token_failures(
    services: FakeServices, capsys: pytest.CaptureFixture[str], path: str, exit_code: int, expected: str
) -> None:
    assert main(["--endpoint", services.url(path), "--say", "hi"]) == exit_code

    out, err = capsys.readouterr()
    assert out == ""
    assert f"talk: fetching token from {services.url(path)}\n" in err
    assert expected in err


def test_unreachable_endpoint(refused_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", refused_url, "--say", "hi"]) == ExitCode.TOKEN_ERROR

    assert "token endpoint unreachable (connect_failed)" in capsys.readouterr().err


def test_token_timeout(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", services.url("/slow"), "--say", "hi", "--timeout", "0.3"]) == ExitCode.TOKEN_ERROR

    assert "token endpoint unreachable (timeout): no answer within 0.3 s" in capsys.readouterr().err


def test_api_key_comes_from_the_environment(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "key-from-env")

    main(["--endpoint", services.url("/fail/401"), "--voice", "cedar"])

    assert services.token_requests[-1].headers["Authorization"] == "Bearer key-from-env"
    assert services.token_requests[-1].body == b'{"voice": "cedar"}'


def test_api_key_option_wins_over_the_environment(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "key-from-env")

    main(["--endpoint", services.url("/fail/401"), "--api-key", "key-from-option"])

    assert services.token_requests[-1].headers["Authorization"] == "Bearer key-from-option"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: --endpoint"),
        (["--endpoint", "http://x/token", "--say", "hi", "--wav", "a.wav"], "not allowed with argument"),
        (["--endpoint", "http://x/token", "--seconds", "0"], "--seconds must be positive"),
        (["--endpoint", "http://x/token", "--seconds", "soon"], "invalid float value"),
        (["--endpoint", "ftp://x/token"], "--endpoint must be an http(s) URL"),
        (["--endpoint", "http://x/token", "--out", "/no/such/dir/reply.wav"], "--out: no such directory"),
        (["--endpoint", "http://x/token", "--wav", "/no/such/file.wav"], "no such file"),
        (["--endpoint", "http://x/token", "--say", "  "], "--say needs some text"),
    ],
)
def test_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.USAGE

    assert expected in capsys.readouterr().err


def test_unreadable_wav_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")

    assert main(["--endpoint", "http://x/token", "--wav", str(not_audio)]) == ExitCode.USAGE

    assert "not a readable audio file" in capsys.readouterr().err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == ExitCode.OK

    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert "TALK_API_KEY" in out


def test_console_script_reports_rate_limit(services: FakeServices) -> None:
    talk = Path(sys.executable).parent / "talk"
    env = {**os.environ, API_KEY_ENV: "key-from-env"}

    result = subprocess.run(
        [str(talk), "--endpoint", services.url("/fail/429"), "--say", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )

    assert result.returncode == ExitCode.RATE_LIMITED
    assert result.stdout == ""
    assert "(retry after 7 s)" in result.stderr
    assert services.token_requests[-1].headers["Authorization"] == "Bearer key-from-env"
