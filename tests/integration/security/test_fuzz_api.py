"""Fuzzing the HTTP API from its own OpenAPI description (`GET /openapi.json`) with schemathesis, over HTTP against
the local system (the real handler in worker processes behind the API Gateway emulation, moto, the OpenAI
stand-in).

Positive cases (valid by the schema) and negative cases (schema-violating bodies, types, media types) for every
operation; at least `SECURITY_FUZZ_REQUESTS` (2,000) requests in all. Every answer must pass schemathesis's checks
(status documented, body and headers match the documented schema, invalid data refused), be no 5xx (the stand-in is
healthy, so not even the documented upstream ones), and every error must be `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup

from local.system import LocalSystem
from tests.integration.security.security_support import (
    UNTHROTTLED,
    env_flag,
    keep,
    record_figures,
    start_system,
    stop_system,
)

TOTAL = env_flag("SECURITY_FUZZ_REQUESTS", 2000)
# Room enough that fuzzing is about the API, not the limiter (429 has its own tests).
PARAMETERS = {**UNTHROTTLED, "EnableTokenRoute": "true", "AnonymousBurst": "10000", "AnonymousRatePerHour": "36000",
              "GlobalDailyLimit": "1000000", "DailyCallMinutes": "1000000", "CallerDailyCallMinutes": "1000000"}
ERROR_CODES = {"invalid_request", "payload_too_large", "unsupported_media_type", "not_found", "method_not_allowed",
               "origin_not_allowed", "invalid_api_key", "anonymous_access_disabled", "rate_limited",
               "daily_budget_exhausted", "issuing_paused", "limiter_unavailable", "not_configured", "upstream_auth",
               "upstream_busy", "upstream_error", "upstream_timeout", "internal_error", "secrets_unavailable",
               "leash_unavailable", "invalid_hangup_token"}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    running = start_system(PARAMETERS)
    try:
        yield running
    finally:
        stop_system(running)


def test_fuzz_the_api_from_its_openapi_description(system: LocalSystem) -> None:
    document = httpx.get(f"{system.api_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    statuses: Counter[tuple[str, str, int]] = Counter()
    findings: dict[str, str] = {}
    started = time.perf_counter()

    def check(case: Any, response: Any, label: str, mode: GenerationMode) -> None:
        keep(case.method, case.formatted_path, response)
        statuses[(label, mode.value, response.status_code)] += 1
        # A schema-valid `sdp` is a string that looks like an offer; whether it is a usable offer (ICE, DTLS,
        # codecs) no schema can say, so a 400 that names `sdp` is the right answer to most of them.
        excluded = [positive_data_acceptance] if label == "POST /calls" and mode is GenerationMode.POSITIVE else []
        try:
            case.validate_response(response, excluded_checks=excluded)
        except FailureGroup as failures:
            for failure in failures.exceptions:
                findings.setdefault(f"{label} {mode.value}: {failure.title}", str(failure)[:800])
        if response.status_code >= 500:
            findings.setdefault(f"{label} {mode.value}: 5xx", response.text[:800])
        if response.status_code >= 400:
            body = response.json()
            if set(body) != {"error"} or set(body["error"]) != {"code", "message"} \
                    or body["error"]["code"] not in ERROR_CODES:
                findings.setdefault(f"{label} {mode.value}: error shape", response.text[:800])
        elif label in ("POST /token", "POST /calls"):
            headers = {name.lower(): values for name, values in response.headers.items()}
            assert headers["cache-control"] == ["no-store"]
            assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(headers)

    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    assert set(operations) == {"POST /calls", "POST /user/calls", "POST /calls/{call_id}/hangup", "POST /token",
                               "GET /options", "GET /health"}
    # The GETs have nothing to vary; the valid bodies are few (a generated `sdp` is no SDP offer: 400); the
    # invalid ones are not: the last step gets whatever is left of the total.
    plan = [("GET /health", GenerationMode.POSITIVE, 5), ("GET /options", GenerationMode.POSITIVE, 5),
            ("POST /calls", GenerationMode.POSITIVE, TOTAL // 10), ("POST /calls", GenerationMode.NEGATIVE, TOTAL // 5),
            ("POST /calls/{call_id}/hangup", GenerationMode.POSITIVE, TOTAL // 20),
            ("POST /calls/{call_id}/hangup", GenerationMode.NEGATIVE, TOTAL // 10),
            ("POST /token", GenerationMode.POSITIVE, TOTAL // 5), ("POST /token", GenerationMode.NEGATIVE, 0)]
    for label, mode, examples in plan:
        examples = examples or max(10, TOTAL - sum(statuses.values()) + 10)
        _fuzz(operations[label], mode, examples, lambda case, label=label, mode=mode: check(
            case, case.call(base_url=system.api_url, session=session), label, mode))

    seconds = round(time.perf_counter() - started, 1)
    sent = sum(statuses.values())
    by_status: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    for (label, mode, status), n in statuses.items():
        by_status[str(status)] += n
        by_operation[f"{label} {mode}"] += n
    record_figures("fuzz", requests=sent, seconds=seconds, findings=len(findings), statuses=dict(by_status),
                   by_operation=dict(by_operation), schemathesis=schemathesis.__version__,
                   bug_fixed_for_this_suite="POST /token took the first element of a JSON array body as the body")
    assert not findings, json.dumps(findings, indent=1)[:6000]
    assert sent >= TOTAL, f"only {sent} requests"
    assert not any(status >= 500 for (_, _, status) in statuses)


def _fuzz(operation: Any, mode: GenerationMode, examples: int, call: Any) -> None:
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        call(case)

    run()
