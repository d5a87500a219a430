"""A function run as Lambda runs it: in its own processes ("containers"), each importing the handler once with the
environment the template gives it, then serving one invocation at a time.

Separate processes keep the function's environment and module state away from whoever hosts it (a test run, the
local system), exactly as containers do, and let several invocations run at once against shared DynamoDB.
A container never outlives the process that started it: it watches its parent and exits when the parent is gone,
even when the parent was killed with SIGKILL and could not stop it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from local.supervision import watch_parent

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "functions" / "token"

_handler: Any = None
_context_args: dict[str, Any] = {}


class FunctionStartError(RuntimeError):
    """A container could not import its handler (Lambda's init error): the function cannot serve at all."""


def _start_container(env: dict[str, str], log_path: str, code_dir: str, handler: str, context_args: dict[str, Any],
                     parent_pid: int, ready: Any) -> None:
    global _handler, _context_args
    # Ctrl-C reaches the whole process group; a container is stopped by its parent, never halfway by the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent_pid)
    os.environ.update(env)
    sys.path[:0] = [code_dir, str(ROOT)]
    # Lambda sends the function's stdout to CloudWatch; here, to a file (JSON lines) so the console stays readable.
    sys.stdout = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    module, _, attribute = handler.rpartition(".")
    try:
        _handler = getattr(importlib.import_module(module), attribute)
    except Exception as exc:
        # The traceback goes to the function log as Lambda's would; the parent gets the one line that says why.
        traceback.print_exc(file=sys.stdout)
        ready.put(("failed", f"{type(exc).__name__}: {exc}"))
        ready.close()
        ready.join_thread()  # the message is in the pipe before the container goes
        os._exit(1)  # as Lambda's init error: this container is done (and the pool prints no traceback of it)
    _context_args = context_args
    ready.put(("ready", os.getpid()))


def _invoke(event: dict[str, Any]) -> Any:
    from local.apigw import LambdaContext

    return _handler(event, LambdaContext(**_context_args))


def _warm() -> int:
    return os.getpid()


class FunctionPool:
    def __init__(self, env: dict[str, str], *, containers: int = 2, log_path: Path,
                 handler: str = "app.lambda_handler", code_dir: Path = FUNCTION_DIR, name: str = "TokenFunction",
                 memory_mb: int = 256, timeout_s: float = 25) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.name = name
        env = {**env, "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}
        context_args = {"function_name": name, "memory_mb": memory_mb, "timeout_s": timeout_s}
        spawn = multiprocessing.get_context("spawn")
        self._ready = spawn.Queue()  # each container says when its handler is imported
        self._pool = ProcessPoolExecutor(
            max_workers=containers, mp_context=spawn, initializer=_start_container,
            initargs=(env, str(log_path), str(code_dir), handler, context_args, os.getpid(), self._ready))
        self.containers = containers
        self._broken = False

    def warm(self, timeout: float = 60, cancelled: threading.Event | None = None) -> None:
        """Start every container now and wait until each has imported its handler, so no request pays a cold start
        (and a stop never waits for an import). A container that cannot import its handler is a
        FunctionStartError at once; `cancelled` (a stop during start-up) ends the wait early."""
        futures = [self._pool.submit(_warm) for _ in range(self.containers)]  # each submit spawns a container
        deadline, ready = time.monotonic() + timeout, 0
        while ready < self.containers:
            if cancelled is not None and cancelled.is_set():
                return
            if time.monotonic() > deadline:
                raise FunctionStartError(f"{self.name}: no container was ready after {timeout:.0f} s")
            try:
                state, detail = self._ready.get(timeout=0.1)
            except queue.Empty:
                continue
            if state == "failed":
                self._broken = True
                raise FunctionStartError(f"{self.name} cannot start: {detail} (whole traceback in {self.log_path})")
            ready += 1
        for future in futures:
            future.result(timeout=timeout)

    def invoke(self, event: dict[str, Any], timeout: float = 30) -> Any:
        return self._pool.submit(_invoke, event).result(timeout=timeout)

    def close(self) -> None:
        if self._broken:  # containers that failed their import are gone or going: wait for none of them
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._ready.close()
