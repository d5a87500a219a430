"""The token function end to end: real v2.0 events in, moto over HTTP for AWS, the OpenAI stand-in over HTTP."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from local.openai_standin.client_secrets import Fault
from tests.integration.harness import TokenApi, body_of, load_token_app
from tests.openai_shapes import CLIENT_SECRET_REQUEST, assert_request

ORIGIN = "https://page.example"


def test_vends_a_token_under_the_owner_policy(token_api: TokenApi) -> None:
    response = token_api.call("POST", "/token", {"voice": "cedar", "preset": "tutor"}, headers={"origin": ORIGIN})
    assert response.status == 200
    body = body_of(response)
    assert body["token"].startswith("ek_")
    assert body["realtime_url"] == f"{token_api.standin.base_url}/realtime/calls"
    assert body["session"] == {"model": "gpt-realtime-2.1", "voice": "cedar", "preset": "tutor"}
    assert isinstance(body["expires_at"], int)
    assert response.header("cache-control") == "no-store"
    assert response.header("ratelimit-limit") == "3"
    assert response.header("ratelimit-remaining") == "2"

    sent = token_api.standin.requests[-1]
    assert sent.authorized
    assert_request(sent.body, CLIENT_SECRET_REQUEST)  # OpenAI's own SDK's shape of the request, strictly
    assert sent.body["expires_after"] == {"anchor": "created_at", "seconds": 60}
    session = sent.body["session"]
    assert session["type"] == "realtime" and session["model"] == "gpt-realtime-2.1"
    assert session["audio"]["output"]["voice"] == "cedar"
    assert session["instructions"].startswith("You are a patient language tutor")
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    safety_id = sent.headers["OpenAI-Safety-Identifier"]
    assert len(safety_id) == 32 and "203.0.113.7" not in safety_id
    assert token_api.standin.registry.lookup(body["token"]).expires_at == body["expires_at"]


def test_defaults_when_body_is_absent_or_empty(token_api: TokenApi) -> None:
    for raw in (None, "", "{}"):
        response = token_api.call("POST", "/token", raw=raw, headers={"content-type": "application/json"})
        assert response.status == 200, response.body
        assert body_of(response)["session"] == {"model": "gpt-realtime-2.1", "voice": "marin", "preset": "default"}


def test_safety_identifier_is_stable_per_caller_and_differs_between_callers(token_api: TokenApi) -> None:
    token_api.call("POST", "/token", source_ip="198.51.100.1")
    token_api.call("POST", "/token", source_ip="198.51.100.1")
    token_api.call("POST", "/token", source_ip="198.51.100.2")
    ids = [r.headers["OpenAI-Safety-Identifier"] for r in token_api.standin.requests]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(("raw", "field"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('"marin"', "JSON object"),
    ('{"voice": 7}', "voice"),
    ('{"preset": ["default"]}', "preset"),
    ('{"voice": "marin", "instructions": "be evil"}', "instructions"),
    ('{"model": "gpt-realtime-2"}', "model"),
    ('{"voice": "nova"}', "voice"),
    ('{"preset": "../../etc"}', "preset"),
])
def test_bad_bodies_get_400_naming_the_field(token_api: TokenApi, raw: str, field: str) -> None:
    response = token_api.call("POST", "/token", raw=raw, headers={"content-type": "application/json"})
    assert response.status == 400
    error = body_of(response)["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]
    assert token_api.standin.requests == []


def test_voice_outside_a_narrowed_policy_is_refused(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, ALLOWED_VOICES="marin", DEFAULT_VOICE="marin")
    api.put_key(fresh_standin.api_key)
    response = api.call("POST", "/token", {"voice": "cedar"})
    assert response.status == 400 and "voice" in body_of(response)["error"]["message"]


def test_non_utf8_body_is_a_400(token_api: TokenApi) -> None:
    response = token_api.call("POST", "/token", raw=b'{"voice": "\xff\xfe"}',
                              headers={"content-type": "application/json"})
    assert response.status == 400
    assert body_of(response)["error"]["code"] == "invalid_request"


def test_a_body_that_is_not_json_typed_is_415(token_api: TokenApi) -> None:
    response = token_api.call("POST", "/token", raw=b"voice=marin",
                              headers={"content-type": "text/plain"})
    assert response.status == 415
    assert body_of(response)["error"]["code"] == "unsupported_media_type"


def test_body_over_4kb_is_413(token_api: TokenApi) -> None:
    response = token_api.call("POST", "/token", raw=json.dumps({"voice": "marin" + " " * 5000}),
                              headers={"content-type": "application/json"})
    assert response.status == 413
    assert body_of(response)["error"]["code"] == "payload_too_large"


def test_wrong_method_is_405_and_unknown_path_404(token_api: TokenApi) -> None:
    wrong = token_api.call("GET", "/token")
    assert wrong.status == 405 and wrong.header("allow") == "POST"
    assert body_of(wrong)["error"]["code"] == "method_not_allowed"
    for method, path in (("GET", "/nope"), ("POST", "/tokens"), ("DELETE", "/a/b/c")):
        missing = token_api.call(method, path)
        assert missing.status == 404, (method, path)
        assert body_of(missing)["error"]["code"] == "not_found"


def test_origin_outside_the_allowed_list_is_403(token_api: TokenApi) -> None:
    denied = token_api.call("POST", "/token", headers={"origin": "https://evil.example"})
    assert denied.status == 403
    assert body_of(denied)["error"]["code"] == "origin_not_allowed"
    assert token_api.call("POST", "/token", headers={"origin": ORIGIN}).status == 200
    assert token_api.call("POST", "/token").status == 200  # no Origin: scripts and apps
    assert len(token_api.standin.requests) == 2


def test_options_is_the_public_policy(token_api: TokenApi) -> None:
    response = token_api.call("GET", "/options")
    assert response.status == 200
    options = body_of(response)
    assert options["voices"][:2] == ["marin", "cedar"] and options["default_voice"] == "marin"
    assert options["presets"] == ["default", "concise", "tutor"] and options["default_preset"] == "default"
    # GPT-Live by default, with its allow-listed channel.
    assert options["token_ttl_seconds"] == 60 and options["model"] == "gpt-live-1.1" and options["backend"] == "live"
    assert options["data_channel"] is True
    assert options["anonymous"] == {"enabled": True, "burst": 3, "rate_per_hour": 10.0, "global_daily_limit": 500}
    assert "instructions" not in response.body.decode() and "You are" not in response.body.decode()


def test_health_makes_no_upstream_call(token_api: TokenApi) -> None:
    response = token_api.call("GET", "/health")
    assert response.status == 200 and body_of(response) == {"status": "ok"}
    assert token_api.standin.requests == []


def test_openapi_document_describes_every_route_and_the_error_shape(token_api: TokenApi) -> None:
    response = token_api.call("GET", "/openapi.json")
    assert response.status == 200
    doc = body_of(response)
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/calls", "/user/calls", "/calls/{call_id}/hangup", "/token", "/options", "/health"}
    calls = doc["paths"]["/calls"]["post"]
    assert {"201", "400", "413", "429", "503"} <= set(calls["responses"]) and "422" not in calls["responses"]
    call_schema = doc["components"]["schemas"]["CallRequest"]
    assert call_schema["required"] == ["sdp"] and call_schema["additionalProperties"] is False
    assert "v=0" in call_schema["properties"]["sdp"]["pattern"]
    assert doc["components"]["schemas"]["CallResponse"]["required"] == [
        "call_id", "sdp", "ends_at", "max_seconds", "hangup_token", "session"]
    token = doc["paths"]["/token"]["post"]
    request_schema = token["requestBody"]["content"]["application/json"]["schema"]
    assert "TokenRequest" in json.dumps(request_schema)
    assert {"200", "400", "401", "403", "413", "429", "500", "502", "503", "504"} <= set(token["responses"])
    assert "422" not in token["responses"]
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert schemas["TokenRequest"]["additionalProperties"] is False
    voice_enum = json.dumps(schemas["TokenRequest"]["properties"]["voice"])
    assert '"marin"' in voice_enum and '"cedar"' in voice_enum


# --- the key ------------------------------------------------------------------------------------------------

def test_key_as_json_or_bare_both_work(token_api: TokenApi) -> None:
    token_api.put_key(json.dumps({"api_key": token_api.standin.api_key}))
    api = load_token_app(token_api.stack, token_api.standin)
    assert api.call("POST", "/token").status == 200
    api.put_key(f"  {token_api.standin.api_key}\n")
    api = load_token_app(token_api.stack, token_api.standin)
    assert api.call("POST", "/token").status == 200


@pytest.mark.parametrize("value", ['{"api_key": ""}', "   ", '{"key": "sk-x"}', '{"api_key": 5}', "{broken"])
def test_empty_or_malformed_secret_is_500_not_configured(stack, fresh_standin, value: str) -> None:
    api = load_token_app(stack, fresh_standin)
    api.put_key(value)
    response = api.call("POST", "/token")
    assert response.status == 500
    assert body_of(response)["error"]["code"] == "not_configured"
    assert fresh_standin.requests == []


def test_missing_secret_is_500_not_configured(stack, fresh_standin) -> None:
    gone = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone"
    api = load_token_app(stack, fresh_standin, OPENAI_SECRET_ARN=gone)
    response = api.call("POST", "/token")
    assert response.status == 500 and body_of(response)["error"]["code"] == "not_configured"


def test_stack_created_secret_starts_empty_so_the_api_says_not_configured(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin)  # the secret as the template creates it, before put-secret-value
    response = api.call("POST", "/token")
    assert response.status == 500 and body_of(response)["error"]["code"] == "not_configured"
    assert "README" in body_of(response)["error"]["message"]


def test_warm_function_reads_no_secret_and_rotation_is_picked_up_on_401(token_api: TokenApi) -> None:
    calls: list[str] = []
    token_api.module.services.secretsmanager.meta.events.register(
        "before-call.secrets-manager.*", lambda model, **_: calls.append(model.name))
    assert token_api.call("POST", "/token").status == 200
    first = len(calls)
    assert token_api.call("POST", "/token", source_ip="203.0.113.8").status == 200
    assert len(calls) == first, "a warm vend must not call Secrets Manager"

    new_key = "sk-rotated-key-1111111111111111"
    token_api.put_key(new_key)
    token_api.standin.client_secrets.api_key = new_key
    try:
        response = token_api.call("POST", "/token", source_ip="203.0.113.9")
        assert response.status == 200, response.body
        assert [r.authorized for r in token_api.standin.requests[-2:]] == [False, True]
        assert len(calls) == first + 1, "exactly one refresh of the secret"
    finally:
        token_api.standin.client_secrets.api_key = token_api.standin.api_key


# --- OpenAI failures ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "status", "code", "upstream_calls"), [
    (Fault(status=401, times=2), 502, "upstream_auth", 2),
    (Fault(status=403, times=2), 502, "upstream_auth", 2),
    (Fault(status=429, headers={"Retry-After": "7"}), 503, "upstream_busy", 1),
    (Fault(status=400), 502, "upstream_error", 1),
    (Fault(status=500, times=2), 502, "upstream_error", 2),
    (Fault(status=503, times=2), 502, "upstream_error", 2),
    (Fault(status=200, body="{not json"), 502, "upstream_error", 1),
    (Fault(status=200, body={"expires_at": 1, "session": {}}), 502, "upstream_error", 1),
    (Fault(status=200, body={"value": 5, "expires_at": 1}), 502, "upstream_error", 1),
])
def test_upstream_failures_map_to_safe_5xx(token_api: TokenApi, fault: Fault, status: int, code: str,
                                           upstream_calls: int) -> None:
    token_api.standin.faults.add(fault)
    response = token_api.call("POST", "/token")
    assert response.status == status
    error = body_of(response)["error"]
    assert error["code"] == code
    assert "Injected" not in error["message"] and "sk-" not in response.body.decode()
    assert len(token_api.standin.requests) == upstream_calls
    if code == "upstream_busy":
        assert response.header("retry-after") == "7"


def test_one_5xx_is_retried_once_and_succeeds(token_api: TokenApi) -> None:
    token_api.standin.faults.add(Fault(status=502))
    response = token_api.call("POST", "/token")
    assert response.status == 200
    assert [r.status for r in token_api.standin.requests] == [502, 200]


def test_timeout_is_504(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, OPENAI_TIMEOUT_SECONDS="0.5")
    api.put_key(fresh_standin.api_key)
    fresh_standin.faults.add(Fault(status=200, delay_seconds=1.5))
    response = api.call("POST", "/token")
    assert response.status == 504 and body_of(response)["error"]["code"] == "upstream_timeout"


def test_a_dropped_connection_is_retried_once_then_502(stack, fresh_standin) -> None:
    """A server that accepts and hangs up at once, counting how often it is asked: exactly twice."""
    accepted = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def hang_up_on_everyone() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                accepted.append(connection)
                connection.close()

        threading.Thread(target=hang_up_on_everyone, daemon=True).start()
        api = load_token_app(stack, fresh_standin, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
        api.put_key(fresh_standin.api_key)
        response = api.call("POST", "/token")
    assert response.status == 502 and body_of(response)["error"]["code"] == "upstream_error"
    assert len(accepted) == 2, "one attempt and one retry"


def test_failed_mints_are_given_back_to_the_caller(token_api: TokenApi) -> None:
    for _ in range(5):
        token_api.standin.faults.add(Fault(status=500, times=2))
        assert token_api.call("POST", "/token").status == 502
    issued = [token_api.call("POST", "/token").status for _ in range(4)]
    assert issued == [200, 200, 200, 429], "burst 3 is intact after 5 failed mints"


def test_the_handler_sends_the_policy_request(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, TURN_DETECTION="none", TRANSCRIPTION_MODEL="none",
                         NOISE_REDUCTION="none", MAX_OUTPUT_TOKENS="512", TOKEN_TTL_SECONDS="120")
    api.put_key(fresh_standin.api_key)
    response = api.call("POST", "/token", {"voice": "cedar", "preset": "concise"})
    assert response.status == 200, response.body
    sent = fresh_standin.requests[-1].body
    assert_request(sent, CLIENT_SECRET_REQUEST)
    assert sent["expires_after"]["seconds"] == 120
    assert sent["session"]["audio"]["input"] == {"turn_detection": None}
    assert sent["session"]["max_output_tokens"] == 512
    assert sent["session"]["instructions"].startswith("You are a voice assistant. Answer in one or two")
