"""The token function run as Lambda runs it: in its own processes ("containers"), each importing the handler once
with the environment the template gives it, then serving one invocation at a time.

Separate processes keep the function's environment and module state away from whoever hosts it (a test run, the
local system), exactly as containers do, and let several invocations run at once against shared DynamoDB.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "functions" / "token"

_handler: Any = None


def _start_container(env: dict[str, str], log_path: str) -> None:
    global _handler
    os.environ.update(env)
    sys.path[:0] = [str(FUNCTION_DIR), str(ROOT)]
    # Lambda sends the function's stdout to CloudWatch; here, to a file (JSON lines) so the console stays readable.
    sys.stdout = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    import app

    _handler = app.lambda_handler


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    from local.apigw import LambdaContext

    return _handler(event, LambdaContext())


def _warm() -> int:
    return os.getpid()


class FunctionPool:
    def __init__(self, env: dict[str, str], *, containers: int = 2, log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._pool = ProcessPoolExecutor(max_workers=containers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_container, initargs=(env, str(log_path)))
        self.containers = containers

    def warm(self) -> None:
        """Start every container now, so the first request does not pay the cold starts."""
        for future in [self._pool.submit(_warm) for _ in range(self.containers)]:
            future.result(timeout=60)

    def invoke(self, event: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        return self._pool.submit(_invoke, event).result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
