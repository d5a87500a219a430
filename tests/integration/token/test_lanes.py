"""Lanes, a caller's own day and the owner's blocks, in the limiter against DynamoDB (moto over HTTP): an exhausted
lane refuses only its own callers, the day stays the hard ceiling over lanes that add up to more, a caller's share
holds whatever its lane has left (a key may have its own), a blocked caller is refused before anything is charged,
and every give-back reaches the day, the lane and the caller's day alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.template_stack import LocalStack
from tests.integration.token.test_limiter import Clock, anon, limits, make_limiter
from tokenvend import table
from tokenvend.api_keys import ApiKeyStore
from tokenvend.caller import Caller, CallerKind, hash_api_key
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Grant, Limiter, Spend
from tokenvend.settings import LimitSettings

DAY = datetime(2031, 3, 3, 12, tzinfo=UTC)
TODAY = "2031-03-03"
CALL = 50  # seconds one call reserves in these tests


def lane_limits(*, day: int = 300, anonymous: int = 100, api_key: int = 100, user: int = 100, caller: int = 1000,
                **more: Any) -> LimitSettings:
    return limits(**{"daily_call_seconds": day, "anonymous_burst": 100, "api_key_burst": 100, "user_burst": 100,
                     "lane_call_seconds": {"anonymous": anonymous, "api_key": api_key, "user": user},
                     "lane_tokens": {"anonymous": 2, "api_key": 1, "user": 1}, "global_daily_limit": 4,
                     "caller_daily_call_seconds": caller, **more})


def user(name: str) -> Caller:
    return Caller(CallerKind.USER, f"user-{name}")


def call(limiter: Limiter, caller: Caller) -> Grant:
    return limiter.acquire(caller, Spend.call(limiter.limits, CALL))


def refusal(limiter: Limiter, caller: Caller, spend: Spend | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        limiter.acquire(caller, spend or Spend.call(limiter.limits, CALL))
    return caught.value


def day_item(client: Any, stack: LocalStack) -> dict[str, int]:
    item = client.get_item(TableName=stack.table_name, Key={"pk": {"S": table.day_pk(TODAY)}},
                           ConsistentRead=True).get("Item") or {}
    return {name: int(value["N"]) for name, value in item.items() if "N" in value and name != table.TTL}


def spent_item(client: Any, stack: LocalStack, caller: Caller) -> dict[str, Any]:
    return client.get_item(TableName=stack.table_name, Key={"pk": {"S": table.spent_pk(TODAY, caller.hash)}},
                           ConsistentRead=True).get("Item") or {}


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    del moto_endpoint
    return boto3.client("dynamodb")


def test_an_exhausted_lane_refuses_only_its_own_callers(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    call(limiter, anon("a")), call(limiter, anon("b"))  # the anonymous lane's 100 s
    error = refusal(limiter, anon("c"))
    assert (error.status, error.code) == (429, Code.DAILY_BUDGET_EXHAUSTED)
    assert "anonymous callers (the anonymous lane)" in error.message
    assert int(error.headers["Retry-After"]) == 12 * 3600  # until 00:00 UTC
    assert day_item(dynamodb, stack) == {"call_seconds": 100, "call_seconds_anonymous": 100}, "a refusal is free"
    call(limiter, user("u"))  # other lanes are untouched by the drained one
    assert day_item(dynamodb, stack) == {"call_seconds": 150, "call_seconds_anonymous": 100, "call_seconds_user": 50}


def test_the_day_stays_the_ceiling_over_lanes_that_add_up_to_more(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(day=100), Clock(DAY))
    call(limiter, anon("a")), call(limiter, user("u"))
    key, _ = ApiKeyStore(dynamodb, stack.table_name).create("app")
    keyed = Caller(CallerKind.API_KEY, "key-caller", hash_api_key(key))
    error = refusal(limiter, keyed)
    assert "call minutes for this service are used up" in error.message, "the day, not the key's lane"
    assert day_item(dynamodb, stack)["call_seconds"] == 100


def test_a_lane_smaller_than_one_call_refuses_without_asking_dynamodb(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(user=0), Clock(DAY))
    error = refusal(limiter, user("u"))
    assert "signed-in users (the user lane)" in error.message
    assert day_item(dynamodb, stack) == {}


def test_a_caller_holds_no_more_than_its_share_of_the_day(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(anonymous=300, caller=60), Clock(DAY))
    first = call(limiter, anon("a"))
    error = refusal(limiter, anon("a"))
    assert (error.status, error.code) == (429, Code.DAILY_BUDGET_EXHAUSTED)
    assert "CallerDailyCallMinutes, 1 per caller" in error.message and "Retry-After" in error.headers
    call(limiter, anon("b"))  # another caller has its own share
    assert day_item(dynamodb, stack)["call_seconds_anonymous"] == 100
    # Given back (nothing was created): the caller's day has room again, and counts one setup fewer.
    assert limiter.release(first) == CALL
    assert spent_item(dynamodb, stack, anon("a"))[table.SPENT_CALLS] == {"N": "0"}
    call(limiter, anon("a"))


def test_a_key_may_have_its_own_share(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(api_key=300, caller=60), Clock(DAY))
    store = ApiKeyStore(dynamodb, stack.table_name)
    generous, _ = store.create("generous", daily_call_minutes=2)
    plain, _ = store.create("plain")
    big = Caller(CallerKind.API_KEY, "key-generous", hash_api_key(generous))
    small = Caller(CallerKind.API_KEY, "key-plain", hash_api_key(plain))
    call(limiter, big), call(limiter, big)  # 100 s of its own 120
    assert "this key's own daily minutes, 2" in refusal(limiter, big).message
    call(limiter, small)
    assert "CallerDailyCallMinutes, 1 per caller" in refusal(limiter, small).message


def test_a_blocked_caller_is_refused_before_anything_is_charged(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    blocked = anon("bad")
    dynamodb.put_item(TableName=stack.table_name, Item={"pk": {"S": table.block_pk(blocked.hash)},
                                                        table.BLOCKED_AT: {"N": "1"}})
    error = refusal(limiter, blocked)
    assert (error.status, error.code) == (403, Code.CALLER_BLOCKED)
    assert error.code == refusal(limiter, blocked, Spend.token(limiter.limits)).code, "tokens too"
    assert day_item(dynamodb, stack) == {} and spent_item(dynamodb, stack, blocked) == {}
    call(limiter, anon("good"))
    dynamodb.delete_item(TableName=stack.table_name, Key={"pk": {"S": table.block_pk(blocked.hash)}})
    call(limiter, blocked)


def test_a_blocked_caller_with_an_empty_bucket_hears_it_is_blocked_not_when_to_come_back(
        stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(user_burst=1), Clock(DAY))
    call(limiter, user("u"))
    assert refusal(limiter, user("u")).code == Code.RATE_LIMITED
    dynamodb.put_item(TableName=stack.table_name, Item={"pk": {"S": table.block_pk(user("u").hash)},
                                                        table.BLOCKED_AT: {"N": "1"}})
    error = refusal(limiter, user("u"))
    assert (error.status, error.code) == (403, Code.CALLER_BLOCKED) and "Retry-After" not in error.headers


def test_the_callers_day_is_what_the_owners_report_reads(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    caller = Caller(CallerKind.ANONYMOUS, "anon-net", network="203.0.113.0/24")
    call(limiter, caller)
    item = spent_item(dynamodb, stack, caller)
    assert item[table.SPENT_KIND] == {"S": "anonymous"} and item[table.SPENT_NETWORK] == {"S": "203.0.113.0/24"}
    assert (item[table.CALL_SECONDS], item[table.SPENT_CALLS]) == ({"N": str(CALL)}, {"N": "1"})
    # Kept a week past its day, as the day's own counters.
    end_of_day = int((DAY.replace(hour=0) + timedelta(days=1)).timestamp())
    assert int(item[table.TTL]["N"]) == end_of_day + table.DAY_KEEP_SECONDS
    call(limiter, user("u"))
    assert table.SPENT_NETWORK not in spent_item(dynamodb, stack, user("u")), "only addresses have a network"


def test_an_early_hangups_credit_reaches_the_day_the_lane_and_the_caller(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    grant = call(limiter, user("u"))
    assert limiter.credit(grant.day, 30, grant.lane, grant.caller_hash)
    assert day_item(dynamodb, stack) == {"call_seconds": 20, "call_seconds_user": 20}
    assert spent_item(dynamodb, stack, user("u"))[table.CALL_SECONDS] == {"N": "20"}
    assert not limiter.credit(grant.day, 21, grant.lane, grant.caller_hash), "never below zero, refused whole"
    assert day_item(dynamodb, stack) == {"call_seconds": 20, "call_seconds_user": 20}


def test_tokens_follow_the_lanes(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    tokens = Spend.token(limiter.limits)
    limiter.acquire(user("u"), tokens)
    error = refusal(limiter, user("v"), tokens)
    assert "tokens for signed-in users (the user lane)" in error.message
    limiter.acquire(anon("a"), tokens), limiter.acquire(anon("b"), tokens)
    assert "anonymous lane" in refusal(limiter, anon("c"), tokens).message


def test_users_have_their_own_bucket(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(user=1000, day=1000, user_burst=2), Clock(DAY))
    call(limiter, user("u")), call(limiter, user("u"))
    assert refusal(limiter, user("u")).code == Code.RATE_LIMITED
    call(limiter, user("w"))


def test_the_human_check_reads_how_full_the_anonymous_lane_is(stack: LocalStack, dynamodb: Any) -> None:
    limiter = make_limiter(dynamodb, stack, lane_limits(), Clock(DAY))
    assert limiter.lane_share_used("anonymous") == 0
    call(limiter, anon("a"))
    assert limiter.lane_share_used("anonymous") == 0.5
    assert make_limiter(dynamodb, stack, lane_limits(anonymous=0), Clock(DAY)).lane_share_used("anonymous") == 1
