"""`POST /calls` and `POST /calls/{id}/hangup` through the handler as API Gateway calls it, with moto over HTTP for
DynamoDB and Step Functions and the OpenAI stand-in over HTTP: what is sent to OpenAI, what is recorded and
scheduled, what the day's minutes budget allows, and what a failure costs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.openai_standin.faults import Fault
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack
from tests.integration.harness import TokenApi, body_of, load_token_app
from tests.integration.offers import make_offer
from tokenvend import table

LEASH_SLACK = 5


@dataclass(frozen=True)
class Backend:
    name: str
    id_prefix: str
    create: str  # the stand-in's name for the endpoint that sets a call up
    hangup: str  # and for the one that hangs it up


BACKENDS = [Backend("realtime", "rtc_", "calls", "hangup"), Backend("live", "live_", "live_sessions", "live_hangup")]
# What OpenAI bills a call however short: GPT-Live's 15 s for a created session.
MINIMUM = {"realtime": 0, "live": 15}


@pytest.fixture(scope="module")
def offers() -> dict[bool, str]:
    return {channel: make_offer(data_channel=channel) for channel in (True, False)}


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def offer(offers: dict[bool, str], backend: Backend) -> str:
    """What the page offers each backend by default: the allow-listed channel on Live, audio only on Realtime."""
    return offers[backend.name == "live"]


def load(stack: LocalStack, standin: StandIn, backend: Backend, **env: str) -> TokenApi:
    api = load_token_app(stack, standin, VOICE_BACKEND=backend.name, **env)
    api.put_key(standin.api_key)
    return api


@pytest.fixture
def calls_api(stack: LocalStack, fresh_standin: StandIn, backend: Backend) -> Iterator[TokenApi]:
    yield load(stack, fresh_standin, backend, MAX_CALL_SECONDS="20", DAILY_CALL_MINUTES="60")
    fresh_standin.reset()  # hang up what a test left running at the stand-in


def start(api: TokenApi, offer: str, **fields: Any) -> Any:
    return api.call("POST", "/calls", {"sdp": offer, **fields}, headers={"origin": "https://page.example"})


def executions(stack: LocalStack) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    arn = stack.state_machines["LeashStateMachine"].arn
    return sfn.list_executions(stateMachineArn=arn)["executions"]


def day_seconds(api: TokenApi) -> int:
    """The call seconds held by every day counter of this test's own table: whichever UTC day the test ran on (a
    run across midnight writes two), their sum is what the test charged."""
    pages = api.dynamodb.get_paginator("scan").paginate(TableName=api.stack.table_name)
    items = [item for page in pages for item in page["Items"] if item["pk"]["S"].startswith("day#")]
    return sum(int(item[table.CALL_SECONDS]["N"]) for item in items if table.CALL_SECONDS in item)


def call_item(api: TokenApi, call_id: str) -> dict[str, Any]:
    return api.dynamodb.get_item(TableName=api.stack.table_name,
                                 Key={"pk": {"S": table.call_pk(call_id)}}, ConsistentRead=True)["Item"]


def test_a_call_is_set_up_at_openai_recorded_and_its_timer_started(calls_api: TokenApi, offer: str,
                                                                    backend: Backend) -> None:
    response = start(calls_api, offer, voice="cedar", preset="tutor")
    assert response.status == 201, response.body
    body = body_of(response)
    assert set(body) == {"call_id", "sdp", "ends_at", "max_seconds", "hangup_token", "session"}
    assert body["call_id"].startswith(backend.id_prefix) and body["sdp"].startswith("v=0")
    assert body["max_seconds"] == 20
    model = "gpt-live-1.1" if backend.name == "live" else "gpt-realtime-2.1"
    assert body["session"] == {"model": model, "voice": "cedar", "preset": "tutor"}
    assert response.header("cache-control") == "no-store"
    assert (response.header("ratelimit-limit"), response.header("ratelimit-remaining")) == ("3", "2")

    (sent,) = calls_api.standin.requests_to(backend.create)
    assert sent.authorized and sent.status == 201
    # The caller's salted hash: in GPT-Live's session field, in the header the Realtime guide documents.
    safety_id = sent.body["session"]["safety_identifier"] if backend.name == "live" else sent.headers[
        "OpenAI-Safety-Identifier"]
    assert len(safety_id) == 32 and "203.0.113.7" not in safety_id
    call = calls_api.standin.call(body["call_id"])
    assert call is not None and call.server_side
    assert call.session["audio"]["output"]["voice"] == "cedar"
    assert call.session["instructions"].startswith("You are a patient language tutor")

    item = call_item(calls_api, body["call_id"])
    assert item["state"]["S"] == "active" and int(item["ends_at"]["N"]) == body["ends_at"]
    assert body["ends_at"] - 20 - int(item["started_at"]["N"]) in (0, 1)  # started + 20 s, rounded up
    assert item[table.CALL_TOKEN_HASH]["S"] != body["hangup_token"] and body["hangup_token"] not in json.dumps(item)
    assert day_seconds(calls_api) == 20 + LEASH_SLACK

    (execution,) = executions(calls_api.stack)
    assert execution["name"] == body["call_id"] and execution["status"] == "RUNNING"
    detail = boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])
    hangup_at = datetime.fromtimestamp(body["ends_at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(detail["input"]) == {"call_id": body["call_id"], "backend": backend.name,
                                           "hangup_at": hangup_at}


@pytest.mark.parametrize(("raw", "content_type", "status", "words"), [
    ("{not json", "application/json", 400, "not valid JSON"),
    ("[]", "application/json", 400, "JSON object"),
    ("{}", "application/json", 400, "sdp"),
    ('{"sdp": 5}', "application/json", 400, "sdp"),
    ('{"sdp": "hello"}', "application/json", 400, "v=0"),
    ('{"sdp": "v=0\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96\\r\\n"}', "application/json", 400, "not a WebRTC offer"),
    ('{"sdp": "v=0", "instructions": "be evil"}', "application/json", 400, "instructions"),
    ('{"sdp": "v=0\\r\\nm=audio 9 x 1\\r\\n", "voice": "nova"}', "application/json", 400, "voice"),
    ("v=0\r\nm=audio 9 x 1\r\n", "application/sdp", 415, "JSON"),
])
def test_bad_input_is_4xx_and_charges_nothing(calls_api: TokenApi, raw: str, content_type: str, status: int,
                                              words: str, backend: Backend) -> None:
    response = calls_api.call("POST", "/calls", raw=raw, headers={"content-type": content_type})
    assert response.status == status, response.body
    assert words in body_of(response)["error"]["message"]
    assert calls_api.standin.requests_to(backend.create) == [] and day_seconds(calls_api) == 0
    assert executions(calls_api.stack) == []


def test_realtime_takes_an_audio_only_offer_unless_the_owner_allows_the_channel(
        stack: LocalStack, fresh_standin: StandIn, offers: dict[bool, str]) -> None:
    realtime = BACKENDS[0]
    locked = load(stack, fresh_standin, realtime)
    refused = start(locked, offers[True])
    assert refused.status == 400, refused.body
    assert body_of(refused)["error"]["message"] == (
        "sdp: the offer must have exactly one audio section and nothing else (no data channel)")
    assert fresh_standin.requests_to("calls") == [] and day_seconds(locked) == 0
    assert start(locked, offers[False]).status == 201
    opened = load(stack, fresh_standin, realtime, REALTIME_DATA_CHANNEL="true")
    assert body_of(opened.call("GET", "/options"))["data_channel"] is True
    assert start(opened, offers[True]).status == 201
    fresh_standin.reset()


def test_over_16_kb_is_413_but_a_large_real_offer_fits(calls_api: TokenApi, offer: str, backend: Backend) -> None:
    padded = offer + "a=x-padding:" + "p" * (16 * 1024) + "\r\n"
    response = start(calls_api, padded)
    assert response.status == 413 and body_of(response)["error"]["code"] == "payload_too_large"
    assert calls_api.standin.requests_to(backend.create) == []
    big = offer + "".join(f"a=x-note:{i:05d}{'n' * 60}\r\n" for i in range(100))  # about 7 KB more: over 4 KB
    assert len(json.dumps({"sdp": big})) > 4096
    assert start(calls_api, big).status == 201


def test_the_minutes_budget_counts_reservations_and_an_early_hangup_gives_back(
        stack: LocalStack, fresh_standin: StandIn, offer: str, backend: Backend) -> None:
    """DailyCallMinutes=1, MaxCallSeconds=20: each call reserves 20 + 5 s, so floor(60 / 25) = 2 fit."""
    api = load(stack, fresh_standin, backend, MAX_CALL_SECONDS="20", DAILY_CALL_MINUTES="1", ANONYMOUS_BURST="10",
               ANONYMOUS_DAILY_CALL_MINUTES="1", CALLER_DAILY_CALL_MINUTES="1")
    first, second = start(api, offer), start(api, offer)
    assert (first.status, second.status) == (201, 201)
    third = start(api, offer)
    assert third.status == 429 and body_of(third)["error"]["code"] == "daily_budget_exhausted"
    assert 0 < int(third.header("retry-after") or 0) <= 86_400
    assert len(fresh_standin.requests_to(backend.create)) == 2, "the refused call never reached OpenAI"

    call = body_of(first)
    ended = api.call("POST", f"/calls/{call['call_id']}/hangup", {"hangup_token": call["hangup_token"]})
    assert ended.status == 200, ended.body
    credited = body_of(ended)["credited_seconds"]
    assert 0 <= credited <= 20 - MINIMUM[backend.name]
    assert day_seconds(api) == 2 * 25 - credited
    if backend.name == "realtime" and credited >= 15:
        assert start(api, offer).status == 201, "one more call fits after the early hangup"
    if backend.name == "live":  # the 15 s OpenAI bills and the leash's slack stay spent: 45 of 60 s, no room
        assert start(api, offer).status == 429
    fresh_standin.reset()


def test_zero_daily_minutes_means_no_calls(stack: LocalStack, fresh_standin: StandIn, offer: str,
                                           backend: Backend) -> None:
    api = load(stack, fresh_standin, backend, DAILY_CALL_MINUTES="0")
    response = start(api, offer)
    assert response.status == 429 and body_of(response)["error"]["code"] == "daily_budget_exhausted"
    assert fresh_standin.requests_to(backend.create) == []


def test_early_hangup_needs_the_token_ends_once_and_leaves_the_timer(calls_api: TokenApi, offer: str,
                                                                    backend: Backend) -> None:
    call = body_of(start(calls_api, offer))
    path = f"/calls/{call['call_id']}/hangup"
    for wrong in ({"hangup_token": "n" * 43}, {}, None):
        refused = calls_api.call("POST", path, wrong) if wrong is not None else calls_api.call("POST", path)
        assert refused.status == 403 and body_of(refused)["error"]["code"] == "invalid_hangup_token"
    malformed = calls_api.call("POST", path, {"hangup_token": "nope"})
    assert malformed.status == 400 and body_of(malformed)["error"]["message"].startswith("hangup_token: ")
    assert calls_api.standin.hangups_for(call["call_id"]) == [], "a refused hangup leaves the call alone"
    assert call_item(calls_api, call["call_id"])["state"]["S"] == "active"

    first = calls_api.call("POST", path, {"hangup_token": call["hangup_token"]})
    assert first.status == 200 and body_of(first)["state"] == "ended" and body_of(first)["credited_seconds"] > 0
    asked = len(calls_api.standin.hangups_for(call["call_id"]))
    second = calls_api.call("POST", path, {"hangup_token": call["hangup_token"]})
    assert second.status == 200 and body_of(second)["credited_seconds"] == 0
    assert calls_api.standin.hangups_for(call["call_id"])[0].status == 200
    assert len(calls_api.standin.hangups_for(call["call_id"])) == asked, "the second asks OpenAI nothing"
    assert calls_api.standin.call(call["call_id"]).wait_ended(5)  # type: ignore[union-attr]
    item = call_item(calls_api, call["call_id"])
    assert (item["state"]["S"], item["ended_by"]["S"]) == ("ended", "caller") and "active" not in item
    (execution,) = executions(calls_api.stack)
    assert execution["status"] == "RUNNING", "the timer still hangs up at the end, whatever an early answer said"


def test_an_unknown_call_is_404(calls_api: TokenApi) -> None:
    response = calls_api.call("POST", "/calls/rtc_nosuchcall/hangup", {"hangup_token": "x" * 43})
    assert response.status == 404 and body_of(response)["error"]["code"] == "not_found"


@pytest.mark.parametrize(("fault", "status", "code", "maybe_created"), [
    ({"status": 400}, 400, "invalid_request", False),  # OpenAI could not use the offer: the caller's to fix
    ({"status": 400, "body": {"error": {"message": "Unknown model", "type": "invalid_request_error",
                                        "param": "session.model", "code": "invalid_value"}}}, 502, "upstream_error",
     False),
    ({"status": 429, "headers": {"Retry-After": "9"}}, 503, "upstream_busy", False),
    ({"status": 500, "times": 2}, 502, "upstream_error", False),
    # OpenAI may have created the call: the day keeps what an unconnected call costs (15 s on Live, 0 on Realtime).
    ({"status": 201, "delay_seconds": 1.5, "proceed": True}, 504, "upstream_timeout", True),
    # Received, then the connection dropped: OpenAI may have made the call, so it is not asked a second time.
    ({"drop": True}, 502, "upstream_error", True),
], ids=["400-offer", "400-session", "429", "500-twice", "timeout", "dropped-once-not-repeated"])
def test_an_openai_failure_gives_back_all_but_what_it_may_cost(
        stack: LocalStack, fresh_standin: StandIn, offer: str, backend: Backend, fault: dict[str, Any], status: int,
        code: str, maybe_created: bool) -> None:
    api = load(stack, fresh_standin, backend, OPENAI_TIMEOUT_SECONDS="0.5")
    times = fault.get("times", 1)
    fresh_standin.faults.add(Fault(**fault, endpoint=backend.create))
    response = start(api, offer)
    assert response.status == status and body_of(response)["error"]["code"] == code
    assert day_seconds(api) == (MINIMUM[backend.name] if maybe_created else 0) and executions(stack) == []
    assert start(api, offer).status == 201
    # A slow answer is still on its way when the handler gives up: let it land before the next test looks.
    deadline = time.monotonic() + 5
    while len(fresh_standin.requests_to(backend.create)) < times + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fresh_standin.requests_to(backend.create)) == times + 1, "the failed setup's attempts, then one call"
    fresh_standin.reset()


def test_no_timer_no_call_hung_up_at_once_and_given_back(calls_api: TokenApi, offer: str, backend: Backend) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "StartExecution")

    calls_api.module.services.stepfunctions.meta.events.register("before-call.sfn.StartExecution", refuse)
    response = start(calls_api, offer)
    assert response.status == 503 and body_of(response)["error"]["code"] == "leash_unavailable"
    assert int(response.header("retry-after") or 0) > 0
    assert len(calls_api.standin.requests_to(backend.create)) == 1
    (call,) = calls_api.standin.calls.all()
    assert calls_api.standin.hangups_for(call.call_id)[0].status == 200
    assert call.wait_ended(5)
    assert day_seconds(calls_api) == MINIMUM[backend.name]
    assert call_item(calls_api, call.call_id)["state"]["S"] == "ended"


def test_dynamodb_failing_is_503_and_no_call_is_created(calls_api: TokenApi, offer: str, backend: Backend) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "TransactWriteItems")

    calls_api.module.services.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", refuse)
    response = start(calls_api, offer)
    assert response.status == 503 and body_of(response)["error"]["code"] == "limiter_unavailable"
    assert calls_api.standin.requests_to(backend.create) == []


def test_the_token_route_is_404_unless_switched_on(stack: LocalStack, fresh_standin: StandIn,
                                                   backend: Backend) -> None:
    """Whatever the backend of calls, a token is always for the Realtime API."""
    off = load(stack, fresh_standin, backend, ENABLE_TOKEN_ROUTE="false")
    # Switched off, the route is absent whatever is sent: no 400, 415 or 405 that would say it is there.
    for method, body, raw in (("POST", None, None), ("POST", {"voice": "nope"}, None), ("POST", None, "not json"),
                              ("GET", None, None), ("DELETE", None, None)):
        response = off.call(method, "/token", body, raw=raw)
        assert response.status == 404, (method, body, raw, response.status)
        assert body_of(response)["error"] == {
            "code": "not_found", "message": "POST /token is switched off on this service; use POST /calls."}
    assert fresh_standin.requests_to("client_secrets") == []
    on = load(stack, fresh_standin, backend, ENABLE_TOKEN_ROUTE="true")
    token = on.call("POST", "/token")
    assert token.status == 200 and body_of(token)["session"]["model"] == "gpt-realtime-2.1"


def test_options_state_the_limit_but_not_what_is_left(calls_api: TokenApi, offer: str, backend: Backend) -> None:
    before = body_of(calls_api.call("GET", "/options"))
    assert before["max_call_seconds"] == 20 and before["backend"] == backend.name and before["token_route"] is True
    assert before["data_channel"] is (backend.name == "live")
    start(calls_api, offer)
    after = body_of(calls_api.call("GET", "/options"))
    assert after == before, "nothing in /options moves with the budget"
    assert not any("remaining" in key or "left" in key for key in json.dumps(after).split('"'))
