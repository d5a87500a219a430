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

from tokenvend.observability import logger

# Step Functions execution names: at most 80 characters of [A-Za-z0-9_-].
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class LeashUnavailable(Exception):
    """The timer could not be started: the call must not go on without it."""


def execution_name(call_id: str) -> str:
    if _PLAIN_NAME.match(call_id):
        return call_id
    return "call-" + hashlib.sha256(call_id.encode()).hexdigest()[:64]


def hangup_at(epoch_seconds: int) -> str:
    """ISO 8601 in UTC, the form a Wait state's TimestampPath takes."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LeashClock:
    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._state_machine_arn = state_machine_arn
        # arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<execution>
        self._execution_prefix = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":"

    def start(self, call_id: str, ends_at: int) -> None:
        try:
            self._client.start_execution(stateMachineArn=self._state_machine_arn, name=execution_name(call_id),
                                         input=json.dumps({"call_id": call_id, "hangup_at": hangup_at(ends_at)}))
        except (ClientError, BotoCoreError) as exc:
            raise LeashUnavailable(type(exc).__name__) from exc

    def stop(self, call_id: str) -> None:
        """Best effort: a timer left running finds the call ended and does nothing."""
        try:
            self._client.stop_execution(executionArn=self._execution_prefix + execution_name(call_id),
                                        cause="hung up early")
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not stop the call's timer", extra={"error": type(exc).__name__})
