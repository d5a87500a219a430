"""The stand-in's `POST /v1/realtime/client_secrets`: strict like OpenAI, over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from local.openai_standin.client_secrets import Fault
from local.openai_standin.server import StandIn

GOOD = {
    "expires_after": {"anchor": "created_at", "seconds": 45},
    "session": {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
                "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                                    "turn_detection": {"type": "semantic_vad"},
                                    "noise_reduction": {"type": "near_field"}},
                          "output": {"voice": "marin"}}},
}


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    with StandIn() as running:
        yield running


def post(server: StandIn, body: object = None, *, key: str | None = None, content: bytes | None = None,
         content_type: str = "application/json") -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key if key is None else key}", "Content-Type": content_type}
    url = f"{server.base_url}/realtime/client_secrets"
    if content is not None:
        return httpx.post(url, content=content, headers=headers)
    return httpx.post(url, json=body, headers=headers)


def error_of(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}  # OpenAI's error shape
    return error


def test_mints_a_token_bound_to_the_session_with_the_requested_lifetime(server: StandIn) -> None:
    response = post(server, GOOD)
    assert response.status_code == 200
    body = response.json()
    assert body["value"].startswith("ek_")
    assert abs(body["expires_at"] - (time.time() + 45)) <= 2
    session = body["session"]
    assert session["type"] == "realtime" and session["id"].startswith("sess_")
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    assert server.registry.lookup(body["value"]) is not None


def test_wrong_or_missing_key_is_401_in_openai_shape(server: StandIn) -> None:
    wrong = post(server, GOOD, key="sk-wrong-key-0000000000")
    missing = httpx.post(f"{server.base_url}/realtime/client_secrets", json=GOOD)
    for response in (wrong, missing):
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_api_key"


@pytest.mark.parametrize(("body", "param", "code"), [
    ({**GOOD, "model": "gpt-realtime"}, "model", "unknown_parameter"),
    ({"session": {**GOOD["session"], "temperature": 0.8}}, "session.temperature", "unknown_parameter"),
    ({"session": {"model": "gpt-realtime"}}, "session.type", "missing_required_parameter"),
    ({"session": {"type": "realtime", "audio": {"output": {"voice": 3}}}}, "session.audio.output.voice",
     "invalid_value"),
    ({"expires_after": {"anchor": "created_at", "seconds": 9}}, "expires_after.seconds", "invalid_value"),
    ({"expires_after": {"anchor": "created_at", "seconds": 7201}}, "expires_after.seconds", "invalid_value"),
    ({"session": {"type": "realtime", "audio": {"input": {"format": "pcm16"}}}}, "session.audio.input.format",
     "invalid_value"),
    ({"session": {"type": "realtime", "audio": {"input": {"transcription": None}}}},
     "session.audio.input.transcription", "invalid_type"),
])
def test_a_wrong_field_is_400_naming_it(server: StandIn, body: dict, param: str, code: str) -> None:
    response = post(server, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code


def test_the_retired_beta_shape_is_refused(server: StandIn) -> None:
    beta = {"model": "gpt-4o-realtime-preview", "voice": "alloy", "modalities": ["audio", "text"]}
    response = post(server, beta)
    assert response.status_code == 400 and error_of(response)["code"] == "unknown_parameter"


def test_wrong_content_type_and_bad_json_are_400(server: StandIn) -> None:
    assert post(server, content=b"{}", content_type="text/plain").status_code == 400
    response = post(server, content=b"{not json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


def test_injected_faults_answer_first_then_normal_service_resumes(server: StandIn) -> None:
    server.faults.add(Fault(status=429, headers={"Retry-After": "3"}))
    limited = post(server, GOOD)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert post(server, GOOD).status_code == 200
    control = httpx.post(f"http://127.0.0.1:{server.port}/_standin/faults", json={"status": 503})
    assert control.status_code == 200
    assert post(server, GOOD).status_code == 503
    assert post(server, GOOD).status_code == 200
