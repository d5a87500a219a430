"""API Gateway (HTTP API) in front of the function: CORS preflights answered by the gateway itself, the template's
routes, each route's throttle (429 before the function is invoked), the route's JWT authorizer if it has one (401
before the function is invoked; its claims into the event), the v2.0 event to the function, its result back as an
HTTP response with CORS headers.

The throttle comes before the authorizer: a flood of bad tokens is refused by the bucket and costs the issuer no
key fetches. AWS does not document the order; a 429 or a 401 both keep the function from running."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from local.apigw import Cors, HttpResponse, Route, Throttles, http_api_event, match_route, to_http_response
from local.jwt_authorizer import Refused
from local.template_stack import LocalStack

JSON = [("content-type", "application/json")]
TOO_MANY_REQUESTS = b'{"message":"Too Many Requests"}'


class Gateway:
    def __init__(self, routes: list[Route], cors: Cors, invoke: Callable[[dict[str, Any]], Any], domain: str,
                 throttles: Throttles | None = None) -> None:
        self.routes, self.cors, self._invoke, self._domain = routes, cors, invoke, domain
        self.throttles = throttles or Throttles({}, {})

    def handle(self, method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes,
               source_ip: str) -> HttpResponse:
        origin = next((v for k, v in headers if k.lower() == "origin"), None)
        if method == "OPTIONS" and origin is not None:
            lookup = {k.lower(): v for k, v in headers}
            return self.cors.preflight(origin, lookup.get("access-control-request-method"),
                                       lookup.get("access-control-request-headers"))
        route, params = match_route(self.routes, method, path)
        if route is None:
            return HttpResponse(404, JSON, b'{"message":"Not Found"}')
        if not self.throttles.allow(route.key):
            return self.cors.decorate(origin, HttpResponse(429, JSON, TOO_MANY_REQUESTS))
        event = http_api_event(method, path, route=route, path_parameters=params, query=query, headers=headers,
                               body=body or None, source_ip=source_ip, domain=self._domain)
        if route.authorizer is not None:
            try:
                # The identity source is read as the function would read the header (duplicates comma-joined).
                granted = route.authorizer.authorize(event["headers"], list(route.scopes))
            except Refused as refusal:
                return self.cors.decorate(origin, HttpResponse(
                    refusal.status, [*JSON, ("www-authenticate", refusal.challenge)], refusal.body))
            event["requestContext"]["authorizer"] = granted.request_context()
        try:
            result = self._invoke(event)
        except Exception:  # what API Gateway says when the integration fails
            return HttpResponse(500, JSON, b'{"message":"Internal Server Error"}')
        return self.cors.decorate(origin, to_http_response(result))


def cors_of(stack: LocalStack) -> Cors:
    """The HttpApi's CORS configuration as API Gateway receives it from the translated template."""
    config = stack.http_api_cors
    return Cors(allow_origins=list(config.get("allowOrigins", [])),
                allow_methods=list(config.get("allowMethods", [])),
                allow_headers=list(config.get("allowHeaders", [])),
                expose_headers=list(config.get("exposeHeaders", [])),
                max_age=config.get("maxAge"))


def throttles_of(stack: LocalStack, clock: Callable[[], float] = time.monotonic) -> Throttles:
    """The $default stage's DefaultRouteSettings and RouteSettings, as the translated template gives them."""
    stage = stack.http_api_stage
    return Throttles(stage.get("DefaultRouteSettings", {}), stage.get("RouteSettings", {}), clock)
