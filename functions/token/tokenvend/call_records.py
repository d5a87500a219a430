"""The calls we set up, one item each in the limits table (layout in `table`): written when OpenAI answered, ended
exactly once (a conditional write decides who ended it), and found by the sweeper through the sparse
`ActiveCalls` index while they are active.

DynamoDB failing is `503 limiter_unavailable` here, as everywhere the limits table is read or written.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from tokenvend import table
from tokenvend.errors import limiter_unavailable

RECORD_TTL_SECONDS = 7 * 86_400  # kept a week after the end, for the owner's questions
FAR_FUTURE = 2**53  # epoch seconds no call ends after


class CallState(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class CallRecord(NamedTuple):
    call_id: str
    caller: str  # the caller's salted hash
    backend: str
    started_at: int
    ends_at: int
    reserved_seconds: int
    day: str  # the UTC day whose budget paid for it
    hangup_token_sha256: str
    state: CallState = CallState.ACTIVE
    ended_at: int | None = None
    ended_by: str | None = None
    lane: str = ""  # the lane that paid for it ("" on records from before lanes): credits go back there

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> CallRecord:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        def number(name: str) -> int | None:
            return int(item[name]["N"]) if name in item else None

        return cls(call_id=item[table.PK]["S"].removeprefix("call#"), caller=text(table.CALL_CALLER) or "",
                   backend=text(table.CALL_BACKEND) or "", started_at=number(table.CALL_STARTED) or 0,
                   ends_at=number(table.CALL_ENDS) or 0, reserved_seconds=number(table.CALL_RESERVED) or 0,
                   day=text(table.CALL_DAY) or "", hangup_token_sha256=text(table.CALL_TOKEN_HASH) or "",
                   state=CallState(text(table.CALL_STATE) or CallState.ACTIVE), ended_at=number(table.CALL_ENDED_AT),
                   ended_by=text(table.CALL_ENDED_BY), lane=text(table.CALL_LANE) or "")


class CallRecords:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def create(self, record: CallRecord) -> None:
        item = {
            table.PK: {"S": table.call_pk(record.call_id)},
            table.CALL_CALLER: {"S": record.caller},
            table.CALL_BACKEND: {"S": record.backend},
            table.CALL_STARTED: {"N": str(record.started_at)},
            table.CALL_ENDS: {"N": str(record.ends_at)},
            table.CALL_RESERVED: {"N": str(record.reserved_seconds)},
            table.CALL_DAY: {"S": record.day},
            table.CALL_TOKEN_HASH: {"S": record.hangup_token_sha256},
            table.CALL_STATE: {"S": str(CallState.ACTIVE)},
            table.ACTIVE: {"S": table.ACTIVE_VALUE},
            table.TTL: {"N": str(record.ends_at + RECORD_TTL_SECONDS)},
        }
        if record.lane:
            item[table.CALL_LANE] = {"S": record.lane}
        self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get(self, call_id: str) -> CallRecord | None:
        item = self._call("get_item", TableName=self._table, Key=self._key(call_id), ConsistentRead=True).get("Item")
        return CallRecord.from_item(item) if item else None

    def end(self, call_id: str, *, by: str, at: int) -> bool:
        """Mark the call ended; True only for the one writer that ended it (False: it had already ended)."""
        try:
            self._client.update_item(
                TableName=self._table, Key=self._key(call_id),
                UpdateExpression="SET #state = :ended, #ended_at = :at, #ended_by = :by REMOVE #active",
                ConditionExpression="#state = :active",
                ExpressionAttributeNames={"#state": table.CALL_STATE, "#ended_at": table.CALL_ENDED_AT,
                                          "#ended_by": table.CALL_ENDED_BY, "#active": table.ACTIVE},
                ExpressionAttributeValues={":ended": {"S": str(CallState.ENDED)},
                                           ":active": {"S": str(CallState.ACTIVE)},
                                           ":at": {"N": str(at)}, ":by": {"S": by}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise limiter_unavailable(exc) from None
        except BotoCoreError as exc:
            raise limiter_unavailable(exc) from None
        return True

    def due(self, by: int) -> list[CallRecord]:
        """Active calls whose end is at or before `by`, oldest first."""
        records: list[CallRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table, "IndexName": table.ACTIVE_INDEX,
            "KeyConditionExpression": "#active = :calls AND #ends <= :by",
            "ExpressionAttributeNames": {"#active": table.ACTIVE, "#ends": table.CALL_ENDS},
            "ExpressionAttributeValues": {":calls": {"S": table.ACTIVE_VALUE}, ":by": {"N": str(by)}},
        }
        while True:
            page = self._call("query", **kwargs)
            records.extend(CallRecord.from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return records
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def active(self) -> list[CallRecord]:
        """Every call still active, whenever it ends."""
        return self.due(FAR_FUTURE)

    @staticmethod
    def _key(call_id: str) -> dict[str, Any]:
        return {table.PK: {"S": table.call_pk(call_id)}}

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise limiter_unavailable(exc) from None
