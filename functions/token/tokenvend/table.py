"""The layout of the one DynamoDB table (partition key `pk`, TTL attribute `ttl`), shared by the limiter, the
API-key store and the call records. One table, seven kinds of item:

- `bucket#<caller hash>`: an anonymous or signed-in caller's GCRA state (`tat`), deleted by TTL once the bucket is
  full again.
- `key#<sha256 of the key>`: an API key: name, created/last-used times, revoked flag, optional own limits, and its
  GCRA state, so one write both meters the key and proves it is not revoked.
- `day#<YYYY-MM-DD>`: that UTC day's budgets: tokens issued, and call seconds reserved, each in total and per lane
  (`call_seconds_anonymous`, `call_seconds_api_key`, `call_seconds_user`; `issued_<lane>` likewise). Kept a week.
- `spent#<YYYY-MM-DD>#<caller hash>`: one caller's day: call seconds held (reserved, less what was given back),
  calls set up, tokens, the caller's kind, and for an address its /24 or /64 (never the address). Kept a week.
- `block#<caller hash>`: a caller the owner blocked (`admin block`): refused before anything is charged.
- `control`: the kill switch (`paused`), checked by every issuing transaction.
- `call#<call id>`: one call: who (hashed), when it started and must end, what it reserved, its state, and the hash
  of its hangup token. While a call is active it also carries `active` = "calls", which puts it in the sparse index
  `ActiveCalls` (partition `active`, sort `ends_at`): the sweeper's one query for calls past their end.
"""

from __future__ import annotations

PK = "pk"
TTL = "ttl"
TAT = "tat"
COUNT = "issued"
CALL_SECONDS = "call_seconds"
PAUSED = "paused"
KEY_NAME = "name"
KEY_ID = "key_id"
KEY_CREATED = "created_at"
KEY_LAST_USED = "last_used_at"
KEY_REVOKED = "revoked"
KEY_BURST = "burst"
KEY_RATE = "rate_per_hour"
KEY_DAILY_SECONDS = "daily_call_seconds"  # the key's own CallerDailyCallMinutes, in seconds

CALL_CALLER = "caller"
CALL_BACKEND = "backend"
CALL_STARTED = "started_at"
CALL_ENDS = "ends_at"
CALL_RESERVED = "reserved_seconds"
CALL_DAY = "day"
CALL_STATE = "state"
CALL_TOKEN_HASH = "hangup_token_sha256"  # noqa: S105 - an attribute name
CALL_ENDED_AT = "ended_at"
CALL_ENDED_BY = "ended_by"
ACTIVE = "active"
ACTIVE_VALUE = "calls"
ACTIVE_INDEX = "ActiveCalls"

CONTROL_PK = "control"

LANES = ("anonymous", "api_key", "user")  # the callers' kinds, each with its share of the day
SPENT_KIND = "kind"
SPENT_NETWORK = "network"
SPENT_CALLS = "calls"
CALL_LANE = "lane"
BLOCKED_AT = "blocked_at"
BLOCK_NOTE = "note"
DAY_KEEP_SECONDS = 7 * 86_400  # a day's counters and its callers' items outlive it this long, for `admin usage`


def lane_attribute(attribute: str, lane: str) -> str:
    """The lane's own counter beside a day's total: call_seconds_user, issued_anonymous."""
    return f"{attribute}_{lane}"


def spent_pk(day: str, caller_hash: str) -> str:
    return f"spent#{day}#{caller_hash}"


def block_pk(caller_hash: str) -> str:
    return f"block#{caller_hash}"


def bucket_pk(caller_hash: str) -> str:
    return f"bucket#{caller_hash}"


def key_pk(key_hash: str) -> str:
    return f"key#{key_hash}"


def day_pk(day: str) -> str:
    return f"day#{day}"


def call_pk(call_id: str) -> str:
    return f"call#{call_id}"
