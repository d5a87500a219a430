"""The layout of the one DynamoDB table (partition key `pk`, TTL attribute `ttl`), shared by the limiter and the
API-key store. One table, four kinds of item:

- `bucket#<caller hash>`: an anonymous caller's GCRA state (`tat`), deleted by TTL once the bucket is full again.
- `key#<sha256 of the key>`: an API key: name, created/last-used times, revoked flag, optional own limits, and its
  GCRA state, so one write both meters the key and proves it is not revoked.
- `day#<YYYY-MM-DD>`: the global count of tokens issued that UTC day.
- `control`: the kill switch (`paused`), checked by every issuing transaction.
"""

from __future__ import annotations

PK = "pk"
TTL = "ttl"
TAT = "tat"
COUNT = "issued"
PAUSED = "paused"
KEY_NAME = "name"
KEY_ID = "key_id"
KEY_CREATED = "created_at"
KEY_LAST_USED = "last_used_at"
KEY_REVOKED = "revoked"
KEY_BURST = "burst"
KEY_RATE = "rate_per_hour"

CONTROL_PK = "control"


def bucket_pk(caller_hash: str) -> str:
    return f"bucket#{caller_hash}"


def key_pk(key_hash: str) -> str:
    return f"key#{key_hash}"


def day_pk(day: str) -> str:
    return f"day#{day}"
