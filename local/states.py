"""The part of Step Functions' interpreter the template's state machines need, with no clock and no I/O.

`run(definition, input)` is a generator: it yields what the execution waits for (`Sleep`, `Invoke`) and is sent
the result of each invocation, or thrown a `TaskError` when it failed; it returns the execution's output or raises
`ExecutionFailed`. Whoever drives it owns time, chance (a retry's jitter), moto and the functions, so this reads
like the ASL spec and is tested without processes. `check(definition)` refuses, at start-up, whatever this
interpreter would get wrong.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
WAIT_FIELDS = ("Seconds", "Timestamp", "TimestampPath")
RETRIER_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy",
                  "Comment"}
JITTER_STRATEGIES = ("FULL", "NONE")


@dataclass(frozen=True)
class Sleep:
    until: float  # epoch seconds


@dataclass(frozen=True)
class Invoke:
    function: str  # FunctionName as the Parameters give it: a name or an ARN
    payload: Any


class TaskError(Exception):
    """A failed invocation, named as Step Functions names it (the function's errorType, or Lambda.*)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


class ExecutionFailed(Exception):
    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


class Unsupported(ValueError):
    pass


Steps = Generator[Sleep | Invoke, Any, Any]


def check(definition: dict[str, Any]) -> None:
    states = definition.get("States", {})
    if definition.get("StartAt") not in states:
        raise Unsupported("StartAt names no state")
    for name, state in states.items():
        kind = state.get("Type")
        if kind == "Wait" and sum(f in state for f in WAIT_FIELDS) != 1:
            raise Unsupported(f"{name}: a Wait needs exactly one of {', '.join(WAIT_FIELDS)}")
        if kind == "Task" and state.get("Resource") != LAMBDA_INVOKE:
            raise Unsupported(f"{name}: only {LAMBDA_INVOKE} tasks run locally, not {state.get('Resource')}")
        if kind not in ("Wait", "Task", "Succeed", "Fail"):
            raise Unsupported(f"{name}: state type {kind} does not run locally")
        unsupported = {"ResultPath", "OutputPath", "InputPath", "ResultSelector", "Catch"} & set(state)
        if unsupported:
            raise Unsupported(f"{name}: {', '.join(sorted(unsupported))} not supported locally")
        if kind in ("Wait", "Task") and not state.get("End") and state.get("Next") not in states:
            raise Unsupported(f"{name}: Next names no state")
        for retrier in state.get("Retry", []):
            _check_retrier(name, retrier)


def _check_retrier(name: str, retrier: dict[str, Any]) -> None:
    unknown = set(retrier) - RETRIER_FIELDS
    if unknown:
        raise Unsupported(f"{name}: Retry field(s) {', '.join(sorted(unknown))} not supported locally")
    if not retrier.get("ErrorEquals"):
        raise Unsupported(f"{name}: a retrier needs ErrorEquals")
    if retrier.get("JitterStrategy", "NONE") not in JITTER_STRATEGIES:
        raise Unsupported(f"{name}: JitterStrategy must be one of {', '.join(JITTER_STRATEGIES)}")


def run(definition: dict[str, Any], data: Any, now: Callable[[], float],
        jitter: Callable[[], float] = random.random) -> Steps:
    """`jitter` draws uniformly from [0, 1): the fraction of its delay a FULL-jitter retry waits."""
    name = definition["StartAt"]
    while True:
        state = definition["States"][name]
        match state["Type"]:
            case "Succeed":
                return data
            case "Fail":
                raise ExecutionFailed(state.get("Error", "States.Fail"), state.get("Cause", ""))
            case "Wait":
                yield Sleep(_wait_until(state, data, now()))
            case "Task":
                data = yield from _task(state, data, now, jitter)
        if state.get("End"):
            return data
        name = state["Next"]


def _wait_until(state: dict[str, Any], data: Any, now: float) -> float:
    if "Seconds" in state:
        return now + float(state["Seconds"])
    stamp = state["Timestamp"] if "Timestamp" in state else path(data, state["TimestampPath"])
    try:
        # ASL timestamps are RFC 3339 with a zone (`...Z`); fromisoformat reads that since Python 3.11.
        moment = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        raise ExecutionFailed("States.Runtime", f"not an RFC 3339 timestamp: {stamp!r}") from None
    if moment.tzinfo is None:
        raise ExecutionFailed("States.Runtime", f"timestamp without a time zone: {stamp!r}")
    return moment.timestamp()


def _task(state: dict[str, Any], data: Any, now: Callable[[], float], jitter: Callable[[], float]) -> Steps:
    parameters = resolve(state.get("Parameters", {}), data)
    retried: dict[int, int] = {}  # retrier index -> retries so far: each retrier counts its own
    while True:
        try:
            result = yield Invoke(parameters["FunctionName"], parameters.get("Payload", data))
        except TaskError as failure:
            index, retrier = _retrier(state.get("Retry", []), failure.error)
            count = retried.get(index, 0)
            if retrier is None or count >= retrier.get("MaxAttempts", 3):
                raise ExecutionFailed(failure.error, failure.cause) from None
            retried[index] = count + 1
            yield Sleep(now() + _delay(retrier, count, jitter))
            continue
        # lambda:invoke's result: the function's answer under Payload, as the optimized integration returns it.
        return {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}


def _delay(retrier: dict[str, Any], count: int, jitter: Callable[[], float]) -> float:
    """The wait before retry number count + 1: IntervalSeconds x BackoffRate^count, capped at MaxDelaySeconds; with
    JitterStrategy FULL, a uniformly random part of that (between 0 and the capped delay)."""
    delay = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** count
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, retrier["MaxDelaySeconds"])
    if retrier.get("JitterStrategy", "NONE") == "FULL":
        delay *= jitter()
    return float(delay)


def _retrier(retry: list[dict[str, Any]], error: str) -> tuple[int, dict[str, Any] | None]:
    for index, retrier in enumerate(retry):
        names = retrier.get("ErrorEquals", [])
        task_failed = "States.TaskFailed" in names and not error.startswith("States.")
        if error in names or "States.ALL" in names or task_failed:
            return index, retrier
    return -1, None


def resolve(template: Any, data: Any) -> Any:
    """Parameters: a key ending in `.$` takes the value at its JSONPath in the state's input."""
    if isinstance(template, dict):
        return {(k[:-2] if k.endswith(".$") else k): (path(data, v) if k.endswith(".$") else resolve(v, data))
                for k, v in template.items()}
    if isinstance(template, list):
        return [resolve(v, data) for v in template]
    return template


def path(data: Any, expression: str) -> Any:
    """The plain `$.a.b` reference paths the template uses (no filters, no slices)."""
    if expression == "$":
        return data
    if not expression.startswith("$."):
        raise ExecutionFailed("States.Runtime", f"unsupported path {expression!r}")
    value = data
    for key in expression[2:].split("."):
        if not isinstance(value, dict) or key not in value:
            raise ExecutionFailed("States.Runtime", f"{expression} is not in the input")
        value = value[key]
    return value
