"""The local system's API Gateway throttles per route, as the template's stage declares them with the parameters
given: a flood of POST /calls is refused by the gateway (429) while POST /calls/{call_id}/hangup and a route under
the default settings still reach the function."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from local.apigw import Throttle
from local.system import LocalSystem

BURST, RATE = 2, 1  # the template's least: a flood passes them within its first requests
PARAMETERS = {"ThrottleBurstLimit": str(BURST), "ThrottleRateLimit": str(RATE), "HangupThrottleBurstLimit": "5",
              "HangupThrottleRateLimit": "5"}
GATEWAY_429 = {"message": "Too Many Requests"}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(port=0, parameters=PARAMETERS) as running:
        yield running


def test_the_route_throttles_come_from_the_template_with_the_parameters_given(system: LocalSystem) -> None:
    assert system.throttles is not None
    assert system.throttles.throttle("POST /calls") == Throttle(BURST, RATE)
    assert system.throttles.throttle("POST /calls/{call_id}/hangup") == Throttle(5, 5.0)
    assert system.throttles.throttle("GET /options") == Throttle(BURST, RATE)  # DefaultRouteSettings


def _is_gateway_429(response: httpx.Response) -> bool:
    return response.status_code == 429 and response.json() == GATEWAY_429


def test_a_flood_of_calls_is_refused_by_the_gateway_while_hangups_still_reach_the_function(
        system: LocalSystem) -> None:
    origin = system.page_url.rstrip("/")
    with httpx.Client(base_url=system.api_url, headers={"origin": origin}, timeout=30) as client:
        reached = 0
        started = time.monotonic()
        for _ in range(200):
            # Not an offer: the function refuses it at once, so nothing is set up with OpenAI.
            answer = client.post("/calls", json={"sdp": "not an offer"})
            if _is_gateway_429(answer):
                break
            assert "error" in answer.json(), answer.text  # the function's own refusal of the body
            reached += 1
        elapsed = time.monotonic() - started
        assert _is_gateway_429(answer), "200 requests and the gateway never throttled POST /calls"
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["access-control-allow-origin"] == origin  # CORS as for any other answer
        # The bucket: its burst, plus what refilled while the flood ran (one more for a refill at the edge).
        assert BURST <= reached <= BURST + RATE * elapsed + 1, (reached, elapsed)

        # POST /calls is throttled now; the hangup route has its own bucket, and the function answers it (its
        # error for a call that does not exist, not the gateway's 429).
        hangups = [client.post("/calls/rtc_00000000000000000000000000000000/hangup", json={"hangup_token": "x"})
                   for _ in range(3)]
        assert all(h.status_code != 429 and "error" in h.json() for h in hangups), [h.text for h in hangups]
        # So does a route under the default settings: a bucket of its own, not POST /calls's.
        options = client.get("/options")
        assert options.status_code == 200, options.text
    print(f"\n{reached} POST /calls reached the function in {elapsed:.2f} s before the gateway's first 429")
