"""`talk` before the call: argument errors and failures of our API become documented exit codes and stderr lines."""

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
    ("behaviour", "exit_code", "expected"),
    [
        ("fail-401", ExitCode.AUTH, "refused the API key: invalid_api_key: The API key is missing or not valid."),
        (
            "fail-429",
            ExitCode.RATE_LIMITED,
            "rate limited (daily_budget_exhausted): Today's call minutes are used up. (retry after 7 s)",
        ),
        ("fail-400", ExitCode.SETUP_FAILED, "HTTP 400 invalid_request: voice must be one of: marin, cedar"),
        ("fail-403", ExitCode.SETUP_FAILED, "HTTP 403 origin_not_allowed"),
        ("fail-413", ExitCode.SETUP_FAILED, "HTTP 413 payload_too_large"),
        ("fail-500", ExitCode.SETUP_FAILED, "HTTP 500 not_configured"),
        ("fail-502", ExitCode.SETUP_FAILED, "HTTP 502 upstream_error"),
        (
            "fail-503",
            ExitCode.SETUP_FAILED,
            "HTTP 503 leash_unavailable: The call could not be given a time limit; try again shortly. "
            "(retry after 4 s)",
        ),
        ("fail-504", ExitCode.SETUP_FAILED, "HTTP 504 upstream_timeout"),
        ("html-502", ExitCode.SETUP_FAILED, "HTTP 502 http_502"),
        ("html-200", ExitCode.SETUP_FAILED, "HTTP 200 unexpected_status"),  # a call's success is 201
        ("redirect", ExitCode.SETUP_FAILED, "HTTP 301 unexpected_redirect"),
    ],
)
def test_setup_failures(
    services: FakeServices, capsys: pytest.CaptureFixture[str], behaviour: str, exit_code: int, expected: str
) -> None:
    url = services.url(behaviour, stack="realtime-dc")  # a stack with the channel: --say is allowed there
    assert main(["--endpoint", url, "--say", "hi"]) == exit_code

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"talk: setting up a call at {url}/calls (backend realtime)\n")
    assert expected in err


@pytest.mark.parametrize(
    ("behaviour", "exit_code", "expected"),
    [
        ("fail-401", ExitCode.AUTH, "refused the API key: invalid_api_key"),
        ("fail-429", ExitCode.RATE_LIMITED, "(retry after 7 s)"),
        ("fail-503", ExitCode.SETUP_FAILED, "HTTP 503 leash_unavailable"),
        ("html-200", ExitCode.SETUP_FAILED, "HTTP 200 invalid_response"),
    ],
)
def test_token_route_failures(
    services: FakeServices, capsys: pytest.CaptureFixture[str], behaviour: str, exit_code: int, expected: str
) -> None:
    assert main(["--endpoint", services.url(behaviour, "token"), "--say", "hi"]) == exit_code

    err = capsys.readouterr().err
    assert err.startswith(f"talk: fetching token from {services.url(behaviour, 'token')}\n")
    assert expected in err


def test_a_wrong_url_says_which_url_was_tried_and_what_was_expected(
    services: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = services.base_url + "/prod"

    assert main(["--endpoint", wrong + "/calls", "--say", "hi"]) == ExitCode.SETUP_FAILED

    err = capsys.readouterr().err
    assert f"GET {wrong}/options answered 404 (http_404: 404: Not Found); expected the stack's ApiUrl " in err
    assert "(https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL" in err


def test_a_stack_without_the_token_route_says_how_to_do_without(
    services: FakeServices, capsys: pytest.CaptureFixture[str]
) -> None:
    url = services.url("ok", "token", stack="live")

    assert main(["--endpoint", url, "--say", "hi"]) == ExitCode.SETUP_FAILED

    err = capsys.readouterr().err
    assert f"POST {url} answered 404 (not_found: Not found.); expected the stack's ApiUrl" in err
    assert "/token answers only on a stack deployed with EnableTokenRoute=true" in err


def test_unreachable_endpoint(refused_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", refused_url, "--say", "hi"]) == ExitCode.SETUP_FAILED

    assert "the API is unreachable (connect_failed)" in capsys.readouterr().err


def test_setup_timeout(services: FakeServices, capsys: pytest.CaptureFixture[str]) -> None:
    url = services.url("slow", stack="realtime-dc")
    assert main(["--endpoint", url, "--say", "hi", "--timeout", "0.3"]) == ExitCode.SETUP_FAILED

    assert "the API is unreachable (timeout): no answer within 0.3 s" in capsys.readouterr().err


def test_api_key_comes_from_the_environment(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "key-from-env")

    main(["--endpoint", services.url("fail-401"), "--voice", "cedar"])

    request = services.last("/calls")
    assert request.headers["Authorization"] == "Bearer key-from-env"
    assert set(request.json()) == {"sdp", "voice"} and request.json()["voice"] == "cedar"


def test_api_key_option_wins_over_the_environment(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "key-from-env")

    main(["--endpoint", services.url("fail-401", "token"), "--api-key", "key-from-option"])

    assert services.last("/token").headers["Authorization"] == "Bearer key-from-option"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: --endpoint"),
        (["--endpoint", "http://x/", "--say", "hi", "--wav", "a.wav"], "not allowed with argument"),
        (["--endpoint", "http://x/", "--seconds", "0"], "--seconds must be positive"),
        (["--endpoint", "http://x/", "--seconds", "soon"], "invalid float value"),
        (["--endpoint", "ftp://x/token"], "--endpoint must be an http(s) URL"),
        (["--endpoint", "x.example.org"], "--endpoint must be an http(s) URL"),
        (["--endpoint", "http://x/", "--out", "/no/such/dir/reply.wav"], "--out: no such directory"),
        (["--endpoint", "http://x/", "--wav", "/no/such/file.wav"], "no such file"),
        (["--endpoint", "http://x/", "--say", "  "], "--say needs some text"),
    ],
)
def test_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.USAGE

    assert expected in capsys.readouterr().err


def test_unreadable_wav_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")

    assert main(["--endpoint", "http://x/", "--wav", str(not_audio)]) == ExitCode.USAGE

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
        [str(talk), "--endpoint", services.url("fail-429", stack="realtime-dc"), "--say", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )

    assert result.returncode == ExitCode.RATE_LIMITED
    assert result.stdout == ""
    assert "(retry after 7 s)" in result.stderr
    assert services.last("/calls").headers["Authorization"] == "Bearer key-from-env"
