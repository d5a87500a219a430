"""The HTTP routes of the token API, and the Lambda entry point `lambda_handler`.

Everything is built once per container at import: settings, the AWS clients, the OpenAI client. Requests only do
their own work. API Gateway answers CORS preflights itself (CorsConfiguration in template.yaml); this function
refuses a browser Origin that is not allowed, as a second line behind CORS.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from tokenvend.caller import Caller, identify
from tokenvend.errors import ApiError, Code, invalid_request
from tokenvend.limiter import Limiter
from tokenvend.observability import count, logger, metrics, tracer
from tokenvend.openai_client import OpenAIClient
from tokenvend.policy import PolicyViolation
from tokenvend.schemas import ErrorBody, Health, Options, TokenResponse, token_request_model
from tokenvend.secret_store import SecretIds, SecretStore
from tokenvend.settings import Settings
from tokenvend.vending import TokenVendor

MAX_BODY_BYTES = 4096
NO_STORE = {"Cache-Control": "no-store"}

settings = Settings.from_env()
# One boto3 session for both clients: botocore's service index and endpoint data are loaded once, not twice.
_aws = boto3.session.Session()
secret_store = SecretStore(SecretIds(settings.openai_secret_id, settings.hash_salt_secret_id),
                           settings.secret_cache_seconds,
                           SecretsProvider(boto3_client=_aws.client("secretsmanager")))
# Fail fast and closed: a slow DynamoDB must not hold the caller past API Gateway's patience.
_dynamodb = _aws.client("dynamodb", config=Config(connect_timeout=2, read_timeout=3,
                                                   retries={"mode": "standard", "max_attempts": 2}))
limiter = Limiter(_dynamodb, settings.table_name, settings.limits)
openai = OpenAIClient(settings.client_secrets_url, settings.openai_timeout_seconds)
vendor = TokenVendor(settings, secret_store, limiter, openai)
TokenRequest = token_request_model(settings)

app = APIGatewayHttpResolver(enable_validation=True)
# What this request came to (caller, decision), for its one log line. Powertools clears app.context inside
# resolve(), before we log; a Lambda container handles one request at a time, so a module-level record is safe.
_outcome: dict[str, Any] = {}
ROUTES = {"/token": ("POST",), "/options": ("GET",), "/health": ("GET",), "/openapi.json": ("GET",)}


def _error_response(error: ApiError) -> Response:
    return Response(error.status, content_types.APPLICATION_JSON, error.body(), {**NO_STORE, **error.headers})


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": _DESCRIPTIONS[status],
                     "content": {"application/json": {"model": ErrorBody}}} for status in statuses}


_DESCRIPTIONS = {
    400: "Invalid request: the message names the field",
    401: "Invalid, revoked or missing API key (`invalid_api_key`, `anonymous_access_disabled`)",
    403: "Browser Origin not allowed (`origin_not_allowed`)",
    405: "Method not allowed",
    413: "Body over 4 KB",
    415: "Body not sent as application/json",
    429: "`rate_limited` or `daily_budget_exhausted`; see Retry-After",
    500: "`not_configured` (the OpenAI key is not stored yet) or `internal_error`",
    502: "`upstream_auth` (OpenAI refused the key) or `upstream_error`",
    503: "`upstream_busy`, `issuing_paused` or `limiter_unavailable`; see Retry-After",
    504: "`upstream_timeout`",
}


# --- guards that run before routing and validation ---------------------------------------------------------

def guard(event: dict[str, Any]) -> ApiError | None:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/") not in settings.allowed_origins:
        # Not authentication (any non-browser client can send any Origin), but it stops other sites' pages.
        return ApiError(403, Code.ORIGIN_NOT_ALLOWED, "This origin may not use this API.")
    if _body_size(event) > MAX_BODY_BYTES:
        return ApiError(413, Code.PAYLOAD_TOO_LARGE, f"The body must be at most {MAX_BODY_BYTES} bytes.")
    return None


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8", "surrogatepass"))


# --- routes --------------------------------------------------------------------------------------------------

@app.post(
    "/token",
    summary="Mint a short-lived OpenAI Realtime token",
    description="Returns an ephemeral token bound to the owner's session policy. The caller may choose only a "
    "voice and a preset from `GET /options`. Carries RateLimit-Limit/Remaining/Reset headers.",
    responses={200: {"description": "A token", "content": {"application/json": {"model": TokenResponse}}},
               **_errors(400, 401, 403, 413, 415, 429, 500, 502, 503, 504)},
)
def post_token(body: Annotated[TokenRequest | None, Body()] = None):  # type: ignore[valid-type]
    caller = _caller()
    try:
        choice = vendor.policy.choose(getattr(body, "voice", None), getattr(body, "preset", None))
    except PolicyViolation as violation:
        raise invalid_request(f"{violation.field}: {violation}") from None
    token, allowance = vendor.vend(caller, choice)
    _outcome["decision"] = "issued"
    return Response(200, content_types.APPLICATION_JSON, json.dumps(token), {**NO_STORE, **allowance.headers()})


@app.get("/options", summary="The session policy a client may choose from",
         responses={200: {"description": "The public policy", "content": {"application/json": {"model": Options}}},
                    **_errors(403)})
def get_options():
    limits = settings.limits
    options = {
        **vendor.policy.public_options(),
        "anonymous": {"enabled": limits.allow_anonymous, "burst": limits.anonymous_burst,
                      "rate_per_hour": limits.anonymous_rate_per_hour, "global_daily_limit": limits.global_daily_limit},
    }
    return Response(200, content_types.APPLICATION_JSON, json.dumps(options), {"Cache-Control": "max-age=60"})


@app.get("/health", summary="Liveness; makes no upstream call",
         responses={200: {"description": "Alive", "content": {"application/json": {"model": Health}}}, **_errors(403)})
def get_health():
    return Response(200, content_types.APPLICATION_JSON, json.dumps({"status": "ok"}), NO_STORE)


@app.get("/openapi.json", summary="This description", include_in_schema=False)
def get_openapi():
    return Response(200, content_types.APPLICATION_JSON, openapi_document(), {"Cache-Control": "max-age=300"})


def openapi_document() -> str:
    schema = json.loads(app.get_openapi_json_schema(
        title="Realtime token vending API",
        version="1.0.0",
        description="Mints short-lived OpenAI Realtime tokens under the owner's session policy and limits.",
    ))
    # Powertools documents its own 422 validation shape; we answer 400 with our error shape instead.
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return json.dumps(schema)


def _caller() -> Caller:
    event = app.current_event
    caller = identify(event.headers.get("authorization"), event.request_context.http.source_ip,
                      secret_store.hash_salt(), allow_anonymous=settings.limits.allow_anonymous)
    _outcome["caller"] = caller
    return caller


# --- errors --------------------------------------------------------------------------------------------------

@app.exception_handler(ApiError)
def on_api_error(error: ApiError) -> Response:
    caller = _outcome.get("caller")
    headers = dict(error.headers)
    if isinstance(caller, Caller) and app.current_event.path == "/token" and "RateLimit-Limit" not in headers:
        headers.update(limiter.allowance(caller).headers())
    if error.status in (401, 403, 429) or error.code in (Code.ISSUING_PAUSED, Code.LIMITER_UNAVAILABLE):
        count("Denied", reason=str(error.code))
    _outcome["decision"] = str(error.code)
    return _error_response(ApiError(error.status, error.code, error.message, headers))


@app.exception_handler(RequestValidationError)
def on_validation_error(error: RequestValidationError) -> Response:
    return _error_response(invalid_request(_describe(error.errors())))


@app.exception_handler(RequestUnsupportedContentType)
def on_unsupported_content_type(_: RequestUnsupportedContentType) -> Response:
    return _error_response(ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE,
                                    "Send the body as JSON, with Content-Type: application/json."))


@app.not_found
def on_not_found(_: NotFoundError) -> Response:
    path = app.current_event.path
    if path in ROUTES:
        allowed = ", ".join(ROUTES[path])
        return Response(405, content_types.APPLICATION_JSON,
                        ApiError(405, Code.METHOD_NOT_ALLOWED, f"Use {allowed} for {path}.").body(),
                        {**NO_STORE, "Allow": allowed})
    return _error_response(ApiError(404, Code.NOT_FOUND, "No such path."))


@app.exception_handler(Exception)
def on_unexpected(error: Exception) -> Response:
    logger.exception("unexpected error")
    return _error_response(ApiError(500, Code.INTERNAL, "Something went wrong on our side."))


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line naming the field: `voice: Input should be 'marin' or 'cedar'`."""
    first = errors[0] if errors else {}
    kind = first.get("type", "")
    location = [str(part) for part in first.get("loc", ()) if part != "body" and not isinstance(part, int)]
    if kind == "json_invalid":
        return "The body is not valid JSON."
    if kind in ("model_attributes_type", "dict_type", "model_type") and not location:
        return "The body must be a JSON object."
    if kind == "extra_forbidden":
        return f"{'.'.join(location)}: unknown field; allowed fields are voice and preset."
    field = ".".join(location) or "body"
    return f"{field}: {first.get('msg', 'invalid value')}"


# --- entry point ---------------------------------------------------------------------------------------------

@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # the response carries a token: never into a trace
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    _outcome.clear()
    refused = guard(event)
    if refused is not None:
        count("Denied", reason=str(refused.code))
    else:
        event = _normalise_body(event)
        if _array_body(event):
            refused = invalid_request("The body must be a JSON object.")
    if refused is not None:
        _outcome["decision"] = str(refused.code)
        result = {"statusCode": refused.status, "headers": {"Content-Type": content_types.APPLICATION_JSON, **NO_STORE},
                  "body": refused.body(), "isBase64Encoded": False}
    else:
        result = app.resolve(event, context)
    caller = _outcome.get("caller")
    logger.info("request", extra={
        "method": event.get("requestContext", {}).get("http", {}).get("method"),
        "path": event.get("rawPath"),
        "status": result.get("statusCode"),
        "caller": caller.hash if isinstance(caller, Caller) else None,
        "caller_kind": str(caller.kind) if isinstance(caller, Caller) else None,
        "decision": _outcome.get("decision"),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    })
    return result


def _array_body(event: dict[str, Any]) -> bool:
    """Powertools validates the first element of a JSON array body as if it were the body (`[{}, 5]` would pass):
    a body that starts as an array is refused before it gets there."""
    body = event.get("body")
    method = event.get("requestContext", {}).get("http", {}).get("method")
    content_type = {k.lower(): v for k, v in (event.get("headers") or {}).items()}.get("content-type", "json")
    return (method == "POST" and event.get("rawPath") == "/token" and "json" in content_type.lower()
            and isinstance(body, str) and body.lstrip(" \t\r\n").startswith("["))


def _normalise_body(event: dict[str, Any]) -> dict[str, Any]:
    """A body that is not UTF-8 can only be invalid JSON: say so in a 400 rather than fail while decoding it."""
    if not event.get("isBase64Encoded") or not event.get("body"):
        return event
    try:
        text = base64.b64decode(event["body"], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        text = "\x00"  # not JSON: validation answers 400 json_invalid
    return {**event, "body": text, "isBase64Encoded": False}


