"""Sustained concurrent load through the local gateway (loopback only), bounded in count and time, with small
limits: no 5xx, and exactly as many tokens as the limits allow, not one more.

8 threads: 4 share one anonymous caller (a real compare-and-set storm on one bucket, across the function's
containers), 4 each have their own API key. Their buckets add up to more than the global daily cap, so the cap is
the bound: exactly `GLOBAL_CAP` tokens are issued, no caller gets more than its burst, every refusal is a clean 429.
The cap is per UTC day: the count is read from the `day#...` items the run wrote, and a run that crosses midnight
(two items) is held to the cap on each day and to the callers' bursts in all.
The handler's latency comes from its own log lines (`latency_ms`); the client's is measured around each call.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from local.system import LocalSystem
from tests.integration.harness import EVIDENCE
from tests.integration.security.security_support import (
    UNTHROTTLED,
    Caller,
    env_flag,
    function_log_records,
    issued_by_day,
    now_ms,
    percentile,
    record_figures,
    start_system,
    stop_system,
    table_state,
)
from tokenvend.api_keys import ApiKeyStore

THREADS = 8
REQUESTS_PER_THREAD = env_flag("SECURITY_LOAD_REQUESTS_PER_THREAD", 250)
TIME_LIMIT_SECONDS = 45.0  # about 16 s on an idle machine; headroom for a loaded CI host
ANON_BURST, KEY_BURST, GLOBAL_CAP = 5, 10, 42  # 5 + 4 x 10 = 45 > 42: the global cap binds
PARAMETERS = {**UNTHROTTLED, "EnableTokenRoute": "true",
              "AnonymousBurst": str(ANON_BURST), "AnonymousRatePerHour": "1", "ApiKeyBurst": str(KEY_BURST),
              "ApiKeyRatePerHour": "1", "GlobalDailyLimit": str(GLOBAL_CAP),
              # Lanes as large as the day (tokens follow the lanes' shares): the global cap is what binds here.
              "AnonymousDailyCallMinutes": "60", "ApiKeyDailyCallMinutes": "60"}


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    running = start_system(PARAMETERS, containers=2)
    try:
        yield running
    finally:
        stop_system(running)


def test_sustained_load_issues_exactly_the_bound(system: LocalSystem) -> None:
    store = ApiKeyStore(system.client("dynamodb"), system.stack.table_name)
    keys = [store.create(f"load-{i}")[0] for i in range(4)]
    EVIDENCE.keys.update(keys)  # our API keys are secrets too: the leak scan looks for them
    callers = ["anonymous"] * 4 + keys
    outcomes: Counter[tuple[str, int, str]] = Counter()
    latencies: list[float] = []
    tokens: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    def worker(identity: str) -> None:
        headers = {} if identity == "anonymous" else {"Authorization": f"Bearer {identity}"}
        label = "anonymous" if identity == "anonymous" else f"key-{keys.index(identity)}"
        with Caller(system.api_url, local_address="127.0.0.30") as client:
            for _ in range(REQUESTS_PER_THREAD):
                if time.monotonic() > deadline:
                    return
                started = time.perf_counter()
                response = client.post_token(headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                code = response.json()["error"]["code"] if response.status_code != 200 else "issued"
                with lock:
                    latencies.append(elapsed)
                    outcomes[(label, response.status_code, code)] += 1
                    if response.status_code == 200:
                        tokens.append(response.json()["token"])

    started_ms, started = now_ms(), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(identity,)) for identity in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started

    sent = sum(outcomes.values())
    statuses = Counter()
    per_caller = Counter()
    for (label, status, code), n in outcomes.items():
        statuses[f"{status} {code}"] += n
        if status == 200:
            per_caller[label] += n
    handler_ms = [float(r["latency_ms"]) for r in function_log_records(system)
                  if r.get("path") == "/token" and "latency_ms" in r]
    handler_issued_ms = [float(r["latency_ms"]) for r in function_log_records(system)
                         if r.get("path") == "/token" and r.get("decision") == "issued"]
    state = table_state(system.client("dynamodb"), system.stack.table_name)
    days = issued_by_day(state, started_ms)
    figures = {
        "threads": THREADS, "requests": sent, "seconds": round(seconds, 1),
        "requests_per_second": round(sent / seconds, 1), "statuses": dict(statuses),
        "issued": len(tokens), "bound": GLOBAL_CAP, "issued_per_caller": dict(per_caller),
        "client_latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "handler_latency_ms": {"p50": percentile(handler_ms, 50), "p99": percentile(handler_ms, 99),
                               "invocations": len(handler_ms)},
        "handler_latency_issued_ms": {"p50": percentile(handler_issued_ms, 50),
                                      "p99": percentile(handler_issued_ms, 99)},
        "containers": 2,
    }
    record_figures("load", **figures)
    print(f"\nload: {figures}")

    assert sent == THREADS * REQUESTS_PER_THREAD, f"only {sent} requests within {TIME_LIMIT_SECONDS} s"
    assert not any(status >= 500 for (_, status, _) in outcomes), dict(outcomes)
    assert {(status, code) for (_, status, code) in outcomes} <= {
        (200, "issued"), (429, "rate_limited"), (429, "daily_budget_exhausted")}
    assert len(tokens) == len(set(tokens)) == sum(days.values()), f"the day items {days} count every token issued"
    assert all(n <= GLOBAL_CAP for n in days.values()), f"a day's count above the cap: {days}"
    # Every caller asks far beyond its burst, so the run ends with each bucket spent or the day's cap reached.
    if len(days) == 1:
        assert len(tokens) == GLOBAL_CAP, "exactly the global cap, not one more"
    else:  # across midnight UTC: each day has its own cap; the bursts still bound the run
        assert GLOBAL_CAP <= len(tokens) <= ANON_BURST + 4 * KEY_BURST, days
    assert per_caller["anonymous"] <= ANON_BURST, "four threads on one bucket never beat its burst"
    assert all(per_caller[f"key-{i}"] <= KEY_BURST for i in range(4))
    assert len(handler_ms) >= sent
