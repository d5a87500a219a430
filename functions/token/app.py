"""The HTTP edge of the token function: `lambda_handler`, the routes, and how a failure becomes an answer.

Everything is built once per container at import (`tokenvend.wiring`); each route hands the request to the one
service it needs and turns the result into JSON. API Gateway answers CORS preflights itself (CorsConfiguration in
template.yaml); requests refused before routing (a foreign Origin, an oversized body) are answered by the same
error path as everything else.

The resolver routes only: bodies are parsed by `tokenvend.bodies` (no pydantic at run time), and the OpenAPI
document is a file generated from the same route table and shapes, served by `GET /openapi.json`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenvend import bodies, metric_names, routes, schemas, wiring
from tokenvend.admission import RequestFacts
from tokenvend.errors import ApiError, Code
from tokenvend.observability import count, logger, metrics
from tokenvend.screening import screen
from tokenvend.settings import Settings

NO_STORE = {"Cache-Control": "no-store"}
DENIALS = (401, 403, 429)

settings = Settings.from_env()
services = wiring.build(settings)
app = APIGatewayHttpResolver()


# --- routes (documented in tokenvend/openapi.py, from the same route table) ----------------------------------

@app.post(routes.CALLS.handler_path)
def post_call() -> Response:
    return _start_call(_facts())


@app.post(routes.USER_CALLS.handler_path)
def post_user_call() -> Response:
    if settings.jwt is None:
        raise ApiError(404, Code.NOT_FOUND, "POST /user/calls is not set up on this service (no JwtIssuer).")
    # Only API Gateway's JWT authorizer puts claims here; without them (a route wired without it) nobody gets in.
    claims = app.current_event.request_context.authorizer.jwt_claim
    if not claims:
        raise ApiError(401, Code.INVALID_API_KEY, "This route needs a sign-in token.", {"WWW-Authenticate": "Bearer"})
    event = app.current_event
    return _start_call(RequestFacts(None, event.request_context.http.source_ip,
                                    {k: v for k, v in claims.items() if isinstance(v, str)}))


def _start_call(facts: RequestFacts) -> Response:
    body = _body(schemas.CALL_REQUEST)
    answer = services.calls.start(facts, body["sdp"] or "", body["voice"], body["preset"], body["turnstile_token"])
    logger.append_keys(decision="call_started")
    return _json(201, answer.body, {**NO_STORE, **answer.headers})


@app.post(routes.HANGUP.handler_path)
def post_hangup(call_id: str) -> Response:
    # A missing token is the service's 403 (it knows the call), not a 400: the body may be absent.
    body = _body(schemas.HANGUP_REQUEST)
    answer = services.calls.hang_up(call_id, body["hangup_token"])
    logger.append_keys(decision="hung_up")
    return _json(200, answer.body, {**NO_STORE, **answer.headers})


@app.post(routes.TOKEN.handler_path)
def post_token() -> Response:
    if not settings.enable_token_route:
        raise _token_route_off()  # before the body is read: a switched-off route answers alike whatever is sent
    body = _body(schemas.TOKEN_REQUEST)
    answer = services.vendor.vend(_facts(), body["voice"], body["preset"])
    logger.append_keys(decision="issued")
    return _json(200, answer.body, {**NO_STORE, **answer.headers})


@app.get(routes.OPTIONS.handler_path)
def get_options() -> Response:
    return _json(200, services.options.document(), {"Cache-Control": "max-age=60"})


@app.get(routes.HEALTH.handler_path)
def get_health() -> Response:
    return _json(200, {"status": "ok"}, NO_STORE)


@app.get(routes.OPENAPI.handler_path)
def get_openapi() -> Response:
    from tokenvend import openapi  # rare: a cold start does not pay for it

    return Response(200, content_types.APPLICATION_JSON, openapi.served(settings), {"Cache-Control": "max-age=300"})


def _body(spec: schemas.BodySpec) -> dict[str, str | None]:
    event = app.current_event
    return bodies.parse(spec, event.body, event.headers.get("content-type"))


def _facts() -> RequestFacts:
    event = app.current_event
    return RequestFacts(event.headers.get("authorization"), event.request_context.http.source_ip)


def _token_route_off() -> ApiError:
    return ApiError(404, Code.NOT_FOUND, "POST /token is switched off on this service; use POST /calls.")


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body), headers)


# --- failures: every one becomes {"error": {"code", "message"}} here ------------------------------------------

def error_response(error: ApiError) -> Response:
    if error.status in DENIALS or error.code in (Code.ISSUING_PAUSED, Code.LIMITER_UNAVAILABLE):
        count(metric_names.DENIED, reason=str(error.code))
    if 400 <= error.status < 500:
        metric_names.tally(metric_names.CLIENT_ERRORS)
    logger.append_keys(decision=str(error.code))
    return Response(error.status, content_types.APPLICATION_JSON, error.body(), {**NO_STORE, **error.headers})


@app.exception_handler(ApiError)
def on_api_error(error: ApiError) -> Response:
    return error_response(error)


@app.not_found
def on_not_found(_: NotFoundError) -> Response:
    path = app.current_event.path
    methods = routes.methods_for(path)
    if routes.TOKEN.matches(path) and not settings.enable_token_route:
        return error_response(_token_route_off())  # the same answer as a POST: no 405 for a route that is off
    if methods:
        allowed = ", ".join(methods)
        error = ApiError(405, Code.METHOD_NOT_ALLOWED, f"Use {allowed} for {path}.", {"Allow": allowed})
        return error_response(error)
    return error_response(ApiError(404, Code.NOT_FOUND, "No such path."))


@app.exception_handler(Exception)
def on_unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return error_response(ApiError(500, Code.INTERNAL, "Something went wrong on our side."))


def _proxy_result(response: Response) -> dict[str, Any]:
    """What resolve() would return for this response (payload format 2.0)."""
    headers = {name: value if isinstance(value, str) else ",".join(value) for name, value in response.headers.items()}
    return {"statusCode": response.status_code, "headers": headers,
            "body": response.body, "isBase64Encoded": False}


# --- entry point ---------------------------------------------------------------------------------------------

@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    event, refused = screen(event, settings.allowed_origins)
    result = app.resolve(event, context) if refused is None else _proxy_result(error_response(refused))
    logger.info("request", extra={
        "method": event.get("requestContext", {}).get("http", {}).get("method"),
        "path": event.get("rawPath"),
        "status": result.get("statusCode"),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    })
    return result
