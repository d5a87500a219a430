"""The leash runner around local.states, with a fake Step Functions: failures named by the errorType the function
reported (not by the harness's wrapper), the drawn jitter used for the retry's wait, and a stop that ends an
execution waiting out a retry at once rather than after its delay."""

from __future__ import annotations

import json
import threading
from typing import Any

from local.functions import FunctionError
from local.leash import LeashRunner
from local.states import LAMBDA_INVOKE
from local.template_stack import StateMachine

ARN = "arn:aws:states:us-east-1:123456789012:execution:machine:rtc_abc"
RETRY_WAIT_SECONDS = 3600  # far beyond any test: a stop must not wait it out
DEFINITION = {"StartAt": "HangUp", "States": {"HangUp": {
    "Type": "Task", "Resource": LAMBDA_INVOKE, "Parameters": {"FunctionName": "leash", "Payload.$": "$"},
    "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": RETRY_WAIT_SECONDS, "MaxAttempts": 3,
               "JitterStrategy": "FULL"}],
    "End": True}}}


class FakeStepFunctions:
    """One RUNNING execution, as moto would list and describe it."""

    def get_paginator(self, _: str) -> Any:
        return self

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"executions": [{"executionArn": ARN}]}]

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        return {"input": json.dumps({"call_id": "rtc_abc"}), "status": "RUNNING"}


def test_a_stop_ends_an_execution_waiting_out_a_long_retry_and_failures_keep_their_error_type() -> None:
    invoked = threading.Event()
    drawn: list[float] = []

    def invoke(function: str, payload: Any) -> Any:
        invoked.set()
        raise FunctionError("ApiError", "502 upstream_error: OpenAI did not answer")

    def jitter() -> float:
        drawn.append(0.5)
        return 0.5

    runner = LeashRunner(FakeStepFunctions(), [StateMachine("Leash", "arn:machine", DEFINITION)], [], invoke,
                         poll_seconds=0.01, jitter=jitter)
    runner.start()
    try:
        assert invoked.wait(timeout=30), "the execution was never carried out"
        while not drawn:  # the retry's wait is being computed right after the failure is recorded
            threading.Event().wait(0.01)
    finally:
        runner.stop()  # joins each thread for at most 5 s: a runner that waits out its retry leaves one alive
    executions = [t for t in threading.enumerate() if t.name.startswith("execution-")]
    assert executions == [], "an execution thread outlived the stop"
    assert [(i.source, i.error) for i in runner.invocations] == [("rtc_abc", "ApiError")]
    assert drawn == [0.5]  # the one retry's wait came from the injected jitter (1800 s, never waited out)
