"""The local API Gateway's route throttles, on an injected clock: a token bucket per route (the defaults apply to
each route separately, a route in RouteSettings has its own numbers), checked before the function is invoked, and
a refused request answered as an HTTP API answers it (429, its JSON message, CORS headers as for any answer)."""

from __future__ import annotations

import json
from typing import Any

from local.apigw import Cors, Route, Throttle, Throttles
from local.gateway import Gateway

DEFAULT = {"ThrottlingBurstLimit": "2", "ThrottlingRateLimit": "1"}  # as the template resolves them: strings
ROUTES = {"POST /calls": {"ThrottlingBurstLimit": "2", "ThrottlingRateLimit": "1"},
          "POST /calls/{call_id}/hangup": {"ThrottlingBurstLimit": "3", "ThrottlingRateLimit": "0.5"}}
ORIGIN = "https://page.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def takes(throttles: Throttles, route_key: str, count: int) -> list[bool]:
    return [throttles.allow(route_key) for _ in range(count)]


def test_a_bucket_holds_its_burst_and_refills_at_its_rate() -> None:
    clock = Clock()
    throttles = Throttles(DEFAULT, ROUTES, clock)
    assert takes(throttles, "POST /calls", 3) == [True, True, False]
    clock.now += 0.5  # half a token
    assert takes(throttles, "POST /calls", 1) == [False]
    clock.now += 0.5
    assert takes(throttles, "POST /calls", 2) == [True, False]
    clock.now += 3600  # refilled, but never past the burst
    assert takes(throttles, "POST /calls", 3) == [True, True, False]


def test_each_route_has_its_own_bucket_with_its_own_numbers() -> None:
    clock = Clock()
    throttles = Throttles(DEFAULT, ROUTES, clock)
    assert takes(throttles, "POST /calls", 3) == [True, True, False]
    # A flood of POST /calls takes nothing from the hangup route's bucket, which is bigger and slower.
    assert takes(throttles, "POST /calls/{call_id}/hangup", 4) == [True, True, True, False]
    clock.now += 1
    assert takes(throttles, "POST /calls/{call_id}/hangup", 1) == [False]  # 0.5 a second: half a token yet
    clock.now += 1
    assert takes(throttles, "POST /calls/{call_id}/hangup", 2) == [True, False]
    # Routes under the defaults each get a bucket of their own, not one shared among them.
    assert takes(throttles, "GET /options", 3) == [True, True, False]
    assert takes(throttles, "GET /health", 3) == [True, True, False]


def test_route_settings_fall_back_to_the_defaults_field_by_field() -> None:
    throttles = Throttles(DEFAULT, {"POST /calls": {"ThrottlingBurstLimit": "5"}}, Clock())
    assert throttles.throttle("POST /calls") == Throttle(5, 1.0)
    assert throttles.throttle("GET /options") == Throttle(2, 1.0)
    unthrottled = Throttles({}, {"POST /calls": {"ThrottlingRateLimit": "1"}}, Clock())
    assert unthrottled.throttle("POST /calls") is None and unthrottled.throttle("GET /options") is None
    assert takes(unthrottled, "POST /calls", 50) == [True] * 50


def test_a_throttled_request_is_answered_by_the_gateway_without_invoking_the_function() -> None:
    invoked: list[str] = []

    def invoke(event: dict[str, Any]) -> Any:
        invoked.append(event["routeKey"])
        return {"statusCode": 404, "headers": {"content-type": "application/json"}, "body": '{"error": {}}'}

    routes = [Route("POST", "/calls"), Route("POST", "/calls/{call_id}/hangup")]
    gateway = Gateway(routes, Cors([ORIGIN], ["POST"]), invoke, "api.local", Throttles(DEFAULT, ROUTES, Clock()))

    def post(path: str) -> Any:
        return gateway.handle("POST", path, "", [("origin", ORIGIN)], b"{}", "192.0.2.1")

    assert [post("/calls").status for _ in range(3)] == [404, 404, 429]
    refused = post("/calls")
    assert refused.status == 429 and json.loads(refused.body) == {"message": "Too Many Requests"}
    assert refused.header("content-type") == "application/json"
    assert refused.header("access-control-allow-origin") == ORIGIN
    assert post("/calls/rtc_x/hangup").status == 404  # the function's answer: this route was not throttled
    assert invoked == ["POST /calls", "POST /calls", "POST /calls/{call_id}/hangup"]
    assert gateway.handle("POST", "/nowhere", "", [], b"", "192.0.2.1").status == 404  # no route, no bucket
