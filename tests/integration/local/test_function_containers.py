"""Function containers (local.functions) with real processes: whatever a handler does, its error comes back as
Lambda reports it (errorType, errorMessage) and the pool goes on serving; a container that dies or outlives its
invocation fails that invocation alone and is replaced, as Lambda replaces a sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.functions import FunctionError, FunctionPool

HANDLER = '''
import os
import signal
import time
from decimal import Decimal
from pathlib import Path


class ApiLikeError(Exception):
    """As the product's ApiError: its args hold only the formatted message, so unpickling it calls __init__ with
    one argument where three are needed."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


def lambda_handler(event, context):
    if "mark" in event:
        Path(event["mark"]).write_text("started")
    match event.get("do"):
        case "raise":
            raise ApiLikeError(502, "upstream_error", "OpenAI did not answer")
        case "exit":
            os._exit(3)
        case "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        case "sleep":
            time.sleep(event["seconds"])
        case "set":
            return {"not json": {1, 2}}
        case "decimal":
            return {"n": Decimal("1.5")}
    return {"pid": os.getpid()}
'''


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[FunctionPool]:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "fake.py").write_text(HANDLER)
    functions = FunctionPool({}, containers=2, log_path=tmp_path / "function.log", handler="fake.lambda_handler",
                             code_dir=tmp_path / "code", name="FakeFunction", timeout_s=5)
    functions.warm()
    yield functions
    functions.close()


def _in_background(pool: FunctionPool, event: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(pool.invoke(event, timeout=30))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, "the slow invocation never started"
        time.sleep(0.01)


def _pids(pool: FunctionPool, tmp_path: Path) -> set[int]:
    """Both containers' pids: two invocations at once, each holding its container until both have started."""
    marks = [tmp_path / f"pid-{n}-{time.monotonic_ns()}" for n in range(2)]
    threads = [_in_background(pool, {"do": "sleep", "seconds": 0.3, "mark": str(mark)}) for mark in marks]
    for thread, _ in threads:
        thread.join()
    return {outcome[0]["pid"] for _, outcome in threads}


def test_an_exception_the_parent_could_not_rebuild_comes_back_as_lambda_reports_it(pool: FunctionPool,
                                                                                    tmp_path: Path) -> None:
    before = _pids(pool, tmp_path)
    with pytest.raises(FunctionError) as failed:
        pool.invoke({"do": "raise"})
    assert failed.value.error_type == "ApiLikeError"  # what Step Functions' ErrorEquals matches
    assert failed.value.message == "502 upstream_error: OpenAI did not answer"
    # The pool is whole: both containers serve on, the same processes (nothing was restarted).
    assert _pids(pool, tmp_path) == before and pool.replaced == 0
    logged = [json.loads(line) for line in (tmp_path / "function.log").read_text().splitlines()]
    assert [(r["level"], r["errorType"], r["errorMessage"]) for r in logged] == [
        ("ERROR", "ApiLikeError", "502 upstream_error: OpenAI did not answer")]


@pytest.mark.parametrize("death, message", [("exit", "exit status 3"), ("kill", "signal: SIGKILL")])
def test_a_container_that_dies_fails_only_its_own_invocation_and_is_replaced(
        pool: FunctionPool, tmp_path: Path, death: str, message: str) -> None:
    before = _pids(pool, tmp_path)
    mark = tmp_path / "slow-started"
    slow, outcome = _in_background(pool, {"do": "sleep", "seconds": 1, "mark": str(mark)})
    _wait_for(mark)  # the slow invocation holds one container: the next goes to the other
    with pytest.raises(FunctionError) as failed:
        pool.invoke({"do": death})
    assert failed.value.error_type == "Runtime.ExitError"
    assert failed.value.message == f"Runtime exited with error: {message}"
    slow.join()
    assert outcome[0]["pid"] in before, outcome  # the other container's invocation was left alone
    after = _pids(pool, tmp_path)
    assert pool.replaced == 1
    assert len(after) == 2 and len(after & before) == 1  # one new container beside the survivor


def test_an_invocation_that_outlives_its_time_is_cut_off_and_its_container_replaced(pool: FunctionPool,
                                                                                   tmp_path: Path) -> None:
    before = _pids(pool, tmp_path)
    with pytest.raises(FunctionError) as failed:
        pool.invoke({"do": "sleep", "seconds": 60}, timeout=1)
    assert failed.value.error_type == "Sandbox.Timedout"
    assert pool.replaced == 1
    after = _pids(pool, tmp_path)
    assert len(after) == 2 and len(after & before) == 1


def test_a_result_is_what_lambda_would_serialise(pool: FunctionPool) -> None:
    assert pool.invoke({"do": "decimal"}) == {"n": 1.5}
    with pytest.raises(FunctionError) as failed:
        pool.invoke({"do": "set"})
    assert failed.value.error_type == "Runtime.MarshalError"
    assert pool.replaced == 0


def test_close_lets_a_running_invocation_finish_and_leaves_no_container(pool: FunctionPool, tmp_path: Path) -> None:
    mark = tmp_path / "running"
    running, outcome = _in_background(pool, {"do": "sleep", "seconds": 1, "mark": str(mark)})
    _wait_for(mark)
    pids = pool.pids
    pool.close()
    running.join()
    assert isinstance(outcome[0], dict) and "pid" in outcome[0], outcome  # not cut off by the stop
    assert len(pids) == 2 and all(not Path(f"/proc/{pid}").exists() for pid in pids)  # ended and reaped
