"""A fault row through the local system (`make run`'s stack): OpenAI fails the hangups of one call, and the
harness goes on as AWS would. The leash function's failures come back named by the errorType it raised (what
Step Functions retries on), its containers survive them, later calls are still hung up by their own timers, and
the sweeper's invocations keep succeeding.

The stand-in's faults cannot be aimed at one call (a fault names an endpoint, not a call id), so the stand-in fails
the next FAULTS Realtime hangups while only the first call is due: nothing else is running, and the second call
is set up only once every fault has been used. The first call's timer takes them all (the function itself may
repeat a failed hangup within one invocation), then a retry gets through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.leash import Invocation
from local.openai_standin.faults import Fault
from local.system import LocalSystem
from tests.integration.offers import make_offer

MAX_CALL_SECONDS = 10  # the template's least
FAULTS = 4
# Each retry waits half its computed delay (0.5, 1, 2 s ...): the first call is over before the sweeper's grace.
JITTER = 0.5


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    parameters = {"MaxCallSeconds": str(MAX_CALL_SECONDS), "VoiceBackend": "realtime"}
    with LocalSystem(port=0, sweeper_period_seconds=1, parameters=parameters,
                     retry_jitter=lambda: JITTER) as running:
        yield running


def _call(system: LocalSystem) -> dict[str, Any]:
    # Realtime takes audio-only offers unless RealtimeDataChannel is on.
    answer = httpx.post(system.calls_url, json={"sdp": make_offer(data_channel=False)}, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _invocations(system: LocalSystem, source: str) -> list[Invocation]:
    assert system.leash is not None
    return [i for i in system.leash.invocations if i.source == source]


def _logged_error_types(system: LocalSystem) -> set[str]:
    """The errorType of every exception that left a handler, as the container logged it (Lambda's JSON line)."""
    types = set()
    for line in system.function_log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "ERROR" and "errorType" in record:
            types.add(record["errorType"])
    return types


def test_hangups_failing_for_one_call_break_no_pool_and_later_calls_are_still_hung_up(system: LocalSystem) -> None:
    standin, stack = system.standin, system.stack
    assert standin is not None and stack is not None
    (sweeper,) = stack.schedules
    leash_pool = system.pools["LeashFunction"]

    first = _call(system)
    standin.faults.add(Fault(endpoint="hangup", status=503, times=FAULTS))
    # Its timer's retries go on and get through once OpenAI answers again.
    _until(lambda: any(h.status == 200 for h in standin.hangups_for(first["call_id"])), MAX_CALL_SECONDS + 30,
           "the first call's retries never hung it up")
    assert not standin.faults.pending("hangup")  # all of them used before the second call exists
    failed = [i for i in _invocations(system, first["call_id"]) if i.error is not None]  # those before the 200
    assert failed, "the first call's timer never saw a failure"
    # Named by the errorType the handler raised (and logged), never by the harness's own wrapper or a broken pool.
    assert {i.error for i in failed} <= _logged_error_types(system), [i.error for i in failed]
    assert not {i.error for i in failed} & {"FunctionError", "BrokenProcessPool", "Runtime.ExitError"}
    first_failure = failed[0].started

    second = _call(system)
    _until(lambda: any(h.status == 200 for h in standin.hangups_for(second["call_id"])),
           max(0.0, second["ends_at"] - time.time()) + 15, "the second call was never hung up")
    record = standin.call(second["call_id"])
    assert record is not None and record.ended and record.end_reason == "hangup"
    _until(lambda: _invocations(system, second["call_id"]), 10, "the second call's timer was not recorded")

    sweeps = [i for i in _invocations(system, sweeper) if i.started > first_failure]
    assert len(sweeps) >= 2 and [i.error for i in sweeps] == [None] * len(sweeps)
    assert leash_pool.replaced == 0  # an exception in a handler costs no container
    statuses = [h.status for h in standin.hangups_for(first["call_id"])]
    print(f"\nfirst call's hangups {statuses}; {len(failed)} failed timer invocation(s) ({failed[0].error}); "
          f"{len(sweeps)} sweeps after them")
