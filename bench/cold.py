"""Cold start: importing the handler module in a fresh interpreter with the template's environment, against
`import boto3, httpx` in a fresh interpreter, both on a Lambda-like path (bare interpreter `-I -S`: the built
package, the Powertools layer if attached, the runtime's boto3), so nothing from this venv leaks in."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import AWS_ENV, PYTHON, Spread
from local.template_stack import template_function_env

RATIO_GOAL = 1.3
FLOOR = "import boto3, httpx"
# The floor plus the clients the function builds at init and needs for every call it sets up (DynamoDB, Secrets
# Manager, Step Functions, OpenAI): what Powertools and our own code add is the rest.
FLOOR_CLIENTS = ("import boto3, httpx; s = boto3.session.Session(); s.client('dynamodb'); s.client('secretsmanager'); "
                 "s.client('stepfunctions'); httpx.Client()")
# The floor plus the OpenAI client alone: its share of the clients (chiefly loading certifi's trust store into an SSL
# context, which OpenSSL 3 does slowly).
FLOOR_OPENAI = "import boto3, httpx; httpx.Client()"
# The floor plus the Powertools modules the function imports (the project's framework), and nothing of ours: how
# much of the goal the framework leaves for the clients and our code.
FLOOR_FRAMEWORK = ("import boto3, httpx; import aws_lambda_powertools.event_handler, aws_lambda_powertools.logging, "
                   "aws_lambda_powertools.metrics, aws_lambda_powertools.utilities.parameters")

_PROBE = """
import sys, time
sys.path[:0] = {path!r}
t0 = time.perf_counter()
{statement}
print(round((time.perf_counter() - t0) * 1000, 3))
"""


def _env(*, tracing: bool, task_root: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", **AWS_ENV, **template_function_env(), "AWS_LAMBDA_FUNCTION_NAME": "TokenFunction",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}
    if tracing:
        # As deployed (Tracing: Active): Powertools Tracer is on inside Lambda; X-Ray daemon address as Lambda sets.
        env |= {"LAMBDA_TASK_ROOT": task_root, "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def _probe(path: list[str], statement: str, env: dict[str, str], *, no_bytecode: bool = False) -> float:
    code = _PROBE.format(path=path, statement=statement)
    flags = ["-B"] if no_bytecode else []
    done = subprocess.run([PYTHON, "-I", "-S", *flags, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"cold-start probe failed ({statement}):\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(path: list[str], *, runs: int, layer_path: list[str] | None = None) -> dict[str, Any]:
    env_off = _env(tracing=False, task_root=path[0])
    env_on = _env(tracing=True, task_root=path[0])
    samples: dict[str, list[float]] = {name: [] for name in (
        "floor", "floor_clients", "floor_openai", "floor_framework", "app", "app_traced", "floor_no_pyc",
        "app_no_pyc", "app_layer")}
    # Lambda's /var/task is read-only: bytecode the package does not ship is compiled again on every cold start.
    # A copy of the package without __pycache__, imported with -B, shows that cost (the layer and the runtime ship
    # bytecode, as here).
    bare = Path(tempfile.mkdtemp(prefix="bench-nopyc-")) / "TokenFunction"
    shutil.copytree(path[0], bare, ignore=shutil.ignore_patterns("__pycache__"))
    no_pyc_path = [str(bare), *path[1:]]
    # Warm the file cache first: the first probe of a statement reads the disk.
    for statement in (FLOOR, FLOOR_CLIENTS, FLOOR_OPENAI, FLOOR_FRAMEWORK, "import app"):
        _probe(path, statement, env_off)
    for _ in range(runs):  # interleaved, so drift in the machine's speed hits all alike
        samples["floor"].append(_probe(path, FLOOR, env_off))
        samples["floor_clients"].append(_probe(path, FLOOR_CLIENTS, env_off))
        samples["floor_openai"].append(_probe(path, FLOOR_OPENAI, env_off))
        samples["floor_framework"].append(_probe(path, FLOOR_FRAMEWORK, env_off))
        samples["app"].append(_probe(path, "import app", env_off))
        samples["app_traced"].append(_probe(path, "import app", env_on))
        samples["floor_no_pyc"].append(_probe(no_pyc_path, FLOOR, env_off, no_bytecode=True))
        samples["app_no_pyc"].append(_probe(no_pyc_path, "import app", env_off, no_bytecode=True))
        if layer_path:  # the alternative: Powertools from the official layer (which ships no bytecode)
            samples["app_layer"].append(_probe(layer_path, "import app", env_off, no_bytecode=True))
    shutil.rmtree(bare.parent, ignore_errors=True)

    def ms(name: str) -> dict[str, Any]:
        return Spread.of(samples[name], "ms").as_dict()

    def ratio(name: str, floor: str) -> Spread:
        """Probe by probe: each pair was measured side by side."""
        return Spread.of([a / f for a, f in zip(samples[name], samples[floor], strict=True)], "x")

    def goal(target: str, spread: Spread) -> dict[str, Any]:
        return {"goal": target, "value": spread.median, "met": spread.median <= RATIO_GOAL}

    to_floor, with_clients = ratio("app", "floor"), ratio("app", "floor_clients")
    return {
        "floor_ms": ms("floor"),
        "floor_clients_ms": ms("floor_clients"),
        "ratio_to_floor_clients": with_clients.as_dict(),
        "floor_openai_ms": ms("floor_openai"),
        "floor_framework_ms": ms("floor_framework"),
        "ratio_framework": ratio("floor_framework", "floor").as_dict(),
        "app_ms": ms("app"),
        "ratio": to_floor.as_dict(),
        "app_traced_ms": ms("app_traced"),
        "ratio_traced": ratio("app_traced", "floor").as_dict(),
        "floor_no_pyc_ms": ms("floor_no_pyc"),
        "app_no_pyc_ms": ms("app_no_pyc"),
        "ratio_no_pyc": ratio("app_no_pyc", "floor_no_pyc").as_dict(),
        **({"app_layer_ms": ms("app_layer"), "ratio_layer": ratio("app_layer", "floor").as_dict()}
           if samples["app_layer"] else {}),
        "path": [Path(p).name for p in path],
        # The goal, and the same bound against a floor that builds the clients too: the nearest goal the
        # project's framework and eager clients can meet (docs/benchmarks.md, Cold start, says why).
        "goals": {"ratio": goal(f"<= {RATIO_GOAL}x", to_floor),
                  "ratio_with_clients": goal(f"<= {RATIO_GOAL}x of the floor with the clients (restated)",
                                             with_clients)},
    }


def importtime_top(path: list[str], *, limit: int = 12) -> list[tuple[str, float]]:
    """The modules that cost the most to import (cumulative ms), from one `-X importtime` run, tracing off."""
    code = f"import sys; sys.path[:0] = {path!r}\nimport app"
    done = subprocess.run([PYTHON, "-I", "-S", "-X", "importtime", "-c", code], env=_env(tracing=False,
                          task_root=path[0]), capture_output=True, text=True, timeout=120)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth <= 1:
                rows.append((name.strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:limit]


def importtime_groups(path: list[str], *, runs: int = 3) -> dict[str, float]:
    """Self time of every import under `import app` (tracing off), summed per top-level package (Powertools per
    subpackage), median of `runs` `-X importtime` runs, in ms. Module bodies' own work (the clients built at
    import) is under `app`."""
    code = f"import sys; sys.path[:0] = {path!r}\nimport app"
    totals: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run([PYTHON, "-I", "-S", "-X", "importtime", "-c", code],
                              env=_env(tracing=False, task_root=path[0]), capture_output=True, text=True, timeout=120)
        groups: dict[str, float] = {}
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or not parts[0].split(":")[-1].strip().isdigit():
                continue
            name = parts[2].strip()
            group = ".".join(name.split(".")[:3]) if name.startswith("aws_lambda_powertools.") else name.split(".")[0]
            groups[group] = groups.get(group, 0.0) + int(parts[0].split(":")[-1]) / 1000
        for group, ms in groups.items():
            totals.setdefault(group, []).append(ms)
    return {group: round(statistics.median(values + [0.0] * (runs - len(values))), 1)
            for group, values in sorted(totals.items(), key=lambda item: -statistics.median(item[1]))}


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1)
