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
from local.template_stack import load_template

LEASH = "arn:aws:lambda:us-east-1:123456789012:function:stack-LeashFunction"
RETRIER = {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxDelaySeconds": 60,
           "JitterStrategy": "FULL", "MaxAttempts": 10}
DEFINITION: dict[str, Any] = {
    "StartAt": "WaitForTheEnd",
    "States": {
        "WaitForTheEnd": {"Type": "Wait", "TimestampPath": "$.hangup_at", "Next": "HangUp"},
        "HangUp": {"Type": "Task", "Resource": LAMBDA_INVOKE,
                   "Parameters": {"FunctionName": LEASH, "Payload": {"call_id.$": "$.call_id"}},
                   "Retry": [RETRIER], "End": True}}}
INPUT = {"call_id": "rtc_abc", "hangup_at": "2026-12-02T16:20:05Z"}
HANGUP_AT = 1796228405.0  # 2026-12-02T16:20:05Z


def clock(at: float = 1796228000.0) -> Any:
    return lambda: at


def no_jitter() -> float:
    raise AssertionError("drew a jitter for a retrier without JitterStrategy FULL")


def with_retrier(**fields: Any) -> dict[str, Any]:
    definition = copy.deepcopy(DEFINITION)
    retrier = {**RETRIER, **fields}
    definition["States"]["HangUp"]["Retry"] = [{k: v for k, v in retrier.items() if v is not None}]
    return definition


def retry_waits(definition: dict[str, Any], failures: int, jitter: Any = no_jitter) -> list[float]:
    """The wait before each retry, for `failures` failures in a row, then a success."""
    now = 1796228500.0
    steps = run(definition, INPUT, clock(now), jitter)
    next(steps)
    assert next(steps) == Invoke(LEASH, {"call_id": "rtc_abc"})
    waits = []
    for _ in range(failures):
        sleep = steps.throw(TaskError("ApiError", "hangup failed"))
        waits.append(sleep.until - now)
        assert steps.send(None) == Invoke(LEASH, {"call_id": "rtc_abc"})
    with pytest.raises(StopIteration):
        steps.send({"ok": True})
    return waits


def test_waits_until_the_timestamp_then_invokes_the_leash_with_the_call_id() -> None:
    steps = run(DEFINITION, INPUT, clock())
    assert next(steps) == Sleep(HANGUP_AT)
    assert next(steps) == Invoke(LEASH, {"call_id": "rtc_abc"})
    with pytest.raises(StopIteration) as done:
        steps.send({"ended": True})
    assert done.value.value == {"ExecutedVersion": "$LATEST", "Payload": {"ended": True}, "StatusCode": 200}


def test_retries_back_off_up_to_max_delay_seconds_without_jitter() -> None:
    assert retry_waits(with_retrier(JitterStrategy="NONE"), 10) == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert retry_waits(with_retrier(JitterStrategy=None), 3) == [1, 2, 4]  # NONE is the default


def test_without_max_delay_seconds_the_backoff_grows_unbounded() -> None:
    assert retry_waits(with_retrier(JitterStrategy=None, MaxDelaySeconds=None), 8) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_full_jitter_waits_a_uniform_part_of_each_capped_delay() -> None:
    draws = iter([0.5, 0.25, 0.0, 0.75, 0.5, 0.5, 0.5, 0.999, 0.1, 0.5])
    waits = retry_waits(DEFINITION, 10, lambda: next(draws))
    assert waits == pytest.approx([0.5, 0.5, 0.0, 6.0, 8.0, 16.0, 30.0, 59.94, 6.0, 30.0])


def test_full_jitter_by_default_draws_from_random() -> None:
    """Without an injected jitter: each wait within [0, its capped delay], and not all at their delay."""
    caps = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    waits = [_default_jitter_waits() for _ in range(5)]
    assert all(0 <= wait <= cap for run_waits in waits for wait, cap in zip(run_waits, caps, strict=True))
    assert any(run_waits != caps for run_waits in waits)


def _retry_waits(definition: dict[str, Any], jitter: Any = None) -> tuple[list[float], Any]:
    """The ten retry waits of the HangUp task failing each time, and the execution, left at its last attempt."""
    now = 1796228500.0
    steps = run(definition, INPUT, clock(now)) if jitter is None else run(definition, INPUT, clock(now), jitter)
    next(steps)
    next(steps)
    waits = []
    for _ in range(10):
        waits.append(steps.throw(TaskError("ApiError")).until - now)
        steps.send(None)
    return waits, steps


def _default_jitter_waits() -> list[float]:
    return _retry_waits(DEFINITION)[0]


def test_fails_after_max_attempts_with_the_functions_error() -> None:
    steps = run(DEFINITION, INPUT, clock(), lambda: 0.5)
    next(steps)
    next(steps)
    for _ in range(10):
        steps.throw(TaskError("ApiError", "hangup failed"))
        steps.send(None)
    with pytest.raises(ExecutionFailed) as failed:
        steps.throw(TaskError("ApiError", "still failing"))
    assert failed.value.error == "ApiError" and failed.value.cause == "still failing"


def test_the_templates_leash_retries_as_this_interpreter_reads_it() -> None:
    """The definition in template.yaml itself: accepted, ten retries, capped and jittered."""
    definition = load_template()["Resources"]["LeashStateMachine"]["Properties"]["Definition"]
    check(definition)
    task = definition["States"]["HangUp"]
    assert task["Retry"] == [RETRIER], "the template changed its retrier: update RETRIER and these tests"
    waits, steps = _retry_waits(definition, lambda: 0.5)
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    with pytest.raises(ExecutionFailed):
        steps.throw(TaskError("ApiError"))


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
    ({"Retry": [{**RETRIER, "MaxDelay": 60}]}, "Retry field.s. MaxDelay not supported"),
    ({"Retry": [{**RETRIER, "JitterStrategy": "HALF"}]}, "JitterStrategy must be one of FULL, NONE"),
    ({"Retry": [{"IntervalSeconds": 1}]}, "needs ErrorEquals"),
])
def test_check_refuses_what_would_run_wrongly(change: dict[str, Any], complaint: str) -> None:
    definition = copy.deepcopy(DEFINITION)
    definition["States"]["HangUp"].update(change)
    with pytest.raises(Unsupported, match=complaint):
        check(definition)


def test_check_accepts_the_leash_and_refuses_dangling_names() -> None:
    check(DEFINITION)
    check(with_retrier(Comment="a retrier may carry a comment"))
    broken = copy.deepcopy(DEFINITION)
    broken["States"]["WaitForTheEnd"]["Next"] = "Nowhere"
    with pytest.raises(Unsupported, match="Next"):
        check(broken)
    with pytest.raises(Unsupported, match="exactly one"):
        check({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Timestamp": "x", "End": True}}})
