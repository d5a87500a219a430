"""What API Gateway (HTTP API, payload format 2.0) does around the function, done locally.

- `routes_from_template` reads the function's routes: those of the HttpApi's OpenAPI body (SAM's events) and those
  declared as `AWS::ApiGatewayV2::Route` resources, each with its JWT authorizer if it has one (local.jwt_authorizer).
- `http_api_event` builds the full v2.0 event API Gateway would send: route key from the template's routes, source
  IP, lowercased headers, cookies, query string, request id, the authorizer's claims, and the body base64-encoded
  where API Gateway would.
- `to_http_response` turns the function's result back into status, headers and body bytes.
- `Cors` answers preflights and decorates responses as the HttpApi's CorsConfiguration does.
- `Throttles` keeps the stage's token buckets, one per route, as its DefaultRouteSettings and RouteSettings say.
- `LambdaContext` is the context object the handler receives.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from local.jwt_authorizer import JwtAuthorizer

TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml",
              "application/x-www-form-urlencoded", "+json", "+xml")


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # /token or /{proxy+}
    # The route's JWT authorizer (AuthorizationType JWT): the gateway runs it before the function. Shared by the
    # routes that name the same authorizer, as its key cache is.
    authorizer: JwtAuthorizer | None = field(default=None, compare=False, repr=False)
    scopes: tuple[str, ...] = ()  # AuthorizationScopes: a token needs one of them

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def routes_from_template(resources: dict[str, Any], function_logical_id: str) -> list[Route]:
    """The HttpApi routes of one function, from the template as `provision` leaves it (API Gateway's own source of
    truth): the OpenAPI body's, then the Route resources whose integration invokes the function."""
    routes = []
    for resource in resources.values():
        if resource.get("Type") != "AWS::ApiGatewayV2::Api":
            continue
        for path, methods in resource.get("Properties", {}).get("Body", {}).get("paths", {}).items():
            for method, operation in methods.items():
                uri = json.dumps(operation.get("x-amazon-apigateway-integration", {}).get("uri", ""))
                if function_logical_id in uri:
                    name = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    routes.append(Route(name, path))
    return routes + _route_resources(resources, function_logical_id)


def _route_resources(resources: dict[str, Any], function_logical_id: str) -> list[Route]:
    """`AWS::ApiGatewayV2::Route` resources, read with their values resolved (local.template_stack.provision
    resolves them and drops those whose condition is false; their Refs to an integration or an authorizer are
    that resource's logical id)."""
    authorizers: dict[str, JwtAuthorizer] = {}
    routes = []
    for logical, resource in resources.items():
        if resource.get("Type") != "AWS::ApiGatewayV2::Route":
            continue
        props = resource.get("Properties", {})
        if not isinstance(props.get("RouteKey"), str) or not isinstance(props.get("Target", ""), str):
            raise ValueError(f"{logical}: its values are not resolved (read the resources `provision` returns)")
        integration = resources.get(props.get("Target", "").removeprefix("integrations/"), {})
        if function_logical_id not in json.dumps(integration.get("Properties", {}).get("IntegrationUri", "")):
            continue
        method, _, path = props["RouteKey"].partition(" ")
        kind = props.get("AuthorizationType", "NONE")
        authorizer = None
        if kind == "JWT":
            name = props["AuthorizerId"]
            if name not in authorizers:
                authorizers[name] = JwtAuthorizer.from_properties(name, resources[name]["Properties"])
            authorizer = authorizers[name]
        elif kind != "NONE":  # an open route where AWS would check something: never emulate that silently
            raise NotImplementedError(f"{logical}: AuthorizationType {kind} is not emulated locally")
        routes.append(Route(method, path, authorizer, tuple(props.get("AuthorizationScopes") or ())))
    return routes


def match_route(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str] | None]:
    """API Gateway's order: an exact route, then the most specific route with {parameters}, then a greedy one."""
    for route in routes:
        if route.path == path and route.method in (method, "ANY"):
            return route, None
    candidates = []
    for route in routes:
        params = _path_parameters(route.path, path) if route.method in (method, "ANY") else None
        if params is not None:
            candidates.append((sum(not s.startswith("{") for s in route.path.split("/")), route, params))
    if candidates:
        _, route, params = max(candidates, key=lambda c: c[0])
        return route, params
    for route in routes:
        if route.path.endswith("/{proxy+}") and route.method in (method, "ANY"):
            prefix = route.path.removesuffix("{proxy+}")
            if path.startswith(prefix) and len(path) > len(prefix):
                return route, {"proxy": path[len(prefix):]}
    return None, None


def _path_parameters(template: str, path: str) -> dict[str, str] | None:
    expected, actual = template.split("/"), path.split("/")
    if template.endswith("+}") or "{" not in template or len(expected) != len(actual):
        return None
    params: dict[str, str] = {}
    for want, got in zip(expected, actual, strict=True):
        if want.startswith("{") and want.endswith("}") and got:
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def is_text(content_type: str | None) -> bool:
    content_type = (content_type or "").lower()
    return any(kind in content_type for kind in TEXT_TYPES)


def http_api_event(
    method: str,
    path: str,
    *,
    route: Route | None = None,
    path_parameters: dict[str, str] | None = None,
    query: str = "",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
    api_id: str = "localapi",
    domain: str = "localhost",
    stage: str = "$default",
    request_id: str | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`authorizer`: what the route's authorizer passes on (`{"jwt": {"claims", "scopes"}}`), for routes with one."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in pairs:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    merged.setdefault("host", domain)
    raw = body.encode() if isinstance(body, str) else body
    encoded = False
    text_body: str | None = None
    if raw:
        if is_text(merged.get("content-type")):
            try:
                text_body = raw.decode("utf-8")
            except UnicodeDecodeError:
                encoded = True
        else:
            encoded = True
        if encoded:
            text_body = base64.b64encode(raw).decode()
    query_params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        query_params[key] = f"{query_params[key]},{value}" if key in query_params else value
    now = time.time()
    route_key = route.key if route else "$default"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id or _request_id(),
            "routeKey": route_key,
            "stage": stage,
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    if cookies:
        event["cookies"] = cookies
    if query_params:
        event["queryStringParameters"] = query_params
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text_body is not None:
        event["body"] = text_body
    return event


def _request_id() -> str:
    """API Gateway's look: `Xa1b2cDEFHcEJ5Q=`."""
    return base64.b64encode(secrets.token_bytes(11)).decode()[:14] + "="


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def to_http_response(result: Any) -> HttpResponse:
    """Payload 2.0 rules: a dict with statusCode is a full response; anything else is a 200 JSON body."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return HttpResponse(200, [("content-type", "application/json")], json.dumps(result).encode())
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    return HttpResponse(int(result["statusCode"]), headers, raw)


@dataclass
class Cors:
    """The HttpApi CorsConfiguration: API Gateway answers preflights itself and adds headers to responses."""

    allow_origins: list[str]
    allow_methods: list[str] = field(default_factory=list)
    allow_headers: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age: int | None = None

    def allows(self, origin: str | None) -> bool:
        return origin is not None and ("*" in self.allow_origins or origin in self.allow_origins)

    def preflight(self, origin: str | None, method: str | None, headers: str | None) -> HttpResponse:
        if not self.allows(origin) or (method or "").upper() not in [m.upper() for m in self.allow_methods]:
            return HttpResponse(204, [], b"")  # API Gateway answers, without CORS headers: the browser refuses
        requested = [h.strip().lower() for h in (headers or "").split(",") if h.strip()]
        allowed = [h.lower() for h in self.allow_headers]
        out = [("access-control-allow-origin", origin or ""),
               ("access-control-allow-methods", ",".join(self.allow_methods)),
               ("access-control-allow-headers", ",".join(h for h in requested if h in allowed or "*" in allowed)),
               ("vary", "origin")]
        if self.max_age is not None:
            out.append(("access-control-max-age", str(self.max_age)))
        return HttpResponse(204, out, b"")

    def decorate(self, origin: str | None, response: HttpResponse) -> HttpResponse:
        if not self.allows(origin):
            return response
        extra = [("access-control-allow-origin", origin or ""), ("vary", "origin")]
        if self.expose_headers:
            extra.append(("access-control-expose-headers", ",".join(self.expose_headers)))
        return HttpResponse(response.status, response.headers + extra, response.body)


@dataclass(frozen=True)
class Throttle:
    burst: int  # ThrottlingBurstLimit: the bucket's size, so requests at once
    rate: float  # ThrottlingRateLimit: tokens put back per second


class Throttles:
    """An HTTP API stage's route throttling: a token bucket per route key, checked before the integration runs.
    The DefaultRouteSettings apply to each route separately (every route its own bucket with those numbers); a
    route named in RouteSettings has its own numbers. A field a route's settings leave out comes from the defaults;
    a route with no burst or no rate at all is not throttled here (only AWS's account-wide limit would apply)."""

    def __init__(self, default: dict[str, Any], routes: dict[str, dict[str, Any]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._default, self._routes, self._clock = default, routes, clock
        self._buckets: dict[str, list[float]] = {}  # route key -> [tokens, when they were counted]
        self._lock = threading.Lock()  # requests arrive on many threads

    def throttle(self, route_key: str) -> Throttle | None:
        settings = {**self._default, **self._routes.get(route_key, {})}
        if "ThrottlingBurstLimit" not in settings or "ThrottlingRateLimit" not in settings:
            return None
        return Throttle(int(float(settings["ThrottlingBurstLimit"])), float(settings["ThrottlingRateLimit"]))

    def allow(self, route_key: str) -> bool:
        """Take a token from the route's bucket; False (429) when it is empty."""
        limit = self.throttle(route_key)
        if limit is None:
            return True
        with self._lock:
            now = self._clock()
            tokens, counted = self._buckets.get(route_key, (float(limit.burst), now))  # a bucket starts full
            tokens = min(float(limit.burst), tokens + (now - counted) * limit.rate)
            allowed = tokens >= 1
            self._buckets[route_key] = [tokens - 1 if allowed else tokens, now]
            return allowed


class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str = "TokenFunction", memory_mb: int = 256, timeout_s: float = 25) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
