"""Per-caller rate limits, the day's budgets, its lanes, each caller's day, blocks and the kill switch, metered in
DynamoDB.

Each allowed token or call costs one `TransactWriteItems` with five parts, all or nothing:
  1. the caller's GCRA state: a compare-and-set of `tat` (so the new value is exact and no read is needed),
     for API keys on the key's own item, which also proves the key exists and is not revoked;
  2. the UTC day's budget: one token under `GlobalDailyLimit`, or a call's reserved seconds under
     `DailyCallMinutes` (the `Spend`), and the same amount under the caller's lane's share, on the same item;
  3. the caller's own day: a call's seconds under `CallerDailyCallMinutes` (or the key's own), and what the owner's
     usage report reads;
  4. a condition check that the kill switch item is not set;
  5. a condition check that the owner has not blocked the caller.
Nothing is locked while OpenAI is called. A denied request writes nothing; a request refused by a budget is not
charged to the caller (the transaction fails whole); what OpenAI failed to create is given back to every budget by
`release`, and the unused seconds of a call hung up early by `credit`. When the guess of `tat` is stale
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
from tokenvend.metric_names import LANE_EXHAUSTED, tally
from tokenvend.settings import LANE_NAMES, LimitSettings

# Each failed compare-and-set means another request for this caller won; a loser needs at most one attempt per
# competitor, so the bound is the concurrency we expect for one caller (reserved concurrency 20) plus margin.
MAX_ATTEMPTS = 32
HINT_CACHE_SIZE = 10_000
BUCKET_TTL_MARGIN_SECONDS = 3600


class Spend(NamedTuple):
    """What one grant takes from the day's budget, and how a refusal reads."""

    attribute: str  # the counter on the day's item (and the lane's beside it, and the caller's day's)
    amount: int
    limit: int
    what: str  # "tokens" or "calls", for the messages

    @classmethod
    def token(cls, limits: LimitSettings) -> Spend:
        return cls(table.COUNT, 1, limits.global_daily_limit, "tokens")

    @classmethod
    def call(cls, limits: LimitSettings, reserved_seconds: int) -> Spend:
        return cls(table.CALL_SECONDS, reserved_seconds, limits.daily_call_seconds, "calls")

    @property
    def is_call(self) -> bool:
        return self.attribute == table.CALL_SECONDS


class Grant(NamedTuple):
    """A metered permission to create one token or call; `release` it if nothing was created."""

    caller_pk: str
    bucket: Bucket
    day: str
    decision: Decision
    spend: Spend
    lane: str = ""
    caller_hash: str = ""


class _Meter(NamedTuple):
    """Everything one caller is measured against."""

    bucket: Bucket
    pk: str
    is_key: bool
    lane: str
    lane_limit: int
    caller_limit: int | None  # a call's seconds per day; tokens have no per-caller day
    own_share: bool = False  # the caller's limit is its key's own, not CallerDailyCallMinutes


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
        meter = self._meter_for(caller, spend)
        bucket, pk, is_key = meter.bucket, meter.pk, meter.is_key
        refusal = _too_big(spend, meter, self._now_ms())
        if refusal is not None:
            raise refusal  # nothing fits: no need to ask DynamoDB
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
                    # A blocked caller is told so, not when to come back (the transaction never runs for it here).
                    self.refuse_if_blocked(caller)
                    raise _rate_limited(bucket, decision, spend)
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        self._charge_caller(pk, is_key, tat, now, decision.new_tat, bucket),
                        self._spend_today(now, spend, meter),
                        self._spend_callers_day(now, spend, meter, caller),
                        self._not_paused(),
                        self._not_blocked(caller),
                    ],
                )
            except ClientError as exc:
                if _error_code(exc) != "TransactionCanceledException":
                    raise limiter_unavailable(exc) from None
                self._on_cancel(exc, meter, caller, attempt, now, spend)
                continue
            except BotoCoreError as exc:
                raise limiter_unavailable(exc) from None
            self._remember(pk, decision.new_tat)
            return Grant(pk, bucket, _day(now), decision, spend, meter.lane, caller.hash)
        raise ApiError(429, Code.RATE_LIMITED, "Too many simultaneous requests; retry shortly.", {"Retry-After": "1"})

    def release(self, grant: Grant, *, keep_seconds: int = 0, keep_slot: bool = False) -> int:
        """Give back what was not used: the day's share of the grant but `keep_seconds` (what OpenAI bills for a
        call that may exist), and the caller's slot unless `keep_slot` (a caller whose own request failed keeps it
        spent, so that failing on purpose costs as much as succeeding). What was given back to the day, 0 if the
        give-back failed. Best effort: a failure here costs the caller a slot or the day some seconds, never spend."""
        amount = max(0, grant.spend.amount - keep_seconds)
        parts: list[dict[str, Any]] = [] if keep_slot else [{"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": grant.caller_pk}},
            "UpdateExpression": "SET #tat = #tat - :interval",
            "ConditionExpression": "attribute_exists(#tat)",
            "ExpressionAttributeNames": {"#tat": table.TAT},
            "ExpressionAttributeValues": {":interval": _n(grant.bucket.interval_ms)},
        }}]
        if amount:
            parts += self._give_back(grant.day, grant.spend.attribute, amount, grant.lane, grant.caller_hash,
                                     setup=amount == grant.spend.amount)
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

    def credit(self, day: str, seconds: int, lane: str = "", caller_hash: str = "") -> bool:
        """Give unused call seconds back to that day's budget, its lane and the caller's day (a call hung up
        early). False if it failed."""
        if seconds <= 0:
            return True
        try:
            self._client.transact_write_items(
                TransactItems=self._give_back(day, table.CALL_SECONDS, seconds, lane, caller_hash, setup=False))
        except (ClientError, BotoCoreError):
            return False
        return True

    def _give_back(self, day: str, attribute: str, amount: int, lane: str, caller_hash: str, *,
                   setup: bool) -> list[dict[str, Any]]:
        """The day's total and lane, and the caller's day, each less `amount` (and one setup fewer when `setup`:
        nothing was created). Never below zero: a give-back larger than what is held is a bug or a replay, and
        refused whole. (A grant from before lanes existed gives back to the total alone.)"""
        names = {"#count": attribute}
        condition, update = "#count >= :amount", "ADD #count :minus"
        if lane:
            names["#lane"] = table.lane_attribute(attribute, lane)
            condition += " AND #lane >= :amount"
            update += ", #lane :minus"
        values = {":minus": _n(-amount), ":amount": _n(amount)}
        parts = [{"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.day_pk(day)}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }}]
        if caller_hash:
            caller_names = {"#count": attribute}
            caller_update = "ADD #count :minus"
            caller_values = dict(values)
            if setup and attribute == table.CALL_SECONDS:
                caller_names["#calls"] = table.SPENT_CALLS
                caller_update += ", #calls :minus_one"
                caller_values[":minus_one"] = _n(-1)
            parts.append({"Update": {
                "TableName": self._table,
                "Key": {table.PK: {"S": table.spent_pk(day, caller_hash)}},
                "UpdateExpression": caller_update,
                "ConditionExpression": "#count >= :amount",
                "ExpressionAttributeNames": caller_names,
                "ExpressionAttributeValues": caller_values,
            }})
        return parts

    def refuse_if_blocked(self, caller: Caller) -> None:
        """`403 caller_blocked` for a caller the owner blocked, where it must be known before the charging
        transaction (which checks it anyway): before a refusal for the bucket, and before the human check. A read
        that fails says nothing: the transaction still decides."""
        try:
            item = self._client.get_item(TableName=self._table, Key={table.PK: {"S": table.block_pk(caller.hash)}},
                                         ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            return
        if item:
            raise _blocked()

    def lane_share_used(self, lane: str) -> float | None:
        """How much of its call minutes a lane holds today (1.0: all), or None if the day cannot be read."""
        limit = self._limits.lane_limit(True, lane)
        if limit <= 0:
            return 1.0
        attribute = table.lane_attribute(table.CALL_SECONDS, lane)
        try:
            item = self._client.get_item(
                TableName=self._table, Key={table.PK: {"S": table.day_pk(_day(self._now_ms()))}},
                ProjectionExpression="#lane", ExpressionAttributeNames={"#lane": attribute}).get("Item") or {}
        except (ClientError, BotoCoreError):
            return None
        return int(item.get(attribute, {}).get("N", "0")) / limit

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

    def _spend_today(self, now: int, spend: Spend, meter: _Meter) -> dict[str, Any]:
        # A missing counter means nothing spent today, which leaves room for any spend up to the limit. The lane
        # is charged beside the total on the same item: one condition, and the day stays the hard ceiling.
        return {"Update": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.day_pk(_day(now))}},
            "UpdateExpression": "ADD #count :amount, #lane :amount SET #ttl = :ttl",
            "ConditionExpression": "(attribute_not_exists(#count) OR #count <= :room) AND "
                                   "(attribute_not_exists(#lane) OR #lane <= :lane_room)",
            "ExpressionAttributeNames": {"#count": spend.attribute, "#ttl": table.TTL,
                                         "#lane": table.lane_attribute(spend.attribute, meter.lane)},
            "ExpressionAttributeValues": {":amount": _n(spend.amount), ":room": _n(spend.limit - spend.amount),
                                          ":lane_room": _n(meter.lane_limit - spend.amount),
                                          ":ttl": _n(_day_end(now) // 1000 + table.DAY_KEEP_SECONDS)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }}

    def _spend_callers_day(self, now: int, spend: Spend, meter: _Meter, caller: Caller) -> dict[str, Any]:
        names = {"#count": spend.attribute, "#ttl": table.TTL, "#kind": table.SPENT_KIND}
        values = {":amount": _n(spend.amount), ":kind": {"S": meter.lane},
                  ":ttl": _n(_day_end(now) // 1000 + table.DAY_KEEP_SECONDS)}
        update = "ADD #count :amount SET #ttl = :ttl, #kind = :kind"
        if spend.is_call:
            names["#calls"] = table.SPENT_CALLS
            values[":one"] = _n(1)
            update = update.replace("ADD #count :amount", "ADD #count :amount, #calls :one")
        if caller.network:
            names["#network"] = table.SPENT_NETWORK
            values[":network"] = {"S": caller.network}
            update += ", #network = :network"
        part: dict[str, Any] = {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.spent_pk(_day(now), caller.hash)}},
            "UpdateExpression": update,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if meter.caller_limit is not None:
            part["ConditionExpression"] = "attribute_not_exists(#count) OR #count <= :room"
            values[":room"] = _n(meter.caller_limit - spend.amount)
        return {"Update": part}

    def _not_paused(self) -> dict[str, Any]:
        return {"ConditionCheck": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.CONTROL_PK}},
            "ConditionExpression": "attribute_not_exists(#paused) OR #paused = :false",
            "ExpressionAttributeNames": {"#paused": table.PAUSED},
            "ExpressionAttributeValues": {":false": {"BOOL": False}},
        }}

    def _not_blocked(self, caller: Caller) -> dict[str, Any]:
        return {"ConditionCheck": {
            "TableName": self._table,
            "Key": {table.PK: {"S": table.block_pk(caller.hash)}},
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": table.PK},
        }}

    # --- when the transaction is cancelled ---------------------------------------------------------------

    def _on_cancel(self, exc: ClientError, meter: _Meter, caller: Caller, attempt: int, now: int,
                   spend: Spend) -> None:
        pk, is_key = meter.pk, meter.is_key
        reasons = exc.response.get("CancellationReasons") or []
        codes = [r.get("Code", "None") for r in reasons] + ["None"] * (5 - len(reasons))
        caller_code, day_code, callers_day_code, control_code, block_code = codes[:5]
        if control_code == "ConditionalCheckFailed":
            raise _paused()
        if block_code == "ConditionalCheckFailed":
            raise _blocked()
        if day_code == "ConditionalCheckFailed":
            raise self._day_refusal(reasons[1].get("Item") or {}, spend, meter, now)
        if callers_day_code == "ConditionalCheckFailed":
            raise _caller_exhausted(spend, meter, now)
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

    def _day_refusal(self, day_item: dict[str, Any], spend: Spend, meter: _Meter, now: int) -> ApiError:
        """Which of the day's two conditions failed: the total (everyone is out) or the caller's lane."""
        held = int(day_item.get(spend.attribute, {}).get("N", "0"))
        if held + spend.amount > spend.limit:
            return _exhausted(spend, now)
        tally(LANE_EXHAUSTED, lane=meter.lane)
        return _lane_exhausted(spend, meter, now)

    # --- who pays -----------------------------------------------------------------------------------------

    def _meter_for(self, caller: Caller, spend: Spend) -> _Meter:
        bucket, pk, is_key = self._bucket_for(caller)
        lane = str(caller.kind)
        caller_limit, own_share = None, False
        if spend.is_call:
            caller_limit = self._limits.caller_daily_call_seconds
            if is_key:
                record = self._keys.get(caller.key_hash or "")
                if record.daily_call_seconds is not None:
                    caller_limit, own_share = record.daily_call_seconds, True
        return _Meter(bucket, pk, is_key, lane, self._limits.lane_limit(spend.is_call, lane), caller_limit, own_share)

    def _bucket_for(self, caller: Caller, *, cached_only: bool = False) -> tuple[Bucket, str, bool]:
        limits = self._limits
        if caller.kind is CallerKind.ANONYMOUS:
            return self.anonymous_bucket, table.bucket_pk(caller.hash), False
        if caller.kind is CallerKind.USER:
            return Bucket.per_hour(limits.user_burst, limits.user_rate_per_hour), table.bucket_pk(caller.hash), False
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


def _until_midnight(now_ms: int) -> dict[str, str]:
    return {"Retry-After": str(-(-(_day_end(now_ms) - now_ms) // 1000))}


def _exhausted(spend: Spend, now_ms: int) -> ApiError:
    budget = "token budget for this service is" if spend.what == "tokens" else "call minutes for this service are"
    return ApiError(429, Code.DAILY_BUDGET_EXHAUSTED, f"Today's {budget} used up; it resets at 00:00 UTC.",
                    _until_midnight(now_ms))


def _lane_exhausted(spend: Spend, meter: _Meter, now_ms: int) -> ApiError:
    what = "call minutes" if spend.is_call else "tokens"
    return ApiError(429, Code.DAILY_BUDGET_EXHAUSTED,
                    f"Today's {what} for {LANE_NAMES[meter.lane]} (the {meter.lane} lane) are used up; "
                    "it resets at 00:00 UTC.", _until_midnight(now_ms))


def _caller_exhausted(spend: Spend, meter: _Meter, now_ms: int) -> ApiError:
    minutes = f"{(meter.caller_limit or 0) / 60:g}"
    share = (f"this key's own daily minutes, {minutes}, instead of CallerDailyCallMinutes" if meter.own_share
             else f"CallerDailyCallMinutes, {minutes} per caller")
    return ApiError(429, Code.DAILY_BUDGET_EXHAUSTED,
                    f"This caller's call minutes for today ({share}) are used up; it resets at 00:00 UTC.",
                    _until_midnight(now_ms))


def _too_big(spend: Spend, meter: _Meter, now_ms: int) -> ApiError | None:
    """A spend no budget could hold however empty: refused without asking DynamoDB."""
    if spend.amount > spend.limit:
        return _exhausted(spend, now_ms)
    if spend.amount > meter.lane_limit:
        tally(LANE_EXHAUSTED, lane=meter.lane)
        return _lane_exhausted(spend, meter, now_ms)
    if meter.caller_limit is not None and spend.amount > meter.caller_limit:
        return _caller_exhausted(spend, meter, now_ms)
    return None


def _blocked() -> ApiError:
    return ApiError(403, Code.CALLER_BLOCKED, "This caller is blocked by the owner of this service.")


def _paused() -> ApiError:
    return ApiError(503, Code.ISSUING_PAUSED, "Issuing is paused by the owner.", {"Retry-After": "60"})
