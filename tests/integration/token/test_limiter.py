"""The limiter against DynamoDB (moto over HTTP): the global daily cap and its rollover, give-backs, the kill switch,
failing closed, the number of DynamoDB requests per token, and the rate-limit headers through the handler."""

from __future__ import annotations

import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from local.template_stack import LocalStack
from tests.integration.harness import TokenApi, body_of, load_token_app
from tokenvend import table
from tokenvend.api_keys import ApiKeyLookup, ApiKeyStore
from tokenvend.caller import Caller, CallerKind
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Grant, Limiter, Spend
from tokenvend.settings import LimitSettings

DAY = datetime(2030, 5, 17, tzinfo=UTC)


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def limits(**overrides: Any) -> LimitSettings:
    values = {"anonymous_burst": 3, "anonymous_rate_per_hour": 0.001, "api_key_burst": 5,
              "api_key_rate_per_hour": 0.001, "global_daily_limit": 5, "daily_call_seconds": 3600,
              "allow_anonymous": True, "issuing_paused": False} | overrides
    return LimitSettings(**values)


def make_limiter(client: Any, stack: LocalStack, settings: LimitSettings, clock: Any) -> Limiter:
    return Limiter(client, stack.table_name, settings, ApiKeyLookup(ApiKeyStore(client, stack.table_name)), clock)


def take(limiter: Limiter, caller: Caller) -> Grant:
    """One token's worth: the token route's spend under that limiter's day cap."""
    return limiter.acquire(caller, Spend.token(limiter.limits))


def anon(name: str) -> Caller:
    return Caller(CallerKind.ANONYMOUS, f"caller-{name}")


def day_count(client: Any, stack: LocalStack, day: str) -> int | None:
    item = client.get_item(TableName=stack.table_name, Key={"pk": {"S": table.day_pk(day)}},
                           ConsistentRead=True).get("Item")
    return int(item[table.COUNT]["N"]) if item else None


def day_items(client: Any, stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Every `day#...` item in the table, by day: whatever day the handler's own clock charged."""
    items = client.scan(TableName=stack.table_name, ConsistentRead=True)["Items"]
    return {item["pk"]["S"].removeprefix("day#"): item for item in items if item["pk"]["S"].startswith("day#")}


def tat_of(client: Any, stack: LocalStack, caller: Caller) -> int | None:
    item = client.get_item(TableName=stack.table_name, Key={"pk": {"S": table.bucket_pk(caller.hash)}},
                           ConsistentRead=True).get("Item")
    return int(item[table.TAT]["N"]) if item and table.TAT in item else None


def refused(limiter: Limiter, caller: Caller) -> ApiError:
    with pytest.raises(ApiError) as caught:
        take(limiter, caller)
    return caught.value


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    del moto_endpoint
    return boto3.client("dynamodb")


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the global daily cap ------------------------------------------------------------------------------------

def test_global_cap_is_exact_and_rolls_over_at_utc_midnight(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(DAY + timedelta(hours=23, minutes=59, seconds=50))
    limiter = make_limiter(dynamodb, stack, limits(global_daily_limit=5, anonymous_burst=2), clock)
    granted = [take(limiter, anon(str(i // 2))) for i in range(5)]  # callers 0, 0, 1, 1, 2
    assert {g.day for g in granted} == {"2030-05-17"}
    assert day_count(dynamodb, stack, "2030-05-17") == 5

    error = refused(limiter, anon("2"))  # caller 2 still has a slot: the global cap refuses
    assert (error.status, error.code) == (429, Code.DAILY_BUDGET_EXHAUSTED)
    assert error.headers["Retry-After"] == "10"  # seconds to 00:00 UTC
    assert day_count(dynamodb, stack, "2030-05-17") == 5

    clock.set(DAY + timedelta(days=1, seconds=1))
    grant = take(limiter, anon("2"))
    assert grant.day == "2030-05-18"
    assert day_count(dynamodb, stack, "2030-05-18") == 1
    assert day_count(dynamodb, stack, "2030-05-17") == 5
    # Yesterday's counter expires by TTL a day after its day ended.
    item = dynamodb.get_item(TableName=stack.table_name, Key={"pk": {"S": "day#2030-05-17"}})["Item"]
    assert int(item[table.TTL]["N"]) == int((DAY + timedelta(days=1)).timestamp()) + table.DAY_KEEP_SECONDS


def test_a_request_refused_by_the_global_cap_is_not_charged_to_the_caller(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(DAY + timedelta(hours=12))
    limiter = make_limiter(dynamodb, stack, limits(global_daily_limit=2, anonymous_burst=3), clock)
    take(limiter, anon("a"))
    take(limiter, anon("a"))
    for _ in range(4):
        assert refused(limiter, anon("b")).code == Code.DAILY_BUDGET_EXHAUSTED
    assert tat_of(dynamodb, stack, anon("b")) is None, "the refused caller's bucket was never written"
    assert day_count(dynamodb, stack, "2030-05-17") == 2

    clock.set(DAY + timedelta(days=1, hours=1))  # a new day, and no refill at 0.001/h: only the burst counts
    fresh = make_limiter(dynamodb, stack, limits(global_daily_limit=2, anonymous_burst=3), clock)
    assert [take(fresh, anon("b")).decision.remaining for _ in range(2)] == [2, 1]


def test_a_zero_global_limit_issues_nothing(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, limits(global_daily_limit=0), Clock(DAY))
    assert refused(limiter, anon("a")).code == Code.DAILY_BUDGET_EXHAUSTED
    assert tat_of(dynamodb, stack, anon("a")) is None


def test_release_gives_back_to_both_budgets(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(DAY + timedelta(hours=3))
    limiter = make_limiter(dynamodb, stack, limits(global_daily_limit=3, anonymous_burst=2), clock)
    first = take(limiter, anon("a"))
    second = take(limiter, anon("a"))
    assert day_count(dynamodb, stack, "2030-05-17") == 2
    assert refused(limiter, anon("a")).code == Code.RATE_LIMITED

    limiter.release(second)
    limiter.release(first)
    assert day_count(dynamodb, stack, "2030-05-17") == 0
    assert tat_of(dynamodb, stack, anon("a")) == int(clock() * 1000)  # back to a full bucket
    # Both slots and the global budget are back: the full burst again, then the global cap of 3 binds.
    assert [take(limiter, anon("a")).decision.allowed for _ in range(2)] == [True, True]
    take(limiter, anon("b"))
    assert refused(limiter, anon("c")).code == Code.DAILY_BUDGET_EXHAUSTED


def test_release_by_another_container_works_from_a_stale_hint(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(DAY + timedelta(hours=3))
    one = make_limiter(dynamodb, stack, limits(anonymous_burst=2), clock)
    two = make_limiter(dynamodb, stack, limits(anonymous_burst=2), clock)
    grant = take(one, anon("a"))
    take(two, anon("a"))  # two has no hint: its first guess (a full bucket) is wrong, then right
    assert refused(one, anon("a")).code == Code.RATE_LIMITED  # one's hint is stale: it reads and refuses
    one.release(grant)
    assert take(two, anon("a")).decision.allowed  # two's hint is stale the other way: a read
    assert refused(two, anon("a")).code == Code.RATE_LIMITED


# --- the kill switch -------------------------------------------------------------------------------------------

def test_kill_switch_item_stops_issuing_at_once(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, limits(), Clock(DAY))
    take(limiter, anon("a"))
    dynamodb.put_item(TableName=stack.table_name, Item={"pk": {"S": "control"}, "paused": {"BOOL": True}})
    error = refused(limiter, anon("a"))
    assert (error.status, error.code, error.headers["Retry-After"]) == (503, Code.ISSUING_PAUSED, "60")
    assert day_count(dynamodb, stack, "2030-05-17") == 1
    dynamodb.put_item(TableName=stack.table_name, Item={"pk": {"S": "control"}, "paused": {"BOOL": False}})
    assert take(limiter, anon("a")).decision.remaining == 1


def test_kill_switch_through_the_handler(token_api: TokenApi) -> None:
    assert token_api.call("POST", "/token").status == 200
    token_api.dynamodb.put_item(TableName=token_api.stack.table_name,
                                Item={"pk": {"S": "control"}, "paused": {"BOOL": True}})
    response = token_api.call("POST", "/token", source_ip="198.51.100.20")
    assert response.status == 503
    assert body_of(response)["error"]["code"] == "issuing_paused"
    assert response.header("retry-after") == "60"
    assert len(token_api.standin.requests) == 1


def test_issuing_paused_setting_refuses_without_touching_dynamodb(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, ISSUING_PAUSED="true")
    api.put_key(fresh_standin.api_key)
    calls: list[str] = []
    api.module.services.dynamodb.meta.events.register("before-call.dynamodb.*",
                                                      lambda model, **_: calls.append(model.name))
    response = api.call("POST", "/token")
    assert response.status == 503 and body_of(response)["error"]["code"] == "issuing_paused"
    assert calls == [] and fresh_standin.requests == []


# --- failing closed ----------------------------------------------------------------------------------------------

def test_dynamodb_unreachable_is_503_and_nothing_is_issued(stack, fresh_standin, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", closed_port_url())  # Secrets Manager stays on moto
    api = load_token_app(stack, fresh_standin)
    api.put_key(fresh_standin.api_key)
    started = time.monotonic()
    response = api.call("POST", "/token")
    assert response.status == 503
    assert body_of(response)["error"]["code"] == "limiter_unavailable"
    assert response.header("retry-after") == "2"
    assert fresh_standin.requests == [], "no token without metering"
    assert time.monotonic() - started < 10


def test_throttled_transaction_is_503_and_nothing_is_issued(token_api: TokenApi) -> None:
    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                          "TransactWriteItems")

    events = token_api.module.services.dynamodb.meta.events
    events.register("before-call.dynamodb.TransactWriteItems", throttle, unique_id="throttle")
    try:
        response = token_api.call("POST", "/token")
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="throttle")
    assert response.status == 503
    assert body_of(response)["error"]["code"] == "limiter_unavailable"
    assert token_api.standin.requests == []
    assert token_api.call("POST", "/token").status == 200  # and it recovers


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any):
        yield self._data


def test_throttling_on_the_wire_is_retried_then_503(token_api: TokenApi) -> None:
    """DynamoDB answers 400 ThrottlingException to every attempt: botocore retries, then we refuse."""
    sent: list[str] = []

    def throttled_answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.headers.get("X-Amz-Target", b"").decode())
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {"x-amzn-requestid": "x", "content-type": "application/x-amz-json-1.0"},
                           _Body(body))

    events = token_api.module.services.dynamodb.meta.events
    events.register("before-send.dynamodb.TransactWriteItems", throttled_answer, unique_id="wire-throttle")
    try:
        response = token_api.call("POST", "/token")
    finally:
        events.unregister("before-send.dynamodb.TransactWriteItems", unique_id="wire-throttle")
    assert response.status == 503 and body_of(response)["error"]["code"] == "limiter_unavailable"
    assert len(sent) == 3, "botocore retries twice (retries max_attempts=2 counts retries), then we fail closed"
    assert token_api.standin.requests == []
    assert day_items(token_api.dynamodb, token_api.stack) == {}, "no day was charged"


# --- DynamoDB requests per token --------------------------------------------------------------------------------

def _count_requests(api: TokenApi) -> tuple[Counter[str], Counter[str], list[str]]:
    calls: Counter[str] = Counter()
    sends: Counter[str] = Counter()
    secrets: list[str] = []
    dynamodb_events = api.module.services.dynamodb.meta.events
    dynamodb_events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    dynamodb_events.register("before-send.dynamodb.*", lambda request, **_: sends.update(["http"]))
    api.module.services.secretsmanager.meta.events.register(
        "before-call.secrets-manager.*", lambda model, **_: secrets.append(model.name))
    return calls, sends, secrets


def test_warm_anonymous_token_costs_one_dynamodb_request(token_api: TokenApi) -> None:
    assert token_api.call("POST", "/token", source_ip="198.51.100.30").status == 200  # warms the secrets
    calls, sends, secrets = _count_requests(token_api)
    for ip in ("198.51.100.30", "198.51.100.30", "198.51.100.31"):
        before = sum(calls.values())
        assert token_api.call("POST", "/token", source_ip=ip).status == 200
        assert sum(calls.values()) - before == 1
    assert calls == Counter({"TransactWriteItems": 3})
    assert sends["http"] == 3
    assert secrets == [], "a warm vend reads no secret"


def test_api_key_costs_two_requests_on_first_use_then_one(token_api: TokenApi) -> None:
    from tokenvend.api_keys import ApiKeyStore

    key, _ = ApiKeyStore(token_api.dynamodb, token_api.stack.table_name).create("metered")
    assert token_api.call("POST", "/token").status == 200  # warms the secrets
    calls, sends, secrets = _count_requests(token_api)
    auth = {"authorization": f"Bearer {key}"}
    assert token_api.call("POST", "/token", headers=auth).status == 200
    assert calls == Counter({"GetItem": 1, "TransactWriteItems": 1})
    calls.clear()
    for _ in range(3):
        assert token_api.call("POST", "/token", headers=auth).status == 200
    assert calls == Counter({"TransactWriteItems": 3})
    assert sends["http"] == 5
    assert secrets == []


# --- the headers callers see ---------------------------------------------------------------------------------------

def test_ratelimit_headers_on_200_and_retry_after_on_429(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, ANONYMOUS_BURST="2", ANONYMOUS_RATE_PER_HOUR="1")
    api.put_key(fresh_standin.api_key)
    first, second, third = (api.call("POST", "/token") for _ in range(3))
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert [first.header("ratelimit-limit"), first.header("ratelimit-remaining")] == ["2", "1"]
    assert [second.header("ratelimit-limit"), second.header("ratelimit-remaining")] == ["2", "0"]
    assert 3595 <= int(first.header("ratelimit-reset")) <= 3600  # one slot used: an hour to full
    assert 7195 <= int(second.header("ratelimit-reset")) <= 7200
    assert first.header("retry-after") is None

    assert body_of(third)["error"]["code"] == "rate_limited"
    assert 3590 <= int(third.header("retry-after")) <= 3600  # one slot earned back in an hour
    assert third.header("ratelimit-limit") == "2" and third.header("ratelimit-remaining") == "0"
    assert 7190 <= int(third.header("ratelimit-reset")) <= 7200
    assert third.header("cache-control") == "no-store"
    assert len(fresh_standin.requests) == 2


def test_daily_budget_exhausted_says_when_midnight_utc_is(stack, fresh_standin) -> None:
    """The handler runs on its own clock: the budget is used up on every day the request could fall on (this UTC
    day and the next, as two tokens would leave it), so it is refused whether or not midnight passes meanwhile, and
    Retry-After must count down to the midnight after the moment it was answered."""
    api = load_token_app(stack, fresh_standin, GLOBAL_DAILY_LIMIT="2")
    api.put_key(fresh_standin.api_key)
    before = time.time()
    first = datetime.fromtimestamp(before, UTC).date()
    for day in (first, first + timedelta(days=1)):
        api.dynamodb.put_item(TableName=stack.table_name, Item={"pk": {"S": table.day_pk(day.isoformat())},
                                                                 table.COUNT: {"N": "2"}})
    response = api.call("POST", "/token", source_ip="198.51.100.42")
    after = time.time()
    assert response.status == 429
    assert body_of(response)["error"]["code"] == "daily_budget_exhausted"

    def next_midnight(t: float) -> float:
        now = datetime.fromtimestamp(t, UTC)
        return (now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()

    # Answered at some t in [before, after]: t + Retry-After is the midnight after t (rounded up to the second).
    retry_after = int(response.header("retry-after"))
    assert 1 <= retry_after <= 86_400
    midnights = {next_midnight(before), next_midnight(after)}
    assert any(before + retry_after - 2 <= m <= after + retry_after + 1 for m in midnights), retry_after
    # The caller was not charged: their allowance is whole, and no day's count moved.
    assert response.header("ratelimit-limit") == "3" and response.header("ratelimit-remaining") == "3"
    assert {day: int(item[table.COUNT]["N"]) for day, item in day_items(api.dynamodb, stack).items()} == {
        first.isoformat(): 2, (first + timedelta(days=1)).isoformat(): 2}
    assert fresh_standin.requests == []
