"""The OpenAPI document: generated from the route table and the shapes, shipped as functions/token/openapi.json,
served with the function's own policy. `UPDATE_OPENAPI=1 pytest tests/unit/token/test_openapi.py` rewrites the
shipped file after an intended change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from local.template_stack import template_function_env
from tokenvend import openapi, routes, schemas
from tokenvend.settings import Settings

HERE = Path(__file__).parent
# What Powertools and pydantic generated for the template's defaults before the document became a shipped file
# (issue 15), minus one schema that referenced a schema already removed (ResponseValidationError). The new
# generator must say the same.
BEFORE = HERE / "openapi_before_issue15.json"


def template_settings(**overrides: str) -> Settings:
    return Settings.from_env({**template_function_env(), "STATE_MACHINE_ARN": "arn:placeholder", **overrides})


def test_the_shipped_document_is_generated_from_the_code() -> None:
    generated = openapi.render(openapi.generate(template_settings()))
    if os.environ.get("UPDATE_OPENAPI") == "1":
        openapi.SHIPPED.write_text(generated)
    assert openapi.SHIPPED.read_text() == generated, (
        "functions/token/openapi.json is out of date: UPDATE_OPENAPI=1 .venv/bin/python -m pytest "
        "tests/unit/token/test_openapi.py")


# What the document says since that the pydantic one did not: the hangup route's 413 (its body has a cap like every
# route's), missing there, found by a black-box review.
ADDED_SINCE = {("/calls/{call_id}/hangup", "post"): ("413",)}


def test_the_document_says_what_the_pydantic_generated_one_said() -> None:
    document = openapi.generate(template_settings())
    before = json.loads(BEFORE.read_text())
    for (path, method), statuses in ADDED_SINCE.items():
        for status in statuses:
            del document["paths"][path][method]["responses"][status]
    schemas_now, schemas_then = document["components"]["schemas"], before["components"]["schemas"]
    # Issue 21 on purpose: the strict offer and hangup token are described, and the options say whether a data
    # channel may be offered. Everything else is as it was.
    for schema, field in (("CallRequest", "sdp"), ("HangupRequest", "hangup_token")):
        schemas_now[schema]["properties"][field] = schemas_then[schema]["properties"][field]
    options = schemas_now["Options"]
    del options["properties"]["data_channel"]
    options["required"].remove("data_channel")
    # Issue 22 on purpose: the signed-in users' route, the human check's token, the lanes in the options, and the
    # errors that come with them (403 caller_blocked and turnstile_failed, 503 turnstile_unavailable, the lanes' 429).
    del document["paths"]["/user/calls"]
    for name in ("Turnstile", "DailyMinutes"):
        del schemas_now[name]
    for field in ("user_calls", "turnstile", "daily_minutes"):
        del options["properties"][field]
        options["required"].remove(field)
    del schemas_now["CallRequest"]["properties"]["turnstile_token"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                then = before["paths"][path][method]["responses"].get(status)
                if then is not None and status in ("403", "429", "503"):
                    answer["description"] = then["description"]
    assert document == before


def test_every_route_but_the_document_itself_is_described() -> None:
    document = openapi.generate(template_settings())
    described = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert described == {(r.method, r.path) for r in routes.ROUTES if r is not routes.OPENAPI}
    for spec in schemas.REQUESTS:  # every request shape is a component, and its members are the parser's
        component = document["components"]["schemas"][spec.name]
        assert list(component["properties"]) == [f.name for f in spec.fields]
        assert component["additionalProperties"] is False
        assert component.get("required", []) == [f.name for f in spec.fields if f.required]


def test_the_served_document_carries_the_function_s_own_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openapi, "_served", None)
    settings = template_settings(ALLOWED_VOICES="cedar,ash", DEFAULT_VOICE="ash",
                                 INSTRUCTION_PRESETS='{"brief": "Be brief."}', DEFAULT_PRESET="brief")
    served = json.loads(openapi.served(settings))
    for name in ("TokenRequest", "CallRequest"):
        members = served["components"]["schemas"][name]["properties"]
        assert members["voice"]["enum"] == ["cedar", "ash", None]
        assert members["voice"]["description"] == "Default: ash"
        assert members["preset"]["enum"] == ["brief", None]
        assert members["preset"]["description"] == "Default: brief"
    # Nothing else moves with the policy.
    base = json.loads(openapi.SHIPPED.read_text())
    for name in ("TokenRequest", "CallRequest"):
        for member in ("voice", "preset"):
            for doc in (served, base):
                doc["components"]["schemas"][name]["properties"][member].pop("enum")
                doc["components"]["schemas"][name]["properties"][member].pop("description")
    assert served == base


def test_served_reads_the_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openapi, "_served", None)
    first = openapi.served(template_settings())
    monkeypatch.setattr(openapi, "SHIPPED", HERE / "does-not-exist.json")
    assert openapi.served(template_settings()) is first
    assert json.loads(first) == openapi.generate(template_settings())
