"""Per-caller rate limits, the day's budgets and the kill switch, metered in DynamoDB.

Each allowed token or call costs one `TransactWriteItems` with three parts, all or nothing:
  1. the caller's GCRA state: a compare-and-set of `tat` (so the new value is exact and no read is needed),
     for API keys on the key's own item, which also proves the key exists and is not revoked;
  2. the UTC day's budget: one token under `GlobalDailyLimit`, or a call's reserved seconds under
     `DailyCallMinutes` (the `Spend`);
  3. a condition check that the kill switch item is not set.
Nothing is locked while OpenAI is called. A denied request writes nothing; a request refused by the day's budget is
not charged to the caller (the transaction fails whole); what OpenAI failed to create is given back to both
budgets by `release`, and the unused seconds of a call hung up early by `credit`. When the guess of `tat` is stale
(another container moved it), the failed condition returns the current item and we retry with it: each retry means
some other request made progress, so this terminates. If DynamoDB fails or throttles we refuse (fail closed):
nothing is ever created unmetered.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from tokenvend import table
from tokenvend.api_keys import ApiKeyLookup, ApiKeyRecord
from tokenvend.caller import Caller, CallerKind
from tokenvend.errors import ApiError, Code, invalid_api_key, limiter_unavailable
from tokenvend.gcra import Bucket, Decision, decide
from tokenvend.settings import LimitSettings

# Each failed compare-and-set means another request for this caller won; a loser needs at most one attempt per
# competitor, so the bound is the concurrency we expect for one caller (reserved concurrency 20) plus margin.
MAX_ATTEMPTS = 32
HINT_CACHE_SIZE = 10_000
BUCKET_TTL_MARGIN_SECONDS = 3600


class Spend(NamedTuple):
    """What one grant takes from the day's budget, and how a refusal reads."""

    attribute: str  # the counter on the day's item
    amount: int
    limit: int
    what: str  # "tokens" or "calls", for the messages

    @classmethod
    def token(cls, limits: LimitSettings) -> Spend:
        return cls(table.COUNT, 1, limits.global_daily_limit, "tokens")

    @classmethod
    def call(cls, limits: LimitSettings, reserved_seconds: int) -> Spend:
        return cls(table.CALL_SECONDS, reserved_seconds, limits.daily_call_seconds, "calls")


class Grant(NamedTuple):
    """A metered permission to create one token or call; `release` it if nothing was created."""

    caller_pk: str
    bucket: Bucket
    day: str
    decision: Decision
    spend: Spend


class Allowance(NamedTuple):
    """What the RateLimit-* headers say."""

    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_seconds)}


class Limiter:
    def __init__(self, client: Any, table_name: str, limits: LimitSettings, keys: ApiKeyLookup,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table_name
        self._limits = limits
        self._clock = clock
        self._keys = keys
        # Our last known `tat` per caller: the compare-and-set guess. Wrong guesses cost a retry, never correctness.
        self._tat_hint: dict[str, int] = {}

    @property
    def limits(self) -> LimitSettings:
        return self._limits

    @property
    def anonymous_bucket(self) -> Bucket:
        return Bucket.per_hour(self._limits.anonymous_burst, self._limits.anonymous_rate_per_hour)

    def acquire(self, caller: Caller, spend: Spend) -> Grant:
        if self._limits.issuing_paused:
            raise _paused()
        if spend.amount > spend.limit:
            raise _exhausted(spend, self._now_ms())  # nothing fits: no need to ask DynamoDB
        bucket, pk, is_key = self._bucket_for(caller)
        for attempt in range(MAX_ATTEMPTS):
            now = self._now_ms()
            tat = self._tat_hint.get(pk)
            decision = decide(bucket, tat, now)
            if not decision.allowed:
                # Only a read can tell whether our hint is stale; denial is not the warm path.
                tat = self._read_tat(pk, is_key)
                decision = decide(bucket, tat, now)
                if not decision.allowed:
                    self._remember(pk, tat)
                    raise _rate_limited(bucket, decision, spend)
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        self._charge_caller(pk, is_key, tat, now, decision.new_tat, bucket),
                        self._spend_today(now, spend),
                        self._not_paused(),
                    ],
                )
            except ClientError as exc:
                if _error_code(exc) != "TransactionCanceledException":
                    raise limiter_unavailable(exc) from None
                self._on_cancel(exc, pk, is_key, caller, attempt, now, spend)
                continue
            except BotoCoreError as exc:
                raise limiter_unavailable(exc) from None
            self._remember(pk, decision.new_tat)
            return Grant(pk, bucket, _day(now), decision, spend)
        raise ApiError(429, Code.RATE_LIMITED, "Too many simultaneous requests; retry shortly.", {"Retry-After": "1"})

    def release(self, grant: Grant, *, keep_seconds: int = 0, keep_slot: bool = False) -> int:
        """Give back what was not used: the day's share of the grant but `keep_seconds` (what OpenAI bills for a
        call that may exist), and the caller's slot unless `keep_slot` (a caller whose own request failed keeps it
        spent, so that failing on purpose costs as much as succeeding). What was given back to the day, 0 if the
        give-back failed. Best effort: a failure here costs the caller a slot or the day some seconds, never spend."""
        amount = max(0, grant.spend.amount - keep_seconds)
        parts = [] if keep_slot else [{"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": grant.caller_pk}},
            "UpdateExpression": "SET #tat = #tat - :interval",
            "ConditionExpression": "attribute_exists(#tat)",
            "ExpressionAttributeNames": {"#tat": table.TAT},
            "ExpressionAttributeValues": {":interval": _n(grant.bucket.interval_ms)},
        }}]
        if amount:
            parts.append(self._give_back(grant.day, grant.spend.attribute, amount))
        if not parts:
            return 0
        try:
            self._client.transact_write_items(TransactItems=parts)
        except (ClientError, BotoCoreError):
            return 0
        finally:
            if not keep_slot:
                self._tat_hint.pop(grant.caller_pk, None)
        return amount

    def credit(self, day: str, seconds: int) -> bool:
        """Give unused call seconds back to that day's budget (a call hung up early). False if it failed."""
        if seconds <= 0:
            return True
        try:
            self._client.update_item(**self._give_back(day, table.CALL_SECONDS, seconds)["Update"])
        except (ClientError, BotoCoreError):
            return False
        return True

    def _give_back(self, day: str, attribute: str, amount: int) -> dict[str, Any]:
        # Never below zero: a give-back larger than what the day holds is a bug or a replay, and refused whole.
        return {"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.day_pk(day)}},
            "UpdateExpression": "ADD #count :minus",
            "ConditionExpression": "#count >= :amount",
            "ExpressionAttributeNames": {"#count": attribute},
            "ExpressionAttributeValues": {":minus": _n(-amount), ":amount": _n(amount)},
        }}

    def allowance(self, caller: Caller) -> Allowance:
        """The caller's allowance as this container last saw it, for answers that did not touch the limiter."""
        bucket, pk, _ = self._bucket_for(caller, cached_only=True)
        now = self._now_ms()
        tat = max(self._tat_hint.get(pk, now), now)
        remaining = max(0, (now + bucket.capacity_ms() - tat) // bucket.interval_ms)
        return Allowance(bucket.burst, remaining, -(-(tat - now) // 1000))

    @staticmethod
    def allowance_of(grant: Grant) -> Allowance:
        return Allowance(grant.bucket.burst, grant.decision.remaining, grant.decision.reset_seconds)

    # --- the three parts of the transaction -------------------------------------------------------------

    def _charge_caller(self, pk: str, is_key: bool, tat: int | None, now: int, new_tat: int,
                       bucket: Bucket) -> dict[str, Any]:
        names = {"#tat": table.TAT}
        values: dict[str, Any] = {":new_tat": _n(new_tat)}
        if tat is None or tat <= now:
            # Any tat at or before now means a full bucket: the outcome does not depend on its exact value.
            condition = "(attribute_not_exists(#tat) OR #tat <= :now)"
            values[":now"] = _n(now)
        else:
            condition = "#tat = :tat"
            values[":tat"] = _n(tat)
        if is_key:
            update = "SET #tat = :new_tat, #last_used = :now_s"
            condition = f"attribute_exists(pk) AND #revoked = :false AND {condition}"
            names |= {"#last_used": table.KEY_LAST_USED, "#revoked": table.KEY_REVOKED}
            values |= {":now_s": _n(now // 1000), ":false": {"BOOL": False}}
        else:
            # Once tat has passed the bucket is full again, and a missing item means exactly that: let TTL reap it.
            update = "SET #tat = :new_tat, #ttl = :ttl"
            names["#ttl"] = table.TTL
            values[":ttl"] = _n(new_tat // 1000 + BUCKET_TTL_MARGIN_SECONDS)
        return {"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": pk}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }}

    def _spend_today(self, now: int, spend: Spend) -> dict[str, Any]:
        day_end = _day_end(now)
        # A missing counter means nothing spent today, which leaves room for any spend up to the limit.
        return {"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.day_pk(_day(now))}},
            "UpdateExpression": "ADD #count :amount SET #ttl = :ttl",
            "ConditionExpression": "attribute_not_exists(#count) OR #count <= :room",
            "ExpressionAttributeNames": {"#count": spend.attribute, "#ttl": table.TTL},
            "ExpressionAttributeValues": {":amount": _n(spend.amount), ":room": _n(spend.limit - spend.amount),
                                          ":ttl": _n(day_end // 1000 + 86_400)},
        }}

    def _not_paused(self) -> dict[str, Any]:
        return {"ConditionCheck": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.CONTROL_PK}},
            "ConditionExpression": "attribute_not_exists(#paused) OR #paused = :false",
            "ExpressionAttributeNames": {"#paused": table.PAUSED},
            "ExpressionAttributeValues": {":false": {"BOOL": False}},
        }}

    # --- when the transaction is cancelled ---------------------------------------------------------------

    def _on_cancel(self, exc: ClientError, pk: str, is_key: bool, caller: Caller, attempt: int, now: int,
                   spend: Spend) -> None:
        reasons = exc.response.get("CancellationReasons") or []
        codes = [r.get("Code", "None") for r in reasons] + ["None"] * (3 - len(reasons))
        caller_code, day_code, control_code = codes[:3]
        if control_code == "ConditionalCheckFailed":
            raise _paused()
        if day_code == "ConditionalCheckFailed":
            raise _exhausted(spend, now)
        if caller_code == "ConditionalCheckFailed":
            item = reasons[0].get("Item") or {}
            if is_key and (not item or item.get(table.KEY_REVOKED, {}).get("BOOL", False)):
                self._keys.forget(caller.key_hash or "")
                raise invalid_api_key()
            self._remember(pk, int(item[table.TAT]["N"]) if table.TAT in item else None)
            return
        if any(code in ("TransactionConflict", "None") for code in codes):
            # Another transaction touched one of our items at the same moment: back off briefly and retry.
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))  # noqa: S311 - jitter, not security
            return
        raise limiter_unavailable()

    def _read_tat(self, pk: str, is_key: bool) -> int | None:
        try:
            item = self._client.get_item(TableName=self._table, Key={table.PK: {"S": pk}},
                                         ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise limiter_unavailable(exc) from None
        if is_key and (not item or item.get(table.KEY_REVOKED, {}).get("BOOL", False)):
            raise invalid_api_key()
        return int(item[table.TAT]["N"]) if item and table.TAT in item else None

    # --- who pays -----------------------------------------------------------------------------------------

    def _bucket_for(self, caller: Caller, *, cached_only: bool = False) -> tuple[Bucket, str, bool]:
        limits = self._limits
        if caller.kind is CallerKind.ANONYMOUS:
            return self.anonymous_bucket, table.bucket_pk(caller.hash), False
        key_hash = caller.key_hash or ""
        record: ApiKeyRecord | None = self._keys.cached(key_hash) if cached_only else self._keys.get(key_hash)
        burst = record.burst if record and record.burst else limits.api_key_burst
        rate = record.rate_per_hour if record and record.rate_per_hour else limits.api_key_rate_per_hour
        return Bucket.per_hour(burst, rate), table.key_pk(key_hash), True

    def _remember(self, pk: str, tat: int | None) -> None:
        if len(self._tat_hint) >= HINT_CACHE_SIZE:
            self._tat_hint.clear()
        if tat is None:
            self._tat_hint.pop(pk, None)
        else:
            self._tat_hint[pk] = tat

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _day(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%d")


def _day_end(now_ms: int) -> int:
    start = datetime.fromtimestamp(now_ms / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((start + timedelta(days=1)).timestamp() * 1000)


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _rate_limited(bucket: Bucket, decision: Decision, spend: Spend) -> ApiError:
    headers = {"Retry-After": str(decision.retry_after_seconds),
               **Allowance(bucket.burst, 0, decision.reset_seconds).headers()}
    return ApiError(429, Code.RATE_LIMITED,
                    f"Too many {spend.what} requested; retry in {decision.retry_after_seconds} s.", headers)


def _exhausted(spend: Spend, now_ms: int) -> ApiError:
    budget = "token budget for this service is" if spend.what == "tokens" else "call minutes for this service are"
    return ApiError(429, Code.DAILY_BUDGET_EXHAUSTED, f"Today's {budget} used up; it resets at 00:00 UTC.",
                    {"Retry-After": str(-(-(_day_end(now_ms) - now_ms) // 1000))})


def _paused() -> ApiError:
    return ApiError(503, Code.ISSUING_PAUSED, "Issuing is paused by the owner.", {"Retry-After": "60"})
