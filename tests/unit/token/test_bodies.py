"""Request bodies parsed by hand (`tokenvend.bodies`): the same one-line 400s, naming the field, that pydantic gave.

`bodies_before_issue15.json` holds what the handler answered (Powertools validation with pydantic) to 750 bodies and
content types on the three JSON routes, recorded before the parser replaced it: the 400 or 415 and its message, or
`accepted` (the request got past every check of its shape, choice and offer). Each case runs here through what the
handler runs before anything is charged (screening, the parser, the session policy, the offer check), and must
answer the same, except for the content types listed in `CHANGED`, which the old validation got wrong.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from local.apigw import Route, http_api_event
from local.template_stack import template_function_env
from tokenvend import bodies, schemas
from tokenvend.errors import ApiError
from tokenvend.offer_policy import check_offer
from tokenvend.policy import SessionPolicy
from tokenvend.screening import screen
from tokenvend.settings import Settings

CASES = json.loads((Path(__file__).parent / "bodies_before_issue15.json").read_text())
SETTINGS = Settings.from_env({**template_function_env(), "STATE_MACHINE_ARN": "arn:placeholder",
                              "ALLOWED_ORIGINS": "none"})
POLICY = SessionPolicy(SETTINGS)
SPECS = {"/token": schemas.TOKEN_REQUEST, "/calls": schemas.CALL_REQUEST,
         "/calls/{call_id}/hangup": schemas.HANGUP_REQUEST}
UNSUPPORTED = f"415 {bodies.UNSUPPORTED}"
# Content types the old validation handled wrongly, and what they get now:
CHANGED = {
    # It parsed forms and multipart bodies: a multipart POST /token vended a token with the defaults, and a form's
    # message named the whole body as an unknown field. Only JSON is accepted on these routes.
    "application/x-www-form-urlencoded": UNSUPPORTED,
    "multipart/form-data; boundary=x": UNSUPPORTED,
    # It compared prefixes: `application/jsonx` passed as JSON.
    "application/jsonx": UNSUPPORTED,
    # A JSON array body under a JSON-looking type was refused before the media type was looked at.
    "application/vnd.api+json": UNSUPPORTED,
}
# It compared case-sensitively; media types are case-insensitive (RFC 9110), so `Application/JSON` is JSON now.
CASE_INSENSITIVE = "Application/JSON"


def run(route: str, content_type: str | None, body: str | None, body_base64: str | None) -> str:
    """What the handler answers before anything is charged, as `accepted` or `<status> <message>`."""
    path = route.replace("{call_id}", "rtc_1")
    event = http_api_event("POST", path, route=Route("POST", route),
                           headers={} if content_type is None else {"content-type": content_type}, body=body)
    if body_base64 is not None:
        event |= {"body": body_base64, "isBase64Encoded": True}
    event, refused = screen(event, SETTINGS.allowed_origins)
    try:
        if refused:
            raise refused
        parsed = bodies.parse(SPECS[route], event.get("body"), event["headers"].get("content-type"))
        if route != "/calls/{call_id}/hangup":
            POLICY.choose(parsed["voice"], parsed["preset"])
        if route == "/calls":
            check_offer(parsed["sdp"] or "", data_channel=SETTINGS.data_channel)
    except ApiError as error:
        return f"{error.status} {error.message}"
    return "accepted"


# Issue 21: an offer must be shaped as a browser's WebRTC offer is. The recorded offers that passed the old check (or
# failed it for a missing audio section) carry no ICE credentials or DTLS attributes: refused for that now.
NOT_WEBRTC = "400 sdp: not a WebRTC offer (no a=ice-ufrag, a=ice-pwd, a=fingerprint, a=setup)"
PASSED_THE_OLD_OFFER_CHECK = ("accepted", "400 sdp: the offer has no audio section (m=audio)")


def expected(case: dict[str, Any]) -> str:
    content_type = case["content_type"]
    if case["route"] == "/calls" and case["answer"] in PASSED_THE_OLD_OFFER_CHECK:
        return NOT_WEBRTC
    if content_type in CHANGED:
        return CHANGED[content_type]
    if content_type == CASE_INSENSITIVE:
        same_as = {**case, "content_type": "application/json"}
        return next(c["answer"] for c in CASES if {**c, "answer": None} == {**same_as, "answer": None})
    return str(case["answer"])


def test_every_recorded_body_gets_the_answer_it_got_from_pydantic() -> None:
    wrong = []
    for case in CASES:
        got = run(case["route"], case["content_type"], case.get("body"), case.get("body_base64"))
        if got != expected(case):
            wrong.append({**case, "got": got, "expected": expected(case)})
    assert not wrong, json.dumps(wrong[:10], indent=1)
    assert len(CASES) == 750


@pytest.mark.parametrize(("spec", "body", "message"), [
    (schemas.CALL_REQUEST, None, "body: Field required"),
    (schemas.CALL_REQUEST, "null", "body: Field required"),
    (schemas.CALL_REQUEST, "{}", "sdp: Field required"),
    (schemas.CALL_REQUEST, '{"sdp": null}', "sdp: Input should be a valid string"),
    (schemas.CALL_REQUEST, '{"sdp": "v=0", "voice": 7, "x": 1}', "voice: Input should be a valid string"),
    (schemas.CALL_REQUEST, '{"x": 1, "sdp": 5}', "sdp: Input should be a valid string"),
    (schemas.CALL_REQUEST, '{"sdp": "v=0", "b": 1, "a": 2}', "b: unknown field."),
    (schemas.TOKEN_REQUEST, '{"voice": "marin", "voice": 7}', "voice: Input should be a valid string"),
    (schemas.TOKEN_REQUEST, '{"voice": true}', "voice: Input should be a valid string"),
    (schemas.TOKEN_REQUEST, '{"preset": ["default"]}', "preset: Input should be a valid string"),
    (schemas.TOKEN_REQUEST, "[]", "The body must be a JSON object."),
    (schemas.TOKEN_REQUEST, '[{"voice": "cedar"}]', "The body must be a JSON object."),
    (schemas.TOKEN_REQUEST, '"marin"', "The body must be a JSON object."),
    (schemas.TOKEN_REQUEST, " ", "The body is not valid JSON."),
    (schemas.TOKEN_REQUEST, "{}x", "The body is not valid JSON."),
    (schemas.HANGUP_REQUEST, '{"hangup_token": 5}', "hangup_token: Input should be a valid string"),
    (schemas.HANGUP_REQUEST, '{"voice": "marin"}', "voice: unknown field."),
])
def test_the_first_problem_is_the_answer(spec: schemas.BodySpec, body: str | None, message: str) -> None:
    with pytest.raises(ApiError) as refused:
        bodies.parse(spec, body, "application/json")
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, "invalid_request", message)


@pytest.mark.parametrize("body", [
    '{"voice": ' + "[" * 5000 + "]" * 5000 + "}",  # deeper than the parser's recursion may go
    '{"voice": 1' + "0" * 5000 + "}",  # past Python's digit limit for int(): a ValueError, not a JSON error
])
def test_bodies_json_cannot_hold_are_400_not_500(body: str) -> None:
    with pytest.raises(ApiError) as refused:
        bodies.parse(schemas.CALL_REQUEST, body, "application/json")
    assert refused.value.status == 400


def test_absent_bodies_mean_the_defaults_where_a_body_is_optional() -> None:
    for body in (None, "", "null", "{}", '{"voice": null, "preset": null}'):
        assert bodies.parse(schemas.TOKEN_REQUEST, body, None) == {"voice": None, "preset": None}
    # A hangup without a token is the service's 403 (it checks the token against the call), never a 400.
    assert bodies.parse(schemas.HANGUP_REQUEST, None, None) == {"hangup_token": None}
    assert bodies.parse(schemas.CALL_REQUEST, '{"sdp": "v=0", "voice": "cedar"}', None) == {
        "sdp": "v=0", "voice": "cedar", "preset": None, "turnstile_token": None}


@pytest.mark.parametrize(("content_type", "json_ok"), [
    (None, True), ("", True), ("application/json", True), ("application/json; charset=utf-8", True),
    ("APPLICATION/JSON;charset=UTF-8", True), (" application/json ", True),
    ("text/plain", False), ("application/jsonx", False), ("application/x-www-form-urlencoded", False),
    ("multipart/form-data; boundary=x", False), ("application/vnd.api+json", False), ("json", False),
])
def test_only_json_is_accepted(content_type: str | None, json_ok: bool) -> None:
    if json_ok:
        assert bodies.parse(schemas.TOKEN_REQUEST, "{}", content_type) == {"voice": None, "preset": None}
        return
    with pytest.raises(ApiError) as refused:
        bodies.parse(schemas.TOKEN_REQUEST, "{}", content_type)
    assert (refused.value.status, refused.value.code) == (415, "unsupported_media_type")


def test_a_non_utf8_body_is_invalid_json() -> None:
    event = {"headers": {}, "rawPath": "/token", "requestContext": {"http": {"method": "POST"}},
             "isBase64Encoded": True, "body": base64.b64encode(b'{"voice": "\xff"}').decode()}
    event, refused = screen(event, ())
    assert refused is None
    with pytest.raises(ApiError, match="not valid JSON"):
        bodies.parse(schemas.TOKEN_REQUEST, event["body"], None)
