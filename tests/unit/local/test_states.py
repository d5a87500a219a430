"""The local Step Functions interpreter, driven step by step with a fake clock: the leash's own definition, its
Wait, its Task with Retry, and what it refuses to run."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from local.states import (
    LAMBDA_INVOKE,
    ExecutionFailed,
    Invoke,
    Sleep,
    TaskError,
    Unsupported,
    check,
    path,
    resolve,
    run,
)

LEASH = "arn:aws:lambda:us-east-1:123456789012:function:stack-LeashFunction"
DEFINITION: dict[str, Any] = {
    "StartAt": "WaitForTheEnd",
    "States": {
        "WaitForTheEnd": {"Type": "Wait", "TimestampPath": "$.hangup_at", "Next": "HangUp"},
        "HangUp": {"Type": "Task", "Resource": LAMBDA_INVOKE,
                   "Parameters": {"FunctionName": LEASH, "Payload": {"call_id.$": "$.call_id"}},
                   "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "BackoffRate": 2,
                              "MaxAttempts": 3}],
                   "End": True}}}
INPUT = {"call_id": "rtc_abc", "hangup_at": "2026-12-02T16:20:05Z"}
HANGUP_AT = 1796228405.0  # 2026-12-02T16:20:05Z


def clock(at: float = 1796228000.0) -> Any:
    return lambda: at


def test_waits_until_the_timestamp_then_invokes_the_leash_with_the_call_id() -> None:
    steps = run(DEFINITION, INPUT, clock())
    assert next(steps) == Sleep(HANGUP_AT)
    assert next(steps) == Invoke(LEASH, {"call_id": "rtc_abc"})
    with pytest.raises(StopIteration) as done:
        steps.send({"ended": True})
    assert done.value.value == {"ExecutedVersion": "$LATEST", "Payload": {"ended": True}, "StatusCode": 200}


def test_retries_with_backoff_then_succeeds() -> None:
    now = 1796228500.0
    steps = run(DEFINITION, INPUT, clock(now))
    next(steps)
    assert next(steps) == Invoke(LEASH, {"call_id": "rtc_abc"})
    sleeps = []
    for _ in range(3):
        sleep = steps.throw(TaskError("RuntimeError", "hangup failed"))
        sleeps.append(sleep.until - now)
        assert steps.send(None) == Invoke(LEASH, {"call_id": "rtc_abc"})
    assert sleeps == [1, 2, 4]  # IntervalSeconds x BackoffRate^n
    with pytest.raises(StopIteration):
        steps.send({"ok": True})


def test_fails_after_max_attempts_with_the_functions_error() -> None:
    steps = run(DEFINITION, INPUT, clock())
    next(steps)
    next(steps)
    for _ in range(3):
        steps.throw(TaskError("RuntimeError", "hangup failed"))
        steps.send(None)
    with pytest.raises(ExecutionFailed) as failed:
        steps.throw(TaskError("RuntimeError", "still failing"))
    assert failed.value.error == "RuntimeError" and failed.value.cause == "still failing"


def test_a_retrier_matches_only_its_errors() -> None:
    definition = copy.deepcopy(DEFINITION)
    definition["States"]["HangUp"]["Retry"] = [{"ErrorEquals": ["Lambda.TooManyRequestsException"],
                                                "IntervalSeconds": 2, "MaxAttempts": 1}]
    steps = run(definition, INPUT, clock(100.0))
    next(steps)
    next(steps)
    assert steps.throw(TaskError("Lambda.TooManyRequestsException")) == Sleep(102.0)
    steps.send(None)
    with pytest.raises(ExecutionFailed):
        steps.throw(TaskError("Lambda.TooManyRequestsException"))  # MaxAttempts 1: one retry only
    steps = run(definition, INPUT, clock())
    next(steps)
    next(steps)
    with pytest.raises(ExecutionFailed):
        steps.throw(TaskError("ValueError"))


def test_wait_forms_seconds_and_literal_timestamp() -> None:
    for wait, until in (({"Seconds": 5}, 105.0), ({"Timestamp": "1970-01-01T00:02:00+00:00"}, 120.0)):
        definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", **wait, "End": True}}}
        check(definition)
        steps = run(definition, {}, clock(100.0))
        assert next(steps) == Sleep(until)


@pytest.mark.parametrize("stamp", ["tomorrow", "2026-12-02T16:20:05", 5])
def test_a_bad_timestamp_fails_the_execution(stamp: Any) -> None:
    steps = run(DEFINITION, {"call_id": "rtc_abc", "hangup_at": stamp}, clock())
    with pytest.raises(ExecutionFailed) as failed:
        next(steps)
    assert failed.value.error == "States.Runtime"


def test_a_missing_path_fails_the_execution() -> None:
    steps = run(DEFINITION, {"hangup_at": "2026-12-02T16:20:05Z"}, clock())
    next(steps)
    with pytest.raises(ExecutionFailed, match=r"\$.call_id"):
        next(steps)


def test_parameters_resolve_paths_at_any_depth() -> None:
    data = {"a": {"b": 1}, "c": [1, 2]}
    assert resolve({"x.$": "$.a.b", "y": {"z.$": "$.c"}, "w": [{"v.$": "$"}], "k": "$.a"}, data) == {
        "x": 1, "y": {"z": [1, 2]}, "w": [{"v": data}], "k": "$.a"}
    assert path(data, "$") is data


@pytest.mark.parametrize("change, complaint", [
    ({"Resource": "arn:aws:lambda:us-east-1:123456789012:function:f"}, "only arn:aws:states:::lambda:invoke"),
    ({"ResultPath": "$.r"}, "ResultPath"),
    ({"Catch": []}, "Catch"),
    ({"Type": "Parallel"}, "does not run locally"),
])
def test_check_refuses_what_would_run_wrongly(change: dict[str, Any], complaint: str) -> None:
    definition = copy.deepcopy(DEFINITION)
    definition["States"]["HangUp"].update(change)
    with pytest.raises(Unsupported, match=complaint):
        check(definition)


def test_check_accepts_the_leash_and_refuses_dangling_names() -> None:
    check(DEFINITION)
    broken = copy.deepcopy(DEFINITION)
    broken["States"]["WaitForTheEnd"]["Next"] = "Nowhere"
    with pytest.raises(Unsupported, match="Next"):
        check(broken)
    with pytest.raises(Unsupported, match="exactly one"):
        check({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Timestamp": "x", "End": True}}})
