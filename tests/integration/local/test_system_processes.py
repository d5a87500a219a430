"""`python -m local` as a process manager sees it: refused connections until it is wholly up, then clean answers;
SIGTERM stops it like Ctrl-C whatever signal dispositions it inherited; no process outlives it, not even when
it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
START_SECONDS = 90  # generous: a cold machine imports slowly
GONE_SECONDS = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _inherit_hostile_dispositions() -> None:
    """What `make run &` in a script (SIGINT ignored) or a process manager (signals blocked) hands down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})


def _start(port: int, hostile: bool = False, overrides: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1", "PARAMETER_OVERRIDES": overrides}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_inherit_hostile_dispositions if hostile else None)


@pytest.fixture
def port() -> int:
    return _free_port()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:  # whatever a failed test left running
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def _wait_healthy(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.ConnectError:
            time.sleep(0.1)
    pytest.fail("the local system did not answer /health in time")


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) from /proc, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces and parentheses
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every process below `root`, with its start time (a reused pid is another process)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
            starts[int(entry)] = stat[2]
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo += children.get(pid, [])
    return found


def _left_behind(pids: dict[int, str], within: float) -> list[int]:
    """The processes among `pids` still alive after `within` seconds (a zombie has exited: it is not running)."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid, started in pids.items()
                 if (stat := _stat(pid)) is not None and stat[2] == started and stat[1] != "Z"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_during_start_up_a_connection_is_refused_or_answered_never_dropped(
        port: int, processes: list[subprocess.Popen[str]]) -> None:
    process = _start(port)
    processes.append(process)
    outcomes: dict[str, int] = {}
    deadline = time.monotonic() + START_SECONDS
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"http://127.0.0.1:{port}/health", headers={"connection": "close"})
                outcome = f"{response.status_code}"
            except httpx.ConnectError:
                outcome = "refused"
            except httpx.HTTPError as exc:  # dropped, reset, half an answer: what must never happen
                outcome = type(exc).__name__
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == "200" and outcomes[outcome] >= 20:
                break
    print(f"\n/health during start-up: {outcomes}")
    assert set(outcomes) == {"refused", "200"}, outcomes
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_cleanly_and_leaves_no_process_even_with_signals_ignored_and_blocked(
        port: int, processes: list[subprocess.Popen[str]], stop: signal.Signals) -> None:
    process = _start(port, hostile=True)
    processes.append(process)
    _wait_healthy(process, port)
    below = _descendants(process.pid)
    assert len(below) >= 4, below  # two containers each for the token and the leash functions
    started = time.monotonic()
    process.send_signal(stop)
    output, _ = process.communicate(timeout=30)
    print(f"\nstopped in {time.monotonic() - started:.1f} s; {len(below)} processes below it")
    assert process.returncode == 0, output
    assert "Stopped." in output and "Traceback" not in output
    assert _left_behind(below, GONE_SECONDS) == []


def test_no_worker_outlives_a_parent_killed_with_sigkill(port: int, processes: list[subprocess.Popen[str]]) -> None:
    process = _start(port)
    processes.append(process)
    _wait_healthy(process, port)
    below = _descendants(process.pid)
    assert below
    process.kill()
    process.communicate(timeout=30)
    assert _left_behind(below, GONE_SECONDS) == []


def test_a_signal_during_start_up_stops_it_cleanly(port: int, processes: list[subprocess.Popen[str]]) -> None:
    process = _start(port)
    processes.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("Starting")
    time.sleep(1)  # somewhere in the middle of starting moto, the stack or the containers
    below = _descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "Stopped." in output, output
    assert _left_behind({**below, **_descendants(process.pid)}, GONE_SECONDS) == []


@pytest.mark.parametrize("overrides, named", [
    ("MaxCallSeconds=5", "MaxCallSeconds='5': must be at least 10"),
    ("DailyCallMinutes=2 EnableTokenRoute=yes", "EnableTokenRoute"),
    ("MaxCallSecs=20", "did you mean MaxCallSeconds"),
    ("ParameterKey=MaxCallSeconds,ParameterValue=5", "MaxCallSeconds='5': must be at least 10"),
    # The template's Rules are CloudFormation's too: a deploy would refuse this pair before creating anything.
    ("AllowedVoices=marin DefaultVoice=cedar", "DefaultVoice must be one of AllowedVoices"),
])
def test_a_refused_parameter_exits_2_naming_it_before_anything_starts(port: int, overrides: str, named: str) -> None:
    env = {**os.environ, "PORT": str(port), "PARAMETER_OVERRIDES": overrides}
    done = subprocess.run([sys.executable, "-m", "local"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert named in done.stderr
    assert "Starting" not in done.stdout


def test_a_function_that_cannot_start_ends_the_start_up_at_once_with_its_reason(
        port: int, processes: list[subprocess.Popen[str]]) -> None:
    """A value the template's constraints allow but the function refuses (what a deploy would only show as every
    request failing): no half-up system waiting on containers that will never be ready, but exit 2 with the reason,
    and nothing left running."""
    process = _start(port, overrides="InstructionPresets=not-json")
    processes.append(process)
    started = time.monotonic()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2, output
    assert "cannot start" in output and "INSTRUCTION_PRESETS" in output, output
    assert "Traceback" not in output, "the traceback goes to the function log, the console gets the reason"
    assert time.monotonic() - started < 45, "it did not wait out the containers' start-up timeout"
    assert _left_behind(_descendants(process.pid), GONE_SECONDS) == []


def test_a_stack_parameter_given_in_sam_deploys_long_form_is_taken(port: int,
                                                                   processes: list[subprocess.Popen[str]]) -> None:
    process = _start(port, overrides="ParameterKey=MaxCallSeconds,ParameterValue=42.5")
    processes.append(process)
    _wait_healthy(process, port)
    options = httpx.get(f"http://127.0.0.1:{port}/options", timeout=10).json()
    assert options["max_call_seconds"] == 42  # a fraction, as CloudFormation allows, rounded down
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
