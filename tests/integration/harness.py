"""The token function under test, as API Gateway calls it, and the evidence kept for the leak check."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from local.apigw import HttpResponse, LambdaContext, http_api_event, match_route, routes_from_template, to_http_response
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack


@dataclass(frozen=True)
class CapturedResponse:
    """One answer a caller got: what the secret-leak scan reads besides the function's own output."""

    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def text(self) -> str:
        head = "\n".join(f"{name}: {value}" for name, value in self.headers)
        return f"{self.status}\n{head}\n\n{self.body.decode('utf-8', 'replace')}"


@dataclass
class Evidence:
    """Everything the function wrote and every answer it gave, and the secrets that must never be in them."""

    lines: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    hangup_tokens: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)
    responses: list[CapturedResponse] = field(default_factory=list)


EVIDENCE = Evidence()


class TokenApi:
    """The token function as API Gateway calls it: real v2.0 events in, HTTP responses out."""

    def __init__(self, module: Any, stack: LocalStack, standin: StandIn) -> None:
        self.module = module
        self.stack = stack
        self.standin = standin
        self.routes = routes_from_template(stack.resources, "TokenFunction")
        self.secrets = boto3.client("secretsmanager")
        self.dynamodb = boto3.client("dynamodb")

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             source_ip: str = "203.0.113.7", raw: bytes | str | None = None) -> HttpResponse:
        headers = dict(headers or {})
        payload = raw
        if body is not None:
            payload = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        route, params = match_route(self.routes, method, path)
        event = http_api_event(method, path, route=route, path_parameters=params, headers=headers, body=payload,
                               source_ip=source_ip)
        # Logger lines go to the handler's own stream, metrics (EMF) through print(): capture both.
        out = io.StringIO()
        log_handler = self.module.logger.registered_handler
        real_stdout, sys.stdout = sys.stdout, out
        real_stream = log_handler.setStream(out)
        try:
            result = self.module.lambda_handler(event, LambdaContext())
        finally:
            sys.stdout = real_stdout
            log_handler.setStream(real_stream)
        EVIDENCE.lines.extend(out.getvalue().splitlines())
        response = to_http_response(result)
        record_response(method, path, response.status, response.headers, response.body)
        return response

    def put_key(self, value: str) -> None:
        self.secrets.put_secret_value(SecretId=self.stack.physical_ids["OpenAIKeySecret"], SecretString=value)
        EVIDENCE.keys.add(value)


class LeashApi:
    """The leash function as Step Functions and the scheduler invoke it: an event in, its result out."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        out = io.StringIO()
        log_handler = self.module.logger.registered_handler
        real_stdout, sys.stdout = sys.stdout, out
        real_stream = log_handler.setStream(out)
        try:
            return self.module.lambda_handler(event, LambdaContext("LeashFunction", timeout_s=60))
        finally:
            sys.stdout = real_stdout
            log_handler.setStream(real_stream)
            EVIDENCE.lines.extend(out.getvalue().splitlines())


def load_leash(stack: LocalStack, standin: StandIn, **overrides: str) -> LeashApi:
    """Import leash.py afresh with the environment the template gives the leash function."""
    env = {**stack.function_env["LeashFunction"], "OPENAI_BASE_URL": standin.base_url, **overrides}
    with environment(env):
        module = importlib.reload(sys.modules["leash"]) if "leash" in sys.modules else importlib.import_module("leash")
    return LeashApi(module)


def load_token_app(stack: LocalStack, standin: StandIn, **overrides: str) -> TokenApi:
    """Import app.py afresh with the environment the template gives the function, as a cold start does. The module
    reads its environment while importing; the test's own environment is put back right after."""
    env = {**stack.function_env["TokenFunction"], "OPENAI_BASE_URL": standin.base_url, **overrides}
    with environment(env):
        module = importlib.reload(sys.modules["app"]) if "app" in sys.modules else importlib.import_module("app")
    return TokenApi(module, stack, standin)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Where a call is set up, each answer carrying its own hangup token: anonymous and API-key callers', signed-in users'.
CALL_ROUTES = ("/calls", "/user/calls")


def record_response(method: str, path: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    """Keep an answer for the leak scan, and the token it carries for the session-end check."""
    EVIDENCE.responses.append(CapturedResponse(method, path, status, list(headers), body))
    if status == 200 and path == "/token":
        EVIDENCE.tokens.add(json.loads(body)["token"])
    if status == 201 and path in CALL_ROUTES:
        EVIDENCE.hangup_tokens.add(json.loads(body)["hangup_token"])


def body_of(response: HttpResponse) -> dict[str, Any]:
    return json.loads(response.body)
