"""What the owner's `admin usage`, `block`, `unblock` and `blocks` read and write: a day's counters, its callers'
days, its call records, and the blocked callers (layout in `table`). Data access only; the admin command prints.

Run with the owner's credentials, never by the function: the scan reads the whole table, which is fine for a
person asking now and then, and would not be on a request's path.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from tokenvend import table

SPENT_PREFIX = "spent#"
CALL_PREFIX = "call#"
BLOCK_PREFIX = "block#"


class LaneUsage(NamedTuple):
    lane: str
    call_seconds: int
    issued: int


class CallerDay(NamedTuple):
    """One caller's day, from its `spent#` item: only the hash, its kind and, for an address, its /24 or /64."""

    caller: str
    kind: str
    network: str | None
    call_seconds: int
    calls: int
    issued: int


class Block(NamedTuple):
    caller: str
    blocked_at: int
    note: str | None


class DayUsage(NamedTuple):
    day: str
    call_seconds: int  # held today: reserved at setup, less what was given back
    issued: int
    lanes: tuple[LaneUsage, ...]  # in `table.LANES` order
    callers: tuple[CallerDay, ...]  # most minutes first
    ended_by: dict[str, int]  # the day's ended calls by who ended them (caller, leash, sweeper, setup, owner...)
    active: int  # the day's calls not ended yet
    calls_by_lane: dict[str, int]  # the day's call records by lane, where a record names it
    blocks: tuple[Block, ...]  # blocked now, whatever the day

    @property
    def unattributed_seconds(self) -> int:
        """Seconds of the total no lane counts: a day charged before the lanes existed."""
        return self.call_seconds - sum(lane.call_seconds for lane in self.lanes)

    @property
    def blocked(self) -> frozenset[str]:
        return frozenset(block.caller for block in self.blocks)


class UsageStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def day(self, day: str) -> DayUsage:
        counters = self._client.get_item(TableName=self._table, Key=_key(table.day_pk(day)),
                                         ConsistentRead=True).get("Item") or {}
        callers: list[CallerDay] = []
        ended_by: Counter[str] = Counter()
        by_lane: Counter[str] = Counter()
        active = 0
        blocks: list[Block] = []
        # One pass over the table for all three kinds rather than a scan each: a scan reads (and is billed for) every
        # item whatever the filter, and the week of call records is most of the table.
        for item in self._scan(
            "begins_with(#pk, :spent) OR begins_with(#pk, :block) OR (begins_with(#pk, :call) AND #day = :day)",
            {"#pk": table.PK, "#day": table.CALL_DAY},
            {":spent": {"S": f"{SPENT_PREFIX}{day}#"}, ":block": {"S": BLOCK_PREFIX}, ":call": {"S": CALL_PREFIX},
             ":day": {"S": day}},
        ):
            pk = item[table.PK]["S"]
            if pk.startswith(SPENT_PREFIX):
                callers.append(_caller_day(item, pk.removeprefix(f"{SPENT_PREFIX}{day}#")))
            elif pk.startswith(BLOCK_PREFIX):
                blocks.append(_block(item))
            else:
                if _text(item, table.CALL_LANE):
                    by_lane[_text(item, table.CALL_LANE) or ""] += 1
                if _text(item, table.CALL_STATE) == "ended":
                    ended_by[_text(item, table.CALL_ENDED_BY) or "unknown"] += 1
                else:
                    active += 1
        callers.sort(key=lambda c: (-c.call_seconds, -c.calls, -c.issued, c.caller))
        lanes = tuple(LaneUsage(lane, _number(counters, table.lane_attribute(table.CALL_SECONDS, lane)),
                                _number(counters, table.lane_attribute(table.COUNT, lane))) for lane in table.LANES)
        return DayUsage(day=day, call_seconds=_number(counters, table.CALL_SECONDS),
                        issued=_number(counters, table.COUNT), lanes=lanes, callers=tuple(callers),
                        ended_by=dict(ended_by.most_common()), active=active, calls_by_lane=dict(by_lane),
                        blocks=tuple(sorted(blocks, key=lambda b: (b.blocked_at, b.caller))))

    # --- blocks -----------------------------------------------------------------------------------------------------

    def block(self, caller_hash: str, *, at: int, note: str | None = None) -> tuple[Block, bool]:
        """Block the caller; (the block, True) if this blocked it, (the standing block, False) if it already was:
        the first block's time and note stay, so the record says when the trouble began."""
        item: dict[str, Any] = {table.PK: {"S": table.block_pk(caller_hash)}, table.BLOCKED_AT: {"N": str(at)}}
        if note:
            item[table.BLOCK_NOTE] = {"S": note}
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(#pk)",
                                  ExpressionAttributeNames={"#pk": table.PK})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            standing = self.get_block(caller_hash)
            if standing is not None:
                return standing, False
            return self.block(caller_hash, at=at, note=note)  # unblocked between the two requests: block again
        return Block(caller_hash, at, note or None), True

    def unblock(self, caller_hash: str) -> Block | None:
        """Lift the block; the block it was, or None if the caller was not blocked."""
        old = self._client.delete_item(TableName=self._table, Key=_key(table.block_pk(caller_hash)),
                                       ReturnValues="ALL_OLD").get("Attributes")
        return _block(old) if old else None

    def get_block(self, caller_hash: str) -> Block | None:
        item = self._client.get_item(TableName=self._table, Key=_key(table.block_pk(caller_hash)),
                                     ConsistentRead=True).get("Item")
        return _block(item) if item else None

    def blocks(self) -> list[Block]:
        found = [_block(item) for item in self._scan("begins_with(#pk, :block)", {"#pk": table.PK},
                                                      {":block": {"S": BLOCK_PREFIX}})]
        return sorted(found, key=lambda b: (b.blocked_at, b.caller))

    def _scan(self, condition: str, names: dict[str, str], values: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self._table, "FilterExpression": condition,
                                  "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                                  "ConsistentRead": True}
        while True:
            page = self._client.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _caller_day(item: dict[str, Any], caller: str) -> CallerDay:
    return CallerDay(caller=caller, kind=_text(item, table.SPENT_KIND) or "unknown",
                     network=_text(item, table.SPENT_NETWORK), call_seconds=_number(item, table.CALL_SECONDS),
                     calls=_number(item, table.SPENT_CALLS), issued=_number(item, table.COUNT))


def _block(item: dict[str, Any]) -> Block:
    return Block(caller=item[table.PK]["S"].removeprefix(BLOCK_PREFIX), blocked_at=_number(item, table.BLOCKED_AT),
                 note=_text(item, table.BLOCK_NOTE))


def _key(pk: str) -> dict[str, Any]:
    return {table.PK: {"S": pk}}


def _text(item: dict[str, Any], name: str) -> str | None:
    return item[name]["S"] if name in item else None


def _number(item: dict[str, Any], name: str) -> int:
    # Counters are whole numbers; read through float so that one written with a fraction does not stop the report.
    return int(float(item[name]["N"])) if name in item else 0
