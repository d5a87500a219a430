"""A function run as Lambda runs it: in its own processes ("containers"), each importing the handler once with the
environment the template gives it, then serving one invocation at a time.

Separate processes keep the function's environment and module state away from whoever hosts it (a test run, the
local system), exactly as containers do, and let several invocations run at once against shared DynamoDB.
A container never outlives the process that started it: it watches its parent and exits when the parent is gone,
even when the parent was killed with SIGKILL and could not stop it.

What crosses the process boundary is what crosses Lambda's: the event in, and out either the result as JSON or the
error as Lambda reports it (errorType, the exception's class name; errorMessage, its text), never the exception
object, which the parent might not be able to rebuild. A container that dies during an invocation, or outlives
the invocation's time, fails that invocation alone and is replaced by a new one, as Lambda replaces a sandbox.
"""

from __future__ import annotations

import contextlib
import decimal
import importlib
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from local.supervision import watch_parent

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "functions" / "token"


class FunctionStartError(RuntimeError):
    """A container could not import its handler (Lambda's init error): the function cannot serve at all."""


class FunctionError(Exception):
    """A failed invocation as Lambda reports it. Step Functions' Retry and Catch match `error_type`."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message = error_type, message


# --- inside a container ---------------------------------------------------------------------------------------


def _serve(connection: Connection, env: dict[str, str], log_path: str, code_dir: str, handler: str,
           context_args: dict[str, Any], parent_pid: int) -> None:
    # Ctrl-C reaches the whole process group; a container is stopped by its parent, never halfway by the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent_pid)
    os.environ.update(env)
    sys.path[:0] = [code_dir, str(ROOT)]
    # Lambda sends the function's stdout to CloudWatch; here, to a file (JSON lines) so the console stays readable.
    sys.stdout = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    module, _, attribute = handler.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), attribute)
    except Exception as exc:
        # The traceback goes to the function log as Lambda's would; the parent gets the one line that says why.
        traceback.print_exc(file=sys.stdout)
        connection.send(("failed", type(exc).__name__, str(exc)))
        _exit(1)  # as Lambda's init error: this container is done
    connection.send(("ready", os.getpid()))
    while True:
        try:
            event = connection.recv()
        except EOFError:  # the parent closed its end without a word: nothing more will come
            break
        if event is None:
            break
        connection.send(_run(function, event, context_args))
    _exit(0)


def _exit(code: int) -> NoReturn:
    """Gone at once, as Lambda ends a sandbox: no waiting on the function's own threads and exit hooks (about a
    second per container with the product's, measured), only its log written out."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(function: Any, event: Any, context_args: dict[str, Any]) -> tuple[str, ...]:
    from local.apigw import LambdaContext

    context = LambdaContext(**context_args)
    try:
        result = function(event, context)
    except Exception as exc:
        _log_error(exc, context.aws_request_id)
        return ("error", type(exc).__name__, str(exc))
    try:
        # As Lambda's Python runtime serialises a result (a Decimal from DynamoDB becomes a number).
        return ("ok", json.dumps(result, default=_decimal))
    except (TypeError, ValueError) as exc:
        return ("error", "Runtime.MarshalError", f"Unable to marshal response: {exc}")


def _decimal(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _log_error(exc: Exception, request_id: str) -> None:
    """The line Lambda's runtime writes (JSON log format) for an exception that leaves the handler."""
    print(json.dumps({"timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                      "level": "ERROR", "message": str(exc), "errorType": type(exc).__name__,
                      "errorMessage": str(exc), "requestId": request_id,
                      "stackTrace": traceback.format_tb(exc.__traceback__)}))


# --- in the parent --------------------------------------------------------------------------------------------


class _Lost(Exception):
    """The container cannot go on: it died, failed its import, or outlived the invocation's time."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


class _Container:
    """One container and the pipe to it. Whoever took it from the pool's idle queue is its only user."""

    def __init__(self, spawn: Any, args: tuple[Any, ...], name: str) -> None:
        self._connection, child = spawn.Pipe()
        # Daemonic: an interpreter that exits without closing the pool terminates it rather than waiting for it.
        self.process = spawn.Process(target=_serve, args=(child, *args), name=name, daemon=True)
        self.process.start()
        child.close()  # only the container holds its end: its death is an EOF here
        self._ready = False

    def ready(self, wait: float) -> bool:
        """True once the handler is imported; False while it is still importing after `wait` seconds."""
        if not self._ready and self._connection.poll(max(0.0, wait)):
            try:
                state, *detail = self._connection.recv()
            except (EOFError, OSError):
                raise _Lost("Runtime.ExitError", self._exit_status()) from None
            if state == "failed":
                raise _Lost(*detail)
            self._ready = True
        return self._ready

    def invoke(self, event: Any, deadline: float) -> tuple[str, ...]:
        while not self.ready(deadline - time.monotonic()):
            if time.monotonic() >= deadline:
                raise _Lost("Sandbox.Timedout", "Task timed out during its container's start")
        started = time.monotonic()
        try:
            self._connection.send(event)
            if not self._connection.poll(max(0.0, deadline - started)):
                raise _Lost("Sandbox.Timedout", f"Task timed out after {deadline - started:.2f} seconds")
            reply: tuple[str, ...] = self._connection.recv()
        except (EOFError, OSError):
            raise _Lost("Runtime.ExitError", self._exit_status()) from None
        return reply

    def _exit_status(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is None:
            return "Runtime exited without providing a reason"
        if code < 0:
            return f"Runtime exited with error: signal: {signal.Signals(-code).name}"
        return f"Runtime exited with error: exit status {code}"

    def ask_to_stop(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(None)

    def end(self, grace: float = 0.0) -> None:
        """Wait up to `grace` for it to exit on its own, then kill it."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._connection.close()


class FunctionPool:
    def __init__(self, env: dict[str, str], *, containers: int = 2, log_path: Path,
                 handler: str = "app.lambda_handler", code_dir: Path = FUNCTION_DIR, name: str = "TokenFunction",
                 memory_mb: int = 256, timeout_s: float = 25) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.name = name
        self.containers = containers
        self._timeout_s = timeout_s
        env = {**env, "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}
        context_args = {"function_name": name, "memory_mb": memory_mb, "timeout_s": timeout_s}
        self._spawn = multiprocessing.get_context("spawn")
        self._args = (env, str(log_path), str(code_dir), handler, context_args, os.getpid())
        self._lock = threading.Lock()
        self._live: set[_Container] = set()  # every container not yet ended, idle or busy
        self._idle: queue.SimpleQueue[_Container] = queue.SimpleQueue()
        self._closed = self._broken = False
        self.replaced = 0  # containers started to replace one that died or timed out
        for _ in range(containers):
            self._start_container()

    @property
    def pids(self) -> list[int]:
        """The containers' process ids, idle or busy."""
        with self._lock:
            return [pid for container in self._live if (pid := container.process.pid) is not None]

    def _start_container(self) -> None:
        with self._lock:
            if self._closed:
                return
            container = _Container(self._spawn, self._args, f"{self.name}-container")
            self._live.add(container)
        self._idle.put(container)

    def warm(self, timeout: float = 60, cancelled: threading.Event | None = None) -> None:
        """Wait until every container has imported its handler, so no request pays a cold start (and a stop never
        waits for an import). A container that cannot import its handler is a FunctionStartError at once;
        `cancelled` (a stop during start-up) ends the wait early."""
        deadline = time.monotonic() + timeout
        taken = [self._idle.get(timeout=timeout) for _ in range(self.containers)]
        try:
            for container in taken:
                while not container.ready(0.1):
                    if cancelled is not None and cancelled.is_set():
                        return
                    if time.monotonic() > deadline:
                        raise FunctionStartError(f"{self.name}: no container was ready after {timeout:.0f} s")
        except _Lost as lost:
            self._broken = True
            raise FunctionStartError(f"{self.name} cannot start: {lost.error_type}: {lost.message} "
                                     f"(whole traceback in {self.log_path})") from None
        finally:
            for container in taken:
                self._idle.put(container)

    def invoke(self, event: dict[str, Any], timeout: float = 30) -> Any:
        """The handler's result, or FunctionError as Lambda reports the failure. `timeout` covers the wait for a
        free container (TimeoutError when none comes) and the invocation itself."""
        deadline = time.monotonic() + timeout
        if self._closed:
            raise FunctionError("Runtime.ExitError", f"{self.name} is stopped")
        try:
            container = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no container was free within {timeout:.0f} s") from None
        try:
            reply = container.invoke(event, deadline)
        except _Lost as lost:
            self._replace(container)
            raise FunctionError(lost.error_type, lost.message) from None
        self._idle.put(container)
        if reply[0] == "ok":
            return json.loads(reply[1])
        raise FunctionError(reply[1], reply[2])

    def _replace(self, container: _Container) -> None:
        container.end()
        with self._lock:
            self._live.discard(container)
            self.replaced += 1
        self._start_container()  # not yet imported: the next invocation that takes it waits for its import

    def close(self) -> None:
        """Stop every container once its invocation (if any) has returned, waiting at most the function's timeout;
        kill whatever is still busy then."""
        with self._lock:
            self._closed = True
        grace = 0.0 if self._broken else self._timeout_s
        deadline = time.monotonic() + grace
        stopping: list[_Container] = []
        while True:
            with self._lock:
                waiting = self._live.difference(stopping)
            if not waiting:
                break
            try:
                container = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            container.ask_to_stop()
            stopping.append(container)
        with self._lock:
            everything = list(self._live)
        for container in everything:
            # One asked to stop gets a moment to exit on its own (its log closes cleanly); a busy one, none.
            container.end(grace=max(1.0, deadline - time.monotonic()) if container in stopping else 0.0)
        with self._lock:
            self._live.clear()
