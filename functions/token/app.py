"""The HTTP edge of the token function: `lambda_handler`, the routes, and how a failure becomes an answer.

Everything is built once per container at import (`tokenvend.wiring`); each route hands the request to the one
service it needs and turns the result into JSON. API Gateway answers CORS preflights itself (CorsConfiguration in
template.yaml); requests refused before routing (a foreign Origin, an oversized or array body) are answered by the
same error path as everything else.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenvend import metric_names, routes, wiring
from tokenvend.admission import RequestFacts
from tokenvend.errors import ApiError, Code, invalid_request
from tokenvend.observability import count, logger, metrics, tracer
from tokenvend.schemas import (
    CallResponse,
    ErrorBody,
    HangupRequest,
    HangupResponse,
    Health,
    Options,
    TokenResponse,
    call_request_model,
    token_request_model,
)
from tokenvend.screening import screen
from tokenvend.settings import Settings

NO_STORE = {"Cache-Control": "no-store"}
DENIALS = (401, 403, 429)

settings = Settings.from_env()
services = wiring.build(settings)
TokenRequest = token_request_model(settings)
CallRequest = call_request_model(settings)
app = APIGatewayHttpResolver(enable_validation=True)


# --- routes --------------------------------------------------------------------------------------------------

def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": _DESCRIPTIONS[status],
                     "content": {"application/json": {"model": ErrorBody}}} for status in statuses}


_DESCRIPTIONS = {
    400: "Invalid request: the message names the field",
    401: "Invalid, revoked or missing API key (`invalid_api_key`, `anonymous_access_disabled`)",
    403: "Browser Origin not allowed (`origin_not_allowed`)",
    404: "`not_found`: no such call",
    405: "Method not allowed",
    413: "Body over the route's limit (16 KB for `POST /calls`, 4 KB elsewhere)",
    415: "Body not sent as application/json",
    429: "`rate_limited` or `daily_budget_exhausted`; see Retry-After",
    500: "`not_configured` (the OpenAI key or the salt is missing, empty or malformed) or `internal_error`",
    502: "`upstream_auth` (OpenAI refused the key) or `upstream_error`",
    503: "`upstream_busy`, `issuing_paused`, `limiter_unavailable`, `secrets_unavailable` (Secrets Manager "
         "throttled or unreachable) or `leash_unavailable` (the call's time limit could not be set, so it was "
         "ended); see Retry-After",
    504: "`upstream_timeout`",
}


@app.post(
    routes.CALLS.handler_path,
    summary="Set up a voice call with OpenAI, with a server-side time limit",
    description="Send the browser's SDP offer; the server posts it to OpenAI with the owner's key and session "
    "policy and answers with OpenAI's SDP answer. The server hangs the call up at `ends_at`. The caller may choose "
    "only a voice and a preset from `GET /options`. Carries RateLimit-Limit/Remaining/Reset headers.",
    responses={201: {"description": "The call", "content": {"application/json": {"model": CallResponse}}},
               **_errors(400, 401, 403, 413, 415, 429, 500, 502, 503, 504)},
)
def post_call(body: Annotated[CallRequest, Body()]):  # type: ignore[valid-type]
    answer = services.calls.start(_facts(), body.sdp, body.voice, body.preset)
    logger.append_keys(decision="call_started")
    return _json(201, answer.body, {**NO_STORE, **answer.headers})


@app.post(
    routes.HANGUP.handler_path,
    summary="End a call early and give its unused minutes back",
    description="Needs the call's `hangup_token`. A second hangup answers 200 with nothing credited.",
    responses={200: {"description": "Ended", "content": {"application/json": {"model": HangupResponse}}},
               **_errors(400, 403, 404, 415, 500, 502, 503, 504)},
)
def post_hangup(call_id: str, body: Annotated[HangupRequest | None, Body()] = None):
    answer = services.calls.hang_up(call_id, body.hangup_token if body else None)
    logger.append_keys(decision="hung_up")
    return _json(200, answer.body, {**NO_STORE, **answer.headers})


@app.post(
    routes.TOKEN.handler_path,
    summary="Mint a short-lived OpenAI Realtime token (only if the owner switched it on)",
    description="Returns an ephemeral token bound to the owner's session policy; `404` unless the stack's "
    "`EnableTokenRoute` is true. A token has no time limit the server can enforce: prefer `POST /calls`. "
    "Carries RateLimit-Limit/Remaining/Reset headers.",
    responses={200: {"description": "A token", "content": {"application/json": {"model": TokenResponse}}},
               **_errors(400, 401, 403, 404, 413, 415, 429, 500, 502, 503, 504)},
)
def post_token(body: Annotated[TokenRequest | None, Body()] = None):  # type: ignore[valid-type]
    if not settings.enable_token_route:
        raise ApiError(404, Code.NOT_FOUND, "POST /token is switched off on this service; use POST /calls.")
    answer = services.vendor.vend(_facts(), getattr(body, "voice", None), getattr(body, "preset", None))
    logger.append_keys(decision="issued")
    return _json(200, answer.body, {**NO_STORE, **answer.headers})


@app.get(routes.OPTIONS.handler_path, summary="The session policy a client may choose from",
         responses={200: {"description": "The public policy", "content": {"application/json": {"model": Options}}},
                    **_errors(403)})
def get_options():
    return _json(200, services.options.document(), {"Cache-Control": "max-age=60"})


@app.get(routes.HEALTH.handler_path, summary="Liveness; makes no upstream call",
         responses={200: {"description": "Alive", "content": {"application/json": {"model": Health}}}, **_errors(403)})
def get_health():
    return _json(200, {"status": "ok"}, NO_STORE)


@app.get(routes.OPENAPI.handler_path, summary="This description", include_in_schema=False)
def get_openapi():
    return Response(200, content_types.APPLICATION_JSON, openapi_document(), {"Cache-Control": "max-age=300"})


def openapi_document() -> str:
    schema = json.loads(app.get_openapi_json_schema(
        title="Realtime token vending API",
        version="1.0.0",
        description="Sets up OpenAI voice calls under the owner's session policy, limits and time limit.",
    ))
    # Powertools documents its own 422 validation shape; we answer 400 with our error shape instead.
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return json.dumps(schema)


def _facts() -> RequestFacts:
    event = app.current_event
    return RequestFacts(event.headers.get("authorization"), event.request_context.http.source_ip)


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body), headers)


# --- failures: every one becomes {"error": {"code", "message"}} here ------------------------------------------

def error_response(error: ApiError) -> Response:
    if error.status in DENIALS or error.code in (Code.ISSUING_PAUSED, Code.LIMITER_UNAVAILABLE):
        count(metric_names.DENIED, reason=str(error.code))
    logger.append_keys(decision=str(error.code))
    return Response(error.status, content_types.APPLICATION_JSON, error.body(), {**NO_STORE, **error.headers})


@app.exception_handler(ApiError)
def on_api_error(error: ApiError) -> Response:
    return error_response(error)


@app.exception_handler(RequestValidationError)
def on_validation_error(error: RequestValidationError) -> Response:
    return error_response(invalid_request(_describe(error.errors())))


@app.exception_handler(RequestUnsupportedContentType)
def on_unsupported_content_type(_: RequestUnsupportedContentType) -> Response:
    return error_response(ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE,
                                   "Send the body as JSON, with Content-Type: application/json."))


@app.not_found
def on_not_found(_: NotFoundError) -> Response:
    path = app.current_event.path
    methods = routes.methods_for(path)
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


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line naming the field: `voice: Input should be a valid string`."""
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    location = [str(part) for part in first.get("loc", ()) if part != "body" and not isinstance(part, int)]
    if kind == "json_invalid":
        return "The body is not valid JSON."
    if kind in ("model_attributes_type", "dict_type", "model_type") and not location:
        return "The body must be a JSON object."
    if kind == "extra_forbidden":
        return f"{'.'.join(location)}: unknown field."
    field = ".".join(location) or "body"
    return f"{field}: {first.get('msg', 'invalid value')}"


# --- entry point ---------------------------------------------------------------------------------------------

@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # the response carries a token: never into a trace
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
