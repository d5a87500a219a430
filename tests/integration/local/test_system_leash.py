"""The leash as the local system runs it: the template's state machine provisioned in moto, its executions carried
out (wait until the call's end, then invoke the leash function in its own containers, retried per the definition),
a stopped execution left alone, and the sweeper's schedule fired with its input."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.leash import Invocation
from local.system import LocalSystem
from local.template_stack import load_template
from tests.integration.offers import make_offer

ROOT = Path(__file__).resolve().parents[3]
MAX_CALL_SECONDS = 10  # the template's least
FAKE_LEASH = '''
import os
from pathlib import Path


def lambda_handler(event, context):
    """Fails the first N attempts for a call id "fail-N-...", counted in files: containers share no memory."""
    call_id = event.get("call_id", "")
    attempts = Path(os.environ["FAKE_LEASH_STATE"]) / call_id
    with attempts.open("a") as marks:
        marks.write(".")
    if call_id.startswith("fail-") and len(attempts.read_text()) <= int(call_id.split("-")[1]):
        raise RuntimeError(f"hangup failed for {call_id}")
    return {"call_id": call_id, "outcome": "ended"}
'''


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(port=0, sweeper_period_seconds=1, parameters={"MaxCallSeconds": str(MAX_CALL_SECONDS)}) as running:
        yield running


class FixedJitter:
    """The retries' jitter, set by each test that depends on it: 1.0 waits each whole computed delay, 0.0 none."""

    fraction = 1.0

    def __call__(self) -> float:
        return self.fraction


@pytest.fixture(scope="module")
def jitter() -> FixedJitter:
    return FixedJitter()


@pytest.fixture(scope="module")
def failing_system(tmp_path_factory: pytest.TempPathFactory, jitter: FixedJitter) -> Iterator[LocalSystem]:
    """The template with the leash function's code replaced by one that fails on request; its own retrier (FULL
    jitter) drawing from `jitter`."""
    folder = tmp_path_factory.mktemp("fake-leash")
    (folder / "code").mkdir()
    (folder / "code" / "leash.py").write_text(FAKE_LEASH)
    (folder / "state").mkdir()
    template = load_template()
    for logical, code in (("TokenFunction", ROOT / "functions" / "token"), ("LeashFunction", folder / "code")):
        template["Resources"][logical]["Properties"]["CodeUri"] = str(code)
    (folder / "template.json").write_text(json.dumps(template))  # JSON is YAML, intrinsics in their long form
    with LocalSystem(port=0, template=folder / "template.json", retry_jitter=jitter,
                     env_overrides={"FAKE_LEASH_STATE": str(folder / "state")}) as running:
        yield running


def _start(system: LocalSystem, call_id: str, in_seconds: float) -> tuple[str, float]:
    """StartExecution as the token function does it; the time it waits for (second precision, as the input)."""
    assert system.stack is not None
    hangup_at = math.ceil(time.time() + in_seconds)
    stamp = datetime.fromtimestamp(hangup_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    arn = system.client("stepfunctions").start_execution(
        stateMachineArn=system.stack.state_machines["LeashStateMachine"].arn, name=call_id,
        input=json.dumps({"call_id": call_id, "hangup_at": stamp}))["executionArn"]
    return arn, hangup_at


def _invocations(system: LocalSystem, source: str, count: int, within: float) -> list[Invocation]:
    assert system.leash is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [i for i in system.leash.invocations if i.source == source]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return [i for i in system.leash.invocations if i.source == source]


def _status(system: LocalSystem, arn: str, within: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        execution = system.client("stepfunctions").describe_execution(executionArn=arn)
        if execution["status"] != "RUNNING" or time.monotonic() > deadline:
            return execution
        time.sleep(0.05)


def test_the_state_machine_and_the_leash_function_come_from_the_template(system: LocalSystem) -> None:
    assert system.stack is not None
    machine = system.stack.state_machines["LeashStateMachine"]
    described = system.client("stepfunctions").describe_state_machine(stateMachineArn=machine.arn)
    definition = json.loads(described["definition"])
    assert definition == machine.definition
    declared = load_template()["Resources"]["LeashStateMachine"]["Properties"]["Definition"]
    assert definition["States"]["WaitForTheEnd"] == declared["States"]["WaitForTheEnd"]
    leash = system.stack.lambdas["LeashFunction"]
    assert definition["States"]["HangUp"]["Parameters"]["FunctionName"] == leash.arn  # the substitution, made
    assert system.function_env["STATE_MACHINE_ARN"] == machine.arn
    assert leash.handler == "leash.lambda_handler"
    variables = load_template()["Resources"]["LeashFunction"]["Properties"]["Environment"]["Variables"]
    assert set(variables) <= set(system.function_envs["LeashFunction"])
    assert system.function_envs["LeashFunction"]["TABLE_NAME"] == system.stack.table_name
    assert set(system.pools) == {"TokenFunction", "LeashFunction"}


def test_an_execution_invokes_the_leash_function_within_two_seconds_of_its_time(system: LocalSystem) -> None:
    arn, hangup_at = _start(system, "rtc_localleash1", in_seconds=2)
    invoked = _invocations(system, "rtc_localleash1", 1, within=10)
    assert len(invoked) == 1
    given = json.loads(system.client("stepfunctions").describe_execution(executionArn=arn)["input"])
    assert invoked[0].payload == given  # the template's `Payload.$: $`: the timer's whole input
    assert invoked[0].error is None
    late = invoked[0].started - hangup_at
    print(f"\nleash invoked {late:.2f} s after hangup_at")
    assert 0 <= late < 2
    execution = _status(system, arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["Payload"]["call_id"] == "rtc_localleash1"


def test_a_stopped_execution_is_never_carried_out(system: LocalSystem) -> None:
    arn, hangup_at = _start(system, "rtc_localleash2", in_seconds=2)
    system.client("stepfunctions").stop_execution(executionArn=arn)
    time.sleep(max(0.0, hangup_at - time.time()) + 1.5)
    assert _invocations(system, "rtc_localleash2", 1, within=0) == []
    assert _status(system, arn)["status"] == "ABORTED"


def test_the_sweeper_fires_with_its_schedules_input(system: LocalSystem) -> None:
    assert system.stack is not None
    (schedule,) = system.stack.schedules.values()
    assert schedule.expression == "rate(1 minute)" and json.loads(schedule.input or "") == {"sweep": True}
    fired = _invocations(system, schedule.logical_id, 2, within=10)
    assert len(fired) >= 2
    assert all(i.payload == {"sweep": True} and i.error is None for i in fired)
    assert fired[1].started - fired[0].started > 0.5  # the shortened period, not a burst


def test_a_failing_hangup_is_retried_with_backoff_and_then_succeeds(failing_system: LocalSystem,
                                                                     jitter: FixedJitter) -> None:
    jitter.fraction = 1.0  # each whole delay
    arn, _ = _start(failing_system, "fail-2-then-ok", in_seconds=0)
    attempts = _invocations(failing_system, "fail-2-then-ok", 3, within=15)
    assert [a.error for a in attempts] == ["RuntimeError", "RuntimeError", None]
    gaps = [later.started - earlier.started for earlier, later in itertools.pairwise(attempts)]
    assert 0.9 < gaps[0] < 3 and 1.9 < gaps[1] < 5  # IntervalSeconds 1, BackoffRate 2
    assert _status(failing_system, arn)["status"] == "SUCCEEDED"


def test_a_hangup_failing_beyond_max_attempts_fails_the_execution(failing_system: LocalSystem,
                                                                   jitter: FixedJitter) -> None:
    jitter.fraction = 0.0  # FULL jitter drew no wait at all: the template's ten retries at once
    arn, _ = _start(failing_system, "fail-99-always", in_seconds=0)
    _invocations(failing_system, "fail-99-always", 11, within=30)
    execution = _status(failing_system, arn, within=10)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "RuntimeError"  # the errorType the function raised, as Retry and Catch match it
    assert json.loads(execution["cause"]) == {"errorType": "RuntimeError",
                                              "errorMessage": "hangup failed for fail-99-always"}
    assert failing_system.leash is not None
    attempts = [i for i in failing_system.leash.invocations if i.source == "fail-99-always"]
    assert len(attempts) == 11  # the first try and MaxAttempts 10 retries, no more


def test_a_call_is_hung_up_at_openai_within_two_seconds_of_its_end(system: LocalSystem) -> None:
    assert system.standin is not None
    answer = httpx.post(system.calls_url, json={"sdp": make_offer()}, timeout=30)
    assert answer.status_code == 201, answer.text
    call = answer.json()
    assert call["max_seconds"] == MAX_CALL_SECONDS
    deadline = time.monotonic() + MAX_CALL_SECONDS + 10
    while not system.standin.hangups_for(call["call_id"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    late = time.time() - call["ends_at"]
    print(f"\nOpenAI hangup {late:.2f} s after ends_at")
    assert system.standin.hangups_for(call["call_id"]), "the leash never hung the call up"
    assert late < 2
    assert system.leash is not None
    timer = _invocations(system, call["call_id"], 1, within=10)  # the invocation is recorded once it returned
    assert [i.error for i in timer] == [None]
    assert timer[0].payload["call_id"] == call["call_id"]


def test_an_early_hangup_leaves_the_calls_timer_which_still_comes_at_its_end(system: LocalSystem) -> None:
    """The product never stops a call's execution (an early hangup included): the leash still runs at the end."""
    assert system.standin is not None and system.stack is not None
    call = httpx.post(system.calls_url, json={"sdp": make_offer()}, timeout=30).json()
    hangup = httpx.post(f"{system.calls_url}/{call['call_id']}/hangup", json={"hangup_token": call["hangup_token"]},
                        timeout=30)
    assert hangup.status_code == 200, hangup.text
    executions = system.client("stepfunctions").list_executions(
        stateMachineArn=system.stack.state_machines["LeashStateMachine"].arn, statusFilter="RUNNING")["executions"]
    assert call["call_id"] in [e["name"] for e in executions]
    timer = _invocations(system, call["call_id"], 1, within=max(0.0, call["ends_at"] - time.time()) + 10)
    assert timer and timer[0].payload["call_id"] == call["call_id"]
    assert timer[0].started >= call["ends_at"] - 1  # its Wait, not an early run (ends_at is whole seconds)
