"""The per-call timer: one Step Functions Standard execution per call that waits until the call's end (a `Wait`
state on a timestamp is second-precise; EventBridge Scheduler only promises a minute) and then runs the leash
function. Named after the call, so a retried start cannot start a second timer for the same call.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

# Step Functions execution names: at most 80 characters of [A-Za-z0-9_-].
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class TimerUnavailable(Exception):
    """The timer could not be started: the call must not go on without it."""


def execution_name(call_id: str) -> str:
    if _PLAIN_NAME.match(call_id):
        return call_id
    return "call-" + hashlib.sha256(call_id.encode()).hexdigest()[:64]


def hangup_at(epoch_seconds: int) -> str:
    """ISO 8601 in UTC, the form a Wait state's TimestampPath takes."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CallTimer:
    """Never stopped: a call hung up early still gets its hangup at its end (OpenAI's 404 then), so that no early
    answer, right or wrong, can take a call off its leash."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._state_machine_arn = state_machine_arn

    def start(self, call_id: str, backend: str, ends_at: int) -> None:
        payload = {"call_id": call_id, "backend": backend, "hangup_at": hangup_at(ends_at)}
        try:
            self._client.start_execution(stateMachineArn=self._state_machine_arn, name=execution_name(call_id),
                                         input=json.dumps(payload))
        except (ClientError, BotoCoreError) as exc:
            raise TimerUnavailable(type(exc).__name__) from exc
