"""The OpenAPI document: generated from the route table (`routes`) and the shapes (`schemas`), shipped as
functions/token/openapi.json, served by `GET /openapi.json`.

The shipped file is generated with the template's default policy (tests/unit/token/test_openapi.py regenerates it
and fails on drift; `UPDATE_OPENAPI=1` rewrites it). A deployed stack's policy differs: the voice and preset enums
and their defaults are set from the function's settings when the document is first served, so a client reads the
lists it may really send. Only `GET /openapi.json` imports this module.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenvend import routes, schemas
from tokenvend.routes import Route
from tokenvend.schemas import BodySpec, StringField
from tokenvend.settings import Settings

SHIPPED = Path(__file__).resolve().parent.parent / "openapi.json"
TITLE = "Realtime token vending API"
VERSION = "1.0.0"
DESCRIPTION = "Sets up OpenAI voice calls under the owner's session policy, limits and time limit."

ERRORS = {
    400: "Invalid request: the message names the field",
    401: "Invalid, revoked or missing API key (`invalid_api_key`, `anonymous_access_disabled`)",
    403: "Browser Origin not allowed (`origin_not_allowed`), the caller blocked by the owner (`caller_blocked`), or "
         "the human check not passed (`turnstile_failed`: missing, invalid, expired, reused or from another site)",
    404: "`not_found`: no such call",
    405: "Method not allowed",
    413: "Body over the route's limit (16 KB for `POST /calls`, 4 KB elsewhere)",
    415: "Body not sent as application/json",
    429: "`rate_limited`, or `daily_budget_exhausted` (the day's minutes, the caller's lane's, or the caller's own: "
         "the message says which); see Retry-After",
    500: "`not_configured` (the OpenAI key or the salt is missing, empty or malformed) or `internal_error`",
    502: "`upstream_auth` (OpenAI refused the key) or `upstream_error`",
    503: "`upstream_busy`, `issuing_paused`, `limiter_unavailable`, `secrets_unavailable` (Secrets Manager "
         "throttled or unreachable) or `leash_unavailable` (the call's time limit could not be set, so it was "
         "ended) or `turnstile_unavailable` (the human check could not be verified; nothing was charged); see "
         "Retry-After",
    504: "`upstream_timeout`",
}


@dataclass(frozen=True)
class Operation:
    handler: str  # the handler's name in app.py, which the operationId was always made of
    summary: str
    status: int
    answer: str  # the success answer's description
    response: str  # its schema in schemas.RESPONSES
    errors: tuple[int, ...]
    description: str = ""
    body: BodySpec | None = None


OPERATIONS: dict[Route, Operation] = {
    routes.CALLS: Operation(
        "post_call", "Set up a voice call with OpenAI, with a server-side time limit", 201, "The call",
        "CallResponse", (400, 401, 403, 413, 415, 429, 500, 502, 503, 504),
        "Send the browser's SDP offer; the server posts it to OpenAI with the owner's key and session policy and "
        "answers with OpenAI's SDP answer. The server hangs the call up at `ends_at`. The caller may choose only a "
        "voice and a preset from `GET /options`. Carries RateLimit-Limit/Remaining/Reset headers.",
        schemas.CALL_REQUEST),
    routes.USER_CALLS: Operation(
        "post_user_call", "Set up a voice call as a signed-in user of the owner's site", 201, "The call",
        "CallResponse", (400, 401, 403, 404, 413, 415, 429, 500, 502, 503, 504),
        "As `POST /calls`, with `Authorization: Bearer <JWT>` from the owner's identity provider, which API "
        "Gateway checks before anything runs (401 `{\"message\": \"Unauthorized\"}` otherwise). The user (the "
        "token's `sub`) has a bucket and a daily share of its own, in the signed-in users' lane; no human check. "
        "`404` unless the owner set `JwtIssuer`.",
        schemas.CALL_REQUEST),
    routes.HANGUP: Operation(
        "post_hangup", "End a call early and give its unused minutes back", 200, "Ended", "HangupResponse",
        (400, 403, 404, 413, 415, 500, 502, 503, 504),
        "Needs the call's `hangup_token`. A second hangup answers 200 with nothing credited.",
        schemas.HANGUP_REQUEST),
    routes.TOKEN: Operation(
        "post_token", "Mint a short-lived OpenAI Realtime token (only if the owner switched it on)", 200,
        "A token", "TokenResponse", (400, 401, 403, 404, 413, 415, 429, 500, 502, 503, 504),
        "Returns an ephemeral token bound to the owner's session policy; `404` unless the stack's "
        "`EnableTokenRoute` is true. A token has no time limit the server can enforce: prefer `POST /calls`. "
        "Carries RateLimit-Limit/Remaining/Reset headers.",
        schemas.TOKEN_REQUEST),
    routes.OPTIONS: Operation("get_options", "The session policy a client may choose from", 200, "The public policy",
                              "Options", (403,)),
    routes.HEALTH: Operation("get_health", "Liveness; makes no upstream call", 200, "Alive", "Health", (403,)),
}


def generate(settings: Settings) -> dict[str, Any]:
    """The whole document for this policy, from the route table (every route but the document's own)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.ROUTES:
        operation = OPERATIONS.get(route)
        if operation is not None:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, operation)
    components = {**{spec.name: _request_schema(spec) for spec in schemas.REQUESTS},
                  **{name: _object(name, members) for name, members in schemas.RESPONSES.items()}}
    document = {"openapi": "3.1.0", "info": {"title": TITLE, "description": DESCRIPTION, "version": VERSION},
                "servers": [{"url": "/"}], "paths": paths,
                "components": {"schemas": dict(sorted(components.items()))}}
    return with_policy(document, settings)


def with_policy(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The document with the owner's voices and presets (and their defaults) as the request enums."""
    document = copy.deepcopy(document)
    lists = {"voices": (list(settings.voices), settings.default_voice),
             "presets": (list(settings.presets), settings.default_preset)}
    for spec in schemas.REQUESTS:
        members = document["components"]["schemas"][spec.name]["properties"]
        for field in spec.fields:
            if field.choices:
                values, default = lists[field.choices]
                members[field.name]["enum"] = [*values, None]
                members[field.name]["description"] = f"Default: {default}"
    return document


def render(document: dict[str, Any]) -> str:
    """The shipped file's text: stable, readable diffs."""
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


_served: str | None = None


def served(settings: Settings) -> str:
    """The shipped document under this function's policy, as JSON; read and adjusted once per container."""
    global _served
    if _served is None:
        _served = json.dumps(with_policy(json.loads(SHIPPED.read_text()), settings))
    return _served


def _operation(route: Route, op: Operation) -> dict[str, Any]:
    operation_id = f"{op.handler}{re.sub(r'\W', '_', route.path)}_{route.method.lower()}"
    out: dict[str, Any] = {"summary": op.summary, **({"description": op.description} if op.description else {}),
                           "operationId": operation_id}
    parameters = re.findall(r"\{(\w+)\}", route.path)
    if parameters:
        out["parameters"] = [{"required": True, "schema": {"type": "string", "title": _title(name)},
                              "name": name, "in": "path"} for name in parameters]
    if op.body is not None:
        schema: dict[str, Any] = _ref(op.body.name)
        if op.body.optional:
            schema = {"anyOf": [schema, {"type": "null"}], "title": "Body"}
        out["requestBody"] = {"content": {"application/json": {"schema": schema}},
                              **({} if op.body.optional else {"required": True})}
    responses = {str(op.status): _answer(op.answer, op.response)}
    responses |= {str(status): _answer(ERRORS[status], "ErrorBody") for status in op.errors}
    out["responses"] = responses
    return out


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _request_schema(spec: BodySpec) -> dict[str, Any]:
    schema = {"properties": {f.name: _member(f) for f in spec.fields}, "additionalProperties": False,
              "type": "object", "title": spec.name}
    required = [f.name for f in spec.fields if f.required]
    return {**schema, "required": required} if required else schema


def _member(field: StringField) -> dict[str, Any]:
    out: dict[str, Any] = ({"type": "string"} if field.required
                           else {"anyOf": [{"type": "string"}, {"type": "null"}]})
    if field.pattern:
        out["pattern"] = field.pattern
    out["title"] = _title(field.name)
    if field.description:
        out["description"] = field.description
    return out


def _object(name: str, members: dict[str, Any]) -> dict[str, Any]:
    properties = {key: {**value, "title": _title(key)} if "$ref" not in value else value
                  for key, value in members.items()}
    return {"properties": properties, "type": "object", "required": list(members), "title": name}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _title(name: str) -> str:
    """pydantic's title for a member: `call_id` -> `Call Id`."""
    return name.replace("_", " ").title()
