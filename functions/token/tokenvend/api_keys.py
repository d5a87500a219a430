"""API keys for callers of the token endpoint (ours, not OpenAI's).

A key is `rtv_` + 43 random URL-safe characters (256 bits), shown once at creation. The table stores only its
SHA-256, so a leaked table yields no usable key. Keys are revoked, not deleted, so their history stays readable.
The admin command (`python -m tokenvend.admin`) writes through `ApiKeyStore`; the function reads through
`ApiKeyLookup`, which caches what it read for a minute.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from tokenvend import table
from tokenvend.caller import API_KEY_PREFIX, hash_api_key
from tokenvend.errors import invalid_api_key, limiter_unavailable

# A key's own limits may lag this long; revocation does not (the limiter's write checks it every time).
KEY_CACHE_SECONDS = 60


class ApiKeyRecord(NamedTuple):
    key_hash: str
    key_id: str  # the first 12 hex digits of the hash: enough to name a key in the admin command
    name: str
    created_at: int
    last_used_at: int | None
    revoked: bool
    burst: int | None
    rate_per_hour: float | None
    daily_call_seconds: int | None = None  # its own share of a day's minutes instead of CallerDailyCallMinutes

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ApiKeyRecord:
        def num(name: str) -> str | None:
            return item[name]["N"] if name in item else None

        last_used, burst, rate = num(table.KEY_LAST_USED), num(table.KEY_BURST), num(table.KEY_RATE)
        daily = num(table.KEY_DAILY_SECONDS)
        key_hash = item[table.PK]["S"].removeprefix("key#")
        return cls(
            key_hash=key_hash,
            key_id=item.get(table.KEY_ID, {}).get("S", key_hash[:12]),
            name=item.get(table.KEY_NAME, {}).get("S", ""),
            created_at=int(num(table.KEY_CREATED) or 0),
            last_used_at=int(last_used) if last_used else None,
            revoked=item.get(table.KEY_REVOKED, {}).get("BOOL", False),
            burst=int(burst) if burst else None,
            rate_per_hour=float(rate) if rate else None,
            daily_call_seconds=int(daily) if daily else None,
        )


def new_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(
        self, name: str, *, burst: int | None = None, rate_per_hour: float | None = None,
        daily_call_minutes: float | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        if not name.strip():
            raise ValueError("a key needs a name")
        key = new_key()
        key_hash = hash_api_key(key)
        item: dict[str, Any] = {
            table.PK: {"S": table.key_pk(key_hash)},
            table.KEY_ID: {"S": key_hash[:12]},
            table.KEY_NAME: {"S": name.strip()},
            table.KEY_CREATED: {"N": str(int(time.time()))},
            table.KEY_REVOKED: {"BOOL": False},
        }
        if burst is not None:
            item[table.KEY_BURST] = {"N": str(int(burst))}
        if rate_per_hour is not None:
            item[table.KEY_RATE] = {"N": repr(float(rate_per_hour))}
        if daily_call_minutes is not None:
            item[table.KEY_DAILY_SECONDS] = {"N": str(int(daily_call_minutes * 60))}
        self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return key, ApiKeyRecord.from_item(item)

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        response = self._client.get_item(TableName=self._table, Key={table.PK: {"S": table.key_pk(key_hash)}},
                                         ConsistentRead=True)
        item = response.get("Item")
        return ApiKeyRecord.from_item(item) if item else None

    def list(self) -> list[ApiKeyRecord]:
        records: list[ApiKeyRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": "key#"}},
        }
        while True:
            page = self._client.scan(**kwargs)
            records.extend(ApiKeyRecord.from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(records, key=lambda r: r.created_at)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def revoke(self, key_id_or_name: str) -> ApiKeyRecord:
        matches = [r for r in self.list() if key_id_or_name in (r.key_id, r.name)]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} keys match {key_id_or_name!r}; give the key id from `list`")
        record = matches[0]
        self._client.update_item(
            TableName=self._table,
            Key={table.PK: {"S": table.key_pk(record.key_hash)}},
            UpdateExpression="SET revoked = :true",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )
        return record._replace(revoked=True)


class ApiKeyLookup:
    """The record behind an API-key caller, for its limits. Unknown or revoked: 401; DynamoDB failing: 503."""

    def __init__(self, store: ApiKeyStore, clock: Callable[[], float] = time.time,
                 cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRecord]] = {}

    def get(self, key_hash: str) -> ApiKeyRecord:
        cached = self.cached(key_hash)
        if cached is not None:
            return cached
        try:
            record = self._store.get(key_hash)
        except (ClientError, BotoCoreError) as exc:
            raise limiter_unavailable(exc) from None
        if record is None or record.revoked:
            raise invalid_api_key()
        self._cache[key_hash] = (self._clock(), record)
        return record

    def cached(self, key_hash: str) -> ApiKeyRecord | None:
        """What we know without asking DynamoDB (for answers that did not touch the limiter)."""
        entry = self._cache.get(key_hash)
        if entry and self._clock() - entry[0] < self._cache_seconds:
            return entry[1]
        return None

    def forget(self, key_hash: str) -> None:
        self._cache.pop(key_hash, None)
