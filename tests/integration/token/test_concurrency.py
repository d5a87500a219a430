"""Many callers at once, as Lambda serves them: several containers (processes), each importing the real handler,
all metering against one DynamoDB (the moto server over HTTP). The limits must hold exactly, not roughly: per
caller, exactly its burst; globally, exactly the daily cap; every refusal a clean 429.

The day's count is read from the `day#...` items the run wrote, not from the clock: a run that crosses midnight UTC
writes two, each held to its own cap."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.apigw import http_api_event, match_route, routes_from_template, to_http_response
from local.atomic_moto import serialise_item_operations
from local.functions import FunctionPool
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack
from tests.integration.conftest import AWS_ENV
from tests.integration.harness import EVIDENCE

CALLERS = 20
REQUESTS_PER_CALLER = 10  # 200 requests in all
BURST = 3
CONTAINERS = 5


@pytest.fixture(autouse=True)
def atomic_dynamodb() -> None:
    serialise_item_operations()


def source_ips() -> list[str]:
    """20 distinct callers: IPv4 addresses, and IPv6 addresses each in its own /64."""
    return [f"198.51.100.{10 + i}" for i in range(15)] + [f"2001:db8:0:{i:x}::1" for i in range(1, 6)]


@dataclass
class Outcome:
    issued: Counter[str]  # source ip -> tokens issued
    denied: Counter[str]  # error code -> count
    statuses: Counter[int]
    wall_seconds: float
    days: dict[str, int]  # UTC day -> tokens counted on its day item
    upstream_calls: int


def utc_days(started: float, ended: float) -> set[str]:
    """Every UTC day from `started` to `ended` (epoch seconds): the only days a run between them may charge."""
    first, last = (datetime.fromtimestamp(t, UTC).date() for t in (started, ended))
    return {(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}


def issued_by_day(stack: LocalStack) -> dict[str, int]:
    """The `issued` count of every `day#...` item in the table."""
    days: dict[str, int] = {}
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=stack.table_name,
                                                                           ConsistentRead=True):
        for item in page["Items"]:
            pk = item["pk"]["S"]
            if pk.startswith("day#"):
                days[pk.removeprefix("day#")] = int(item.get("issued", {}).get("N", "0"))
    return days


def run_scenario(stack: LocalStack, standin: StandIn, moto_endpoint: str, log_path: Path, *,
                 global_limit: int) -> Outcome:
    boto3.client("secretsmanager").put_secret_value(SecretId=stack.physical_ids["OpenAIKeySecret"],
                                                    SecretString=json.dumps({"api_key": standin.api_key}))
    env = {**AWS_ENV, **stack.function_env["TokenFunction"], "OPENAI_BASE_URL": standin.base_url,
           "AWS_ENDPOINT_URL": moto_endpoint, "POWERTOOLS_TRACE_DISABLED": "true",
           "ANONYMOUS_BURST": str(BURST), "ANONYMOUS_RATE_PER_HOUR": "0.001",  # no refill during the test
           "GLOBAL_DAILY_LIMIT": str(global_limit),
           # The whole day is this test's anonymous callers' to race for: their lane is the day.
           "ANONYMOUS_DAILY_CALL_MINUTES": stack.function_env["TokenFunction"]["DAILY_CALL_MINUTES"]}
    routes = routes_from_template(stack.resources, "TokenFunction")
    route, params = match_route(routes, "POST", "/token")
    plan = [ip for ip in source_ips() for _ in range(REQUESTS_PER_CALLER)]
    random.Random(7).shuffle(plan)  # callers interleaved, as traffic is
    events = [(ip, http_api_event("POST", "/token", route=route, path_parameters=params, body="{}",
                                  headers={"content-type": "application/json"}, source_ip=ip)) for ip in plan]
    standin.requests.clear()

    pool = FunctionPool(env, containers=CONTAINERS, log_path=log_path)
    try:
        pool.warm()
        start = threading.Barrier(len(events))

        def send(item: tuple[str, dict[str, Any]]) -> tuple[str, Any]:
            ip, event = item
            start.wait()
            return ip, to_http_response(pool.invoke(event, timeout=120))

        started_at, started = time.time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(events)) as threads:
            results = list(threads.map(send, events))
        wall = time.perf_counter() - started
        ended_at = time.time()
    finally:
        pool.close()

    issued: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for ip, response in results:
        statuses[response.status] += 1
        body = json.loads(response.body)
        if response.status == 200:
            issued[ip] += 1
            EVIDENCE.tokens.add(body["token"])
            assert response.header("ratelimit-limit") == str(BURST)
        else:
            denied[body["error"]["code"]] += 1
            assert response.header("retry-after") is not None
    EVIDENCE.lines.extend(log_path.read_text().splitlines())  # the leak check covers the containers' logs too

    days = issued_by_day(stack)
    assert set(days) <= utc_days(started_at, ended_at), f"day items {sorted(days)} outside the run's days"
    return Outcome(issued, denied, statuses, wall, days, len(standin.requests))


def report(capsys: pytest.CaptureFixture[str], label: str, outcome: Outcome) -> None:
    with capsys.disabled():
        print(f"\n[concurrency {label}] {sum(outcome.statuses.values())} requests, {CALLERS} callers, "
              f"{CONTAINERS} containers: issued {sum(outcome.issued.values())}, denied {dict(outcome.denied)}, "
              f"statuses {dict(outcome.statuses)}, wall {outcome.wall_seconds:.2f} s")


@pytest.mark.parametrize("run", [1, 2])
def test_per_caller_limits_are_exact_under_concurrency(stack: LocalStack, standin: StandIn, moto_endpoint: str,
                                                       tmp_path: Path, capsys, run: int) -> None:
    global_limit = 100  # above what the callers can take (20 x 3): only the per-caller limit binds
    outcome = run_scenario(stack, standin, moto_endpoint, tmp_path / "function.log", global_limit=global_limit)
    report(capsys, f"per-caller run {run}", outcome)

    assert sum(outcome.statuses.values()) == CALLERS * REQUESTS_PER_CALLER
    assert set(outcome.statuses) <= {200, 429}, outcome.statuses
    expected = min(BURST, REQUESTS_PER_CALLER)
    assert outcome.issued == Counter({ip: expected for ip in source_ips()}), outcome.issued
    total = sum(outcome.issued.values())
    assert total == min(global_limit, CALLERS * expected)
    assert outcome.denied == Counter({"rate_limited": CALLERS * REQUESTS_PER_CALLER - total})
    assert sum(outcome.days.values()) == total, f"the day counters {outcome.days} agree with what was issued"
    assert outcome.upstream_calls == total, "OpenAI was asked exactly once per issued token"


def test_the_global_cap_is_exact_under_concurrency(stack: LocalStack, standin: StandIn, moto_endpoint: str,
                                                   tmp_path: Path, capsys) -> None:
    global_limit = 40  # below 20 callers x burst 3: the global cap binds
    outcome = run_scenario(stack, standin, moto_endpoint, tmp_path / "function.log", global_limit=global_limit)
    report(capsys, "global cap", outcome)

    total = sum(outcome.issued.values())
    assert set(outcome.statuses) <= {200, 429}, outcome.statuses
    assert max(outcome.issued.values()) <= BURST
    assert set(outcome.denied) <= {"rate_limited", "daily_budget_exhausted"}
    assert sum(outcome.denied.values()) == CALLERS * REQUESTS_PER_CALLER - total
    assert sum(outcome.days.values()) == total, f"the day counters {outcome.days} agree with what was issued"
    assert all(n <= global_limit for n in outcome.days.values()), f"a day above its cap: {outcome.days}"
    assert outcome.upstream_calls == total
    # Every caller asks beyond its burst, so each bucket is spent or the day's cap is reached.
    if len(outcome.days) == 1:
        assert total == global_limit, "exactly the cap, not one more"
        assert outcome.denied["daily_budget_exhausted"] > 0
    else:  # the run crossed midnight UTC: each day has its own cap, and the bursts bound the whole run
        assert global_limit <= total <= CALLERS * BURST, outcome.days
