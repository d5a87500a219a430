"""200 simultaneous `POST /calls` against a day's budget of N calls, through the whole local system (gateway,
function containers, moto, the OpenAI stand-in, the local leash runner): exactly N calls are created at OpenAI, N
timers started, N hangups made by the leash, and no call runs past its end.

Each call's day is the `day` its record was charged to: a storm that crosses midnight UTC charges two days, each
held to its own budget of N."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from local.atomic_moto import serialise_item_operations
from local.system import LocalSystem
from tests.integration.offers import make_offer_async

REQUESTS = 200
MAX_CALL_SECONDS = 10
DAILY_CALL_MINUTES = 2
BACKEND, CREATE = "live", "live_sessions"  # the template's default backend, and the stand-in's name for its setup
BUDGET = DAILY_CALL_MINUTES * 60 // (MAX_CALL_SECONDS + 5)  # each call reserves its limit plus the 5 s slack: 8


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    serialise_item_operations()
    parameters = {"VoiceBackend": BACKEND, "MaxCallSeconds": str(MAX_CALL_SECONDS),
                  "DailyCallMinutes": str(DAILY_CALL_MINUTES), "AnonymousBurst": "1000",
                  "AnonymousRatePerHour": "1000000",
                  # One address takes the whole day: its lane and its own share are the day (lanes: test_lanes).
                  "AnonymousDailyCallMinutes": str(DAILY_CALL_MINUTES),
                  "CallerDailyCallMinutes": str(DAILY_CALL_MINUTES),
                  # The day's budget is what this test holds to its bound, not API Gateway's throttle.
                  "ThrottleBurstLimit": "100000", "ThrottleRateLimit": "100000"}
    with LocalSystem(port=0, parameters=parameters, containers=4, sweeper_period_seconds=2) as running:
        yield running


def utc_days(started: float, ended: float) -> set[str]:
    """Every UTC day from `started` to `ended` (epoch seconds): the only days a storm between them may charge."""
    first, last = (datetime.fromtimestamp(t, UTC).date() for t in (started, ended))
    return {(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}


def charged_days(system: LocalSystem, call_ids: set[str]) -> Counter[str]:
    """How many of these calls each UTC day paid for, from the `day` of their records."""
    assert system.stack is not None
    dynamodb = system.client("dynamodb")
    days: Counter[str] = Counter()
    for call_id in call_ids:
        item = dynamodb.get_item(TableName=system.stack.table_name, Key={"pk": {"S": f"call#{call_id}"}},
                                 ConsistentRead=True).get("Item")
        assert item is not None, f"{call_id} has no record"
        days[item["day"]["S"]] += 1
    return days


async def _storm(calls_url: str) -> list[httpx.Response]:
    offer = await make_offer_async()
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(calls_url, json={"sdp": offer}) for _ in range(REQUESTS)))


def test_exactly_the_budget_is_created_leashed_and_hung_up(system: LocalSystem) -> None:
    assert system.standin is not None and system.stack is not None
    started = time.time()
    answers = asyncio.run(_storm(f"{system.api_url}/calls"))
    ended = time.time()
    statuses = Counter(a.status_code for a in answers)
    codes = Counter(a.json()["error"]["code"] for a in answers if a.status_code != 201)
    created = [a.json() for a in answers if a.status_code == 201]
    ids = {c["call_id"] for c in created}
    assert len(ids) == len(created)
    days = charged_days(system, ids)
    assert set(days) <= utc_days(started, ended), days
    # 200 requests for a budget of 8 a day: no day pays for more than 8, and the day the refusals came from is full
    # (one day, or across midnight UTC the first day or the second).
    assert max(days.values(), default=0) == BUDGET, f"calls charged per day: {dict(days)}"
    assert statuses == {201: len(ids), 429: REQUESTS - len(ids)}, (statuses, codes)
    assert codes == {"daily_budget_exhausted": REQUESTS - len(ids)}
    assert {r.status for r in system.standin.requests_to(CREATE)} == {201}
    assert len(system.standin.requests_to(CREATE)) == len(ids), "a refused call never reached OpenAI"

    sfn = system.client("stepfunctions")
    arn = system.stack.state_machines["LeashStateMachine"].arn
    assert {e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]} == ids

    for call in created:
        record = system.standin.call(call["call_id"])
        assert record is not None
        assert record.wait_ended(max(0.1, call["ends_at"] + 10 - time.time())), f"{call['call_id']} ran on"
        assert record.end_reason == "hangup"
        assert record.ended_at is not None and record.ended_at <= call["ends_at"] + 5
    time.sleep(1)  # the stand-in logs a hangup once it has answered it
    assert Counter(h.call_id for h in system.standin.hangups if h.status == 200) == Counter(ids)
