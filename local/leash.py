"""What moto stores but does not run, carried out as AWS would: the executions of the stack's state machines (the
leash: wait until a call's end, then invoke the leash function) and its EventBridge Scheduler schedules (the
sweeper).

Executions: every `poll_seconds` the runner lists the RUNNING executions of each state machine in moto; each new
one runs in its own thread through `local.states` (the definition as the template gives it). A Wait sleeps until
its time, checking that the execution was not stopped (StopExecution turns it ABORTED in moto) meanwhile and once
more right before each invocation. When the definition ends, the execution's outcome is written back into moto,
so that DescribeExecution answers SUCCEEDED or FAILED as Step Functions would.

Schedules: each `rate(...)` schedule invokes its target with its Input every period (which tests may shorten).
Invocations go to the functions' own worker processes through `invoke(function name or ARN, payload)`.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.core.utils import utcnow
from moto.stepfunctions.models import stepfunctions_backends

from local import states
from local.functions import FunctionError
from local.template_stack import Schedule, StateMachine

RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


@dataclass(frozen=True)
class Invocation:
    """One invocation the runner made, for tests and figures."""

    source: str  # the execution's name, or the schedule's logical id
    function: str
    payload: Any
    due: float | None  # when the execution's last Wait ended (epoch s); None for a schedule
    started: float  # epoch s
    error: str | None  # Step Functions' name for the failure, None when it succeeded


class LeashRunner:
    def __init__(self, stepfunctions: Any, state_machines: list[StateMachine], schedules: list[Schedule],
                 invoke: Callable[[str, Any], Any], *, sweeper_period_seconds: float | None = None,
                 poll_seconds: float = 0.2, log: Callable[[str], None] = lambda line: None,
                 jitter: Callable[[], float] = random.random) -> None:
        """`jitter` is the chance a FULL-jitter retry draws from (local.states.run), for tests to fix."""
        for machine in state_machines:
            states.check(machine.definition)  # refuse at start-up what would go wrong at a call's end
        periods = {s.logical_id: rate_seconds(s.expression) for s in schedules}  # refuses a cron(...) even so
        self._periods = {name: sweeper_period_seconds or period for name, period in periods.items()}
        self._sfn, self._machines, self._schedules = stepfunctions, state_machines, schedules
        self._invoke, self._poll, self._log, self._jitter = invoke, poll_seconds, log, jitter
        self._stopping = threading.Event()
        self._seen: set[str] = set()
        self._running: set[str] = set()  # RUNNING in moto at the last poll
        self._threads: list[threading.Thread] = []
        self.invocations: list[Invocation] = []

    def start(self) -> None:
        self._spawn(self._watch_executions, "leash-poll")
        for schedule in self._schedules:
            self._spawn(lambda s=schedule: self._fire(s), f"schedule-{schedule.logical_id}")

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._threads.clear()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # --- state machines -----------------------------------------------------------------------------------------

    def _watch_executions(self) -> None:
        while not self._stopping.wait(self._poll):
            try:
                running = {machine.arn: self._list_running(machine) for machine in self._machines}
            except Exception as exc:  # moto going away during a stop, or a hiccup: try again next tick
                if not self._stopping.is_set():
                    self._log(f"leash: listing executions failed: {exc}")
                continue
            self._running = {arn for arns in running.values() for arn in arns}
            for machine in self._machines:
                for arn in running[machine.arn] - self._seen:
                    self._seen.add(arn)
                    self._spawn(lambda m=machine, a=arn: self._execute(m, a), f"execution-{arn.rsplit(':', 1)[-1]}")
            self._threads = [t for t in self._threads if t.is_alive()]

    def _list_running(self, machine: StateMachine) -> set[str]:
        pages = self._sfn.get_paginator("list_executions").paginate(stateMachineArn=machine.arn,
                                                                     statusFilter="RUNNING")
        return {e["executionArn"] for page in pages for e in page["executions"]}

    def _execute(self, machine: StateMachine, arn: str) -> None:
        name = arn.rsplit(":", 1)[-1]
        try:
            data = json.loads(self._sfn.describe_execution(executionArn=arn)["input"])
            steps = states.run(machine.definition, data, time.time, self._jitter)
            due: float | None = None
            step = next(steps)
            while True:
                if isinstance(step, states.Sleep):
                    due = step.until
                    if not self._sleep_until(arn, step.until):
                        return
                    step = next(steps)
                    continue
                if not self._still_running(arn):
                    return
                try:
                    result = self._call(name, step.function, step.payload, due)
                except states.TaskError as failure:
                    step = steps.throw(failure)
                else:
                    step = steps.send(result)
        except StopIteration as done:
            _finish(arn, "SUCCEEDED", output=json.dumps(done.value))
        except states.ExecutionFailed as failed:
            self._log(f"leash: execution {name} failed: {failed.error} {failed.cause}")
            _finish(arn, "FAILED", error=failed.error, cause=failed.cause)
        except Exception as exc:  # never a silent dead thread: say why this execution stopped being carried out
            if not self._stopping.is_set():
                self._log(f"leash: execution {name} could not be carried out: {exc!r}")

    def _sleep_until(self, arn: str, until: float) -> bool:
        """False when the execution was stopped (or the system is stopping) before `until`."""
        while (left := until - time.time()) > 0:
            if self._stopping.wait(min(left, self._poll)) or arn not in self._running:
                return False
        return True

    def _still_running(self, arn: str) -> bool:
        # The poll may be up to one tick old: ask moto itself right before acting.
        return not self._stopping.is_set() and self._sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"

    # --- schedules ------------------------------------------------------------------------------------------------

    def _fire(self, schedule: Schedule) -> None:
        payload = json.loads(schedule.input) if schedule.input else {}
        while not self._stopping.wait(self._periods[schedule.logical_id]):
            # A failure is logged by _call; the next period tries again, which is what the sweeper is for.
            with contextlib.suppress(states.TaskError):
                self._call(schedule.logical_id, schedule.target_arn, payload, None)

    # --- invocations ----------------------------------------------------------------------------------------------

    def _call(self, source: str, function: str, payload: Any, due: float | None) -> Any:
        started = time.time()
        error: str | None = None
        try:
            return self._invoke(function, payload)
        except FunctionError as failed:
            # Step Functions names a function's failure by the errorType Lambda reports, and gives Lambda's whole
            # error object as the cause.
            error = failed.error_type
            cause = json.dumps({"errorType": failed.error_type, "errorMessage": failed.message})
            raise states.TaskError(error, cause) from None
        except Exception as exc:  # the local system's own trouble (no container free in time): named as it is
            error = type(exc).__name__
            raise states.TaskError(error, str(exc)) from None
        finally:
            self.invocations.append(Invocation(source, function, payload, due, started, error))
            late = f" {started - due:+.1f} s after its wait" if due is not None else ""
            self._log(f"LEASH  {source:14} {error or 'ok'}{late}")


def rate_seconds(expression: str) -> float:
    """EventBridge Scheduler's rate(value unit)."""
    match = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", expression.strip())
    if match is None:
        raise ValueError(f"only rate(...) schedules run locally, not {expression!r}")
    return int(match[1]) * RATE_UNITS[match[2]]


def _finish(arn: str, status: str, **details: str) -> None:
    """Write the outcome into moto's own record (moto has no API for that; it runs in this process)."""
    _, _, _, region, account, *_ = arn.split(":")
    execution = stepfunctions_backends[account][region].describe_execution(arn)
    if execution.status == "RUNNING":  # a StopExecution that came first wins, as in Step Functions
        execution.status = status
        execution.stop_date = utcnow()
        for name, value in details.items():
            setattr(execution, name, value)
