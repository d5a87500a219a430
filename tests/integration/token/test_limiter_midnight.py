"""The limiter's UTC day across midnight, on a clock we control (moto over HTTP). A grant at 23:59:59.9 is charged to
that day's `day#...` item and one at 00:00:00 to the next day's; each day's cap binds on that day alone; a release
or a credit made after midnight goes back to the day its grant was charged to, and makes no room on the new day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.template_stack import LocalStack
from tests.integration.token.test_limiter import Clock, anon, day_count, limits, make_limiter, refused, take
from tokenvend import table
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Spend

EVE = datetime(2030, 5, 17, tzinfo=UTC)
LAST_TENTH = EVE + timedelta(hours=23, minutes=59, seconds=59, milliseconds=900)  # 23:59:59.9 UTC
MIDNIGHT = EVE + timedelta(days=1)
FIRST, SECOND = "2030-05-17", "2030-05-18"


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    del moto_endpoint
    return boto3.client("dynamodb")


def day_item(client: Any, stack: LocalStack, day: str) -> dict[str, Any]:
    return client.get_item(TableName=stack.table_name, Key={table.PK: {"S": table.day_pk(day)}},
                           ConsistentRead=True).get("Item") or {}


def call_seconds(client: Any, stack: LocalStack, day: str) -> int | None:
    item = day_item(client, stack, day)
    return int(item[table.CALL_SECONDS]["N"]) if table.CALL_SECONDS in item else None


def test_tokens_across_midnight_each_day_its_own_cap(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(LAST_TENTH - timedelta(milliseconds=100))
    limiter = make_limiter(dynamodb, stack, limits(global_daily_limit=2, anonymous_burst=10), clock)
    early = take(limiter, anon("a"))
    clock.set(LAST_TENTH)
    late = take(limiter, anon("b"))
    assert (early.day, late.day) == (FIRST, FIRST)
    assert (day_count(dynamodb, stack, FIRST), day_count(dynamodb, stack, SECOND)) == (2, None)

    clock.set(LAST_TENTH + timedelta(milliseconds=50))  # the first day is full: refused, until its midnight
    error = refused(limiter, anon("c"))
    assert (error.code, error.headers["Retry-After"]) == (Code.DAILY_BUDGET_EXHAUSTED, "1")

    clock.set(MIDNIGHT)  # 00:00:00.000: the next day's counter, which starts empty
    after = [take(limiter, anon("c")), take(limiter, anon("d"))]
    assert [g.day for g in after] == [SECOND, SECOND]
    assert (day_count(dynamodb, stack, FIRST), day_count(dynamodb, stack, SECOND)) == (2, 2)
    error = refused(limiter, anon("e"))  # the second day's own cap
    assert (error.code, error.headers["Retry-After"]) == (Code.DAILY_BUDGET_EXHAUSTED, "86400")

    clock.set(MIDNIGHT + timedelta(seconds=1))
    limiter.release(late)  # after midnight: back to the first day, which paid for it
    assert (day_count(dynamodb, stack, FIRST), day_count(dynamodb, stack, SECOND)) == (1, 2)
    assert refused(limiter, anon("e")).code == Code.DAILY_BUDGET_EXHAUSTED, "room on yesterday is none today"
    limiter.release(after[0])
    assert (day_count(dynamodb, stack, FIRST), day_count(dynamodb, stack, SECOND)) == (1, 1)
    assert take(limiter, anon("e")).day == SECOND

    # Each day's item expires a day after its own end.
    for day, end in ((FIRST, MIDNIGHT), (SECOND, MIDNIGHT + timedelta(days=1))):
        ttl = int(day_item(dynamodb, stack, day)[table.TTL]["N"])
        assert ttl == int(end.timestamp()) + table.DAY_KEEP_SECONDS, day


def test_call_seconds_across_midnight_credit_goes_to_the_day_charged(stack: LocalStack, dynamodb: Any) -> None:
    clock = Clock(LAST_TENTH)
    settings = limits(daily_call_seconds=100, anonymous_burst=10)
    limiter = make_limiter(dynamodb, stack, settings, clock)
    call = Spend.call(settings, 60)
    evening = limiter.acquire(anon("a"), call)
    assert evening.day == FIRST and call_seconds(dynamodb, stack, FIRST) == 60
    with pytest.raises(ApiError) as caught:  # 60 + 60 > 100 on the first day
        limiter.acquire(anon("b"), call)
    assert caught.value.code == Code.DAILY_BUDGET_EXHAUSTED

    clock.set(MIDNIGHT)
    morning = limiter.acquire(anon("b"), call)
    assert morning.day == SECOND
    assert (call_seconds(dynamodb, stack, FIRST), call_seconds(dynamodb, stack, SECOND)) == (60, 60)

    clock.set(MIDNIGHT + timedelta(seconds=30))  # the evening's call hangs up early: 30 s unused
    assert limiter.credit(evening.day, 30)
    assert (call_seconds(dynamodb, stack, FIRST), call_seconds(dynamodb, stack, SECOND)) == (30, 60)
    with pytest.raises(ApiError) as caught:  # the credit made no room today: 60 + 60 > 100 still
        limiter.acquire(anon("c"), call)
    assert caught.value.code == Code.DAILY_BUDGET_EXHAUSTED
    limiter.release(morning)  # and a release after midnight of today's call goes to today
    assert (call_seconds(dynamodb, stack, FIRST), call_seconds(dynamodb, stack, SECOND)) == (30, 0)
    assert limiter.acquire(anon("c"), call).day == SECOND
