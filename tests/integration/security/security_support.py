"""Shared by the security suite (tests/security): the leak canary, the figures file, HTTP calls that are kept as
evidence, the local system with the canary as its OpenAI key, and reading the limits table.

The figures every test records go to `test-artifacts/security-figures.json` (one section per test); the README's
"Security and limits" table quotes them.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import percentile as nearest_rank
from local.openai_standin.client_secrets import mask_key
from local.openai_standin.server import StandIn
from local.system import LocalSystem
from tests.integration.harness import EVIDENCE, record_response

ROOT = Path(__file__).resolve().parents[3]
# SECURITY_FIGURES redirects them, e.g. to keep one run's figures apart from another run on the same machine.
FIGURES_PATH = Path(os.environ.get("SECURITY_FIGURES") or ROOT / "test-artifacts" / "security-figures.json")

# A distinctive fake OpenAI key for this run: if it shows up anywhere but the secret, that is a leak.
CANARY_KEY = f"sk-leakcanary-{secrets.token_hex(20)}"
EVIDENCE.keys.add(CANARY_KEY)
# Every LocalSystem this suite started: their stand-ins minted tokens the scan must look for.
STANDINS: list[StandIn] = []
FUNCTION_LOG_LINES = {"count": 0}
_figures_lock = threading.Lock()


def masked_fragment(key: str) -> str:
    """What OpenAI's 401 message (and the stand-in's) quotes of a refused key."""
    return mask_key(key)


def record_figures(section: str, **values: Any) -> None:
    """Merge one test's figures into the figures file, with when and how they were produced."""
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    # Tests of this suite may run in two worker processes at once: one writer at a time, across processes too.
    with _figures_lock, open(FIGURES_PATH.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(FIGURES_PATH.read_text())
        except (OSError, ValueError):
            data = {}
        data[section] = {**values, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                         "command": " ".join(["pytest", *sys.argv[1:]])[:300]}
        FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def minted_tokens(standin: StandIn) -> set[str]:
    """Every token the stand-in minted, delivered to a caller or not."""
    return standin.registry.values()


class Caller:
    """An HTTP client for the local gateway whose every answer is kept for the leak scan."""

    def __init__(self, base_url: str, *, local_address: str | None = None, timeout: float = 30) -> None:
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self._client = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._client.request(method, path, **kwargs)
        keep(method, path, response)
        return response

    def post_token(self, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", "/token", **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def keep(method: str, path: str, response: Any) -> None:
    """Keep an httpx/requests-style answer for the leak scan (and its token for the session-end check)."""
    headers = response.headers
    if hasattr(headers, "multi_items"):  # httpx
        pairs = list(headers.multi_items())
    else:  # schemathesis: name -> [values]
        pairs = [(name, value) for name, values in headers.items()
                 for value in (values if isinstance(values, list) else [values])]
    path = urlsplit(path).path or path
    record_response(method, path, response.status_code, pairs, response.content)


# The stage's throttle (per route, a coarse shield in front of the function) lifted out of the way, for a test whose
# subject is the function's own answers and limits, not API Gateway's 429 {"message": "Too Many Requests"}.
UNTHROTTLED = {"ThrottleBurstLimit": "100000", "ThrottleRateLimit": "100000",
               "HangupThrottleBurstLimit": "100000", "HangupThrottleRateLimit": "100000"}


def start_system(parameters: dict[str, str], **kwargs: Any) -> LocalSystem:
    """The local system with the canary as the OpenAI key: in the secret and the only key the stand-in accepts."""
    system = LocalSystem(port=0, parameters=dict(parameters), **kwargs).start()
    assert system.standin is not None and system.stack is not None
    system.standin.client_secrets.api_key = CANARY_KEY
    system.client("secretsmanager").put_secret_value(SecretId=system.stack.physical_ids["OpenAIKeySecret"],
                                                     SecretString=json.dumps({"api_key": CANARY_KEY}))
    STANDINS.append(system.standin)
    return system


def stop_system(system: LocalSystem) -> None:
    """Stop it, keeping its function log lines and minted tokens as evidence."""
    standin = system.standin
    system.stop()  # the containers flush and close their logs on exit
    if standin is not None:
        EVIDENCE.tokens.update(minted_tokens(standin))
    if system.function_log.exists():
        lines = system.function_log.read_text(errors="replace").splitlines()
        EVIDENCE.lines.extend(lines)
        FUNCTION_LOG_LINES["count"] += len(lines)


def function_log_records(system: LocalSystem) -> list[dict[str, Any]]:
    records = []
    for line in system.function_log.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def percentile(values: list[float], q: float) -> float:
    """The benchmarks' percentile, rounded for the figures table (0 when nothing was measured)."""
    return round(nearest_rank(values, q), 1) if values else 0.0


def table_state(dynamodb: Any, table_name: str) -> dict[str, dict[str, int]]:
    """The limits table by kind: caller buckets and keys (`tat`), days (`issued`), and the kill switch."""
    state: dict[str, dict[str, int]] = {"bucket": {}, "key": {}, "day": {}, "control": {}}
    kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            pk = item["pk"]["S"]
            kind = pk.split("#", 1)[0]
            value = item.get("tat") or item.get("issued")
            state.setdefault(kind, {})[pk] = int(value["N"]) if value else 0
        if "LastEvaluatedKey" not in page:
            return state
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def utc_day_pks(started_ms: int, ended_ms: int) -> set[str]:
    """The `day#...` keys of every UTC day from `started_ms` to `ended_ms`: the only days the limiter may have
    charged for requests made between them. Tests read the day from the `day#...` items written, never from the
    clock: a run that crosses midnight UTC charges two days, and "today" at the end is not the day it began on."""
    first = datetime.fromtimestamp(started_ms / 1000, UTC).date()
    last = datetime.fromtimestamp(ended_ms / 1000, UTC).date()
    return {"day#" + (first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)}


def issued_by_day(state: dict[str, dict[str, int]], started_ms: int) -> dict[str, int]:
    """The tokens counted on each `day#...` item of the table (`table_state`), after checking that every such item
    is for a UTC day between `started_ms` and now."""
    days = state["day"]
    spanned = utc_day_pks(started_ms, now_ms())
    assert set(days) <= spanned, f"day items {sorted(days)} outside the days of the run {sorted(spanned)}"
    return days


def now_ms() -> int:
    return int(time.time() * 1000)


def env_flag(name: str, default: int) -> int:
    """A figure the CI can raise (e.g. SECURITY_FUZZ_REQUESTS=10000 for a longer fuzz run)."""
    return int(os.environ.get(name, default))
