"""Route matching as API Gateway (HTTP API) does it: exact routes first, then the most specific route with
{parameters}, then the greedy {proxy+}."""

from __future__ import annotations

from local.apigw import Route, match_route

ROUTES = [Route("POST", "/calls"), Route("POST", "/calls/{call_id}/hangup"), Route("GET", "/health"),
          Route("ANY", "/{proxy+}")]


def test_exact_then_parameters_then_greedy() -> None:
    assert match_route(ROUTES, "POST", "/calls") == (Route("POST", "/calls"), None)
    assert match_route(ROUTES, "POST", "/calls/rtc_1/hangup") == (Route("POST", "/calls/{call_id}/hangup"),
                                                                   {"call_id": "rtc_1"})
    assert match_route(ROUTES, "GET", "/calls/rtc_1/hangup") == (Route("ANY", "/{proxy+}"),
                                                                  {"proxy": "calls/rtc_1/hangup"})
    assert match_route(ROUTES, "POST", "/calls//hangup")[0] == Route("ANY", "/{proxy+}")  # empty: no parameter
    assert match_route(ROUTES, "POST", "/calls/a/b/hangup")[0] == Route("ANY", "/{proxy+}")


def test_the_most_specific_parameter_route_wins() -> None:
    routes = [Route("GET", "/{a}/{b}"), Route("GET", "/calls/{b}")]
    assert match_route(routes, "GET", "/calls/x") == (Route("GET", "/calls/{b}"), {"b": "x"})
    assert match_route(routes, "GET", "/other/x") == (Route("GET", "/{a}/{b}"), {"a": "other", "b": "x"})
    assert match_route(routes, "GET", "/") == (None, None)
