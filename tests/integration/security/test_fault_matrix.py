"""The fault matrix: every way OpenAI, the key's secret or DynamoDB can fail, one row each, through the real handler
(moto over HTTP, the OpenAI stand-in over HTTP). Each row asserts the answer (status, code, error shape), that no
token and no key reaches the caller or the logs, how many calls OpenAI got, and what happened to the caller's and
the global budget, read from the table itself: the caller's `bucket#...` item (`tat`) and the `day#...` items
(`issued`) the request wrote, whichever UTC day they are for (a row run across midnight charges the day it began in).

Budget outcomes: `untouched` (nothing written: the failure came before the limiter), `released` (charged, then given
back: the bucket is full again and the day's count is 0), `charged` (one token issued).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from local.openai_standin.client_secrets import Fault
from local.openai_standin.server import StandIn
from local.template_stack import LocalStack
from tests.integration.harness import EVIDENCE, TokenApi, body_of, load_token_app
from tests.integration.security.security_support import (
    CANARY_KEY,
    issued_by_day,
    masked_fragment,
    minted_tokens,
    now_ms,
    record_figures,
    table_state,
)
from tokenvend.api_keys import ApiKeyLookup, ApiKeyStore
from tokenvend.caller import identify
from tokenvend.limiter import MAX_ATTEMPTS, Limiter, Spend

CALLER_IP = "198.51.100.77"
RESULTS: list[dict[str, Any]] = []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- DynamoDB faults, applied to the loaded handler's own client --------------------------------------------

class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def throttle_transactions(api: TokenApi) -> dict[str, int]:
    """DynamoDB answers every TransactWriteItems with HTTP 400 ThrottlingException (botocore retries it)."""
    seen = {"attempts": 0}

    def answer(request: Any, **_: Any) -> AWSResponse:
        seen["attempts"] += 1
        body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))

    api.module.services.dynamodb.meta.events.register("before-send.dynamodb.TransactWriteItems", answer)
    return seen


def dynamodb_unreachable(api: TokenApi) -> dict[str, int]:
    """Every DynamoDB request the function sends is sent to a closed port, with the handler's own timeouts and
    retries."""
    dead = f"http://127.0.0.1:{_closed_port()}"

    def redirect(request: Any, **_: Any) -> None:
        request.url = dead + request.url[request.url.index("/", len("http://")):]

    api.module.services.dynamodb.meta.events.register("before-send.dynamodb.*", redirect)
    return {}


def pause_issuing(api: TokenApi) -> dict[str, int]:
    api.dynamodb.put_item(TableName=api.stack.table_name, Item={"pk": {"S": "control"}, "paused": {"BOOL": True}})
    return {}


def secrets_manager_unreachable(api: TokenApi) -> dict[str, int]:
    from botocore.exceptions import EndpointConnectionError

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://secretsmanager.invalid")

    api.module.services.secretsmanager.meta.events.register("before-call.secrets-manager.GetSecretValue",
                                                                  refuse)
    return {}


# --- the rows -----------------------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    status: int
    code: str
    upstream_calls: int | None  # None: the stand-in cannot record it (no answer); every fault must be used up
    budget: str  # untouched | released | charged
    faults: Callable[[], list[Fault]] = list
    env: dict[str, str] = field(default_factory=dict)
    secret: str | None = "canary"  # what the OpenAI key secret holds; None: the function points at no secret
    prepare: Callable[[TokenApi], dict[str, int]] | None = None
    key_reads: int | None = None  # GetSecretValue calls for the OpenAI key during the request
    retry_after: str | None = None
    settle: bool = False  # the stand-in is still answering after the handler gave up: wait for it to finish


ROWS = [
    Row("openai-400", 502, "upstream_error", 1, "released", lambda: [Fault(status=400)], key_reads=1),
    Row("openai-401", 502, "upstream_auth", 2, "released", lambda: [Fault(status=401, times=2)], key_reads=2),
    Row("openai-403", 502, "upstream_auth", 2, "released", lambda: [Fault(status=403, times=2)], key_reads=2),
    Row("openai-429", 503, "upstream_busy", 1, "released",
        lambda: [Fault(status=429, headers={"Retry-After": "7"})], key_reads=1, retry_after="7"),
    Row("openai-500", 502, "upstream_error", 2, "released", lambda: [Fault(status=500, times=2)], key_reads=1),
    Row("openai-503", 502, "upstream_error", 2, "released", lambda: [Fault(status=503, times=2)], key_reads=1),
    Row("openai-timeout", 504, "upstream_timeout", None, "released",
        lambda: [Fault(status=200, delay_seconds=1.2)], env={"OPENAI_TIMEOUT_SECONDS": "0.4"}, key_reads=1,
        settle=True),
    Row("openai-connection-dropped", 502, "upstream_error", None, "released", lambda: [Fault(drop=True, times=2)],
        key_reads=1),
    Row("openai-connection-refused", 502, "upstream_error", 0, "released", env={"OPENAI_BASE_URL": "closed"},
        key_reads=1),
    Row("openai-200-malformed-json", 502, "upstream_error", 1, "released",
        lambda: [Fault(status=200, body='{"value": "ek_leakcanary_malformed", ')], key_reads=1),
    Row("openai-200-without-value", 502, "upstream_error", 1, "released",
        lambda: [Fault(status=200, body={"expires_at": 1, "session": {},
                                         "client_secret": {"value": "ek_leakcanary_nested"}})], key_reads=1),
    Row("openai-200-value-not-a-string", 502, "upstream_error", 1, "released",
        lambda: [Fault(status=200, body={"value": ["ek_leakcanary_list"], "expires_at": 1})], key_reads=1),
    Row("secret-missing", 500, "not_configured", 0, "untouched", secret=None),
    Row("secret-empty", 500, "not_configured", 0, "untouched", secret='{"api_key": ""}'),
    Row("secret-malformed", 500, "not_configured", 0, "untouched", secret='{"api_key": "' + CANARY_KEY + '"'),
    Row("secret-key-with-spaces", 500, "not_configured", 0, "untouched", secret=f"{CANARY_KEY} {CANARY_KEY}"),
    Row("secrets-manager-unreachable", 503, "secrets_unavailable", 0, "untouched", prepare=secrets_manager_unreachable,
        retry_after="2"),
    Row("dynamodb-throttled", 503, "limiter_unavailable", 0, "untouched", prepare=throttle_transactions,
        retry_after="2"),
    Row("dynamodb-unreachable", 503, "limiter_unavailable", 0, "untouched", prepare=dynamodb_unreachable,
        retry_after="2"),
    Row("kill-switch-on", 503, "issuing_paused", 0, "untouched", prepare=pause_issuing, retry_after="60"),
    Row("global-cap-zero", 429, "daily_budget_exhausted", 0, "untouched", env={"GLOBAL_DAILY_LIMIT": "0"}),
    Row("healthy", 200, "", 1, "charged", key_reads=1),
]


@pytest.fixture
def canary_standin(fresh_standin: StandIn) -> Iterator[StandIn]:
    """The session's stand-in, accepting only this run's canary key."""
    fresh_standin.client_secrets.api_key = CANARY_KEY
    before = minted_tokens(fresh_standin)
    yield fresh_standin
    fresh_standin.client_secrets.api_key = fresh_standin.api_key
    EVIDENCE.tokens.update(minted_tokens(fresh_standin) - before)


def _load(stack: LocalStack, standin: StandIn, monkeypatch: pytest.MonkeyPatch, secret: str | None,
          env: dict[str, str]) -> TokenApi:
    overrides = dict(env)
    if overrides.get("OPENAI_BASE_URL") == "closed":
        overrides["OPENAI_BASE_URL"] = f"http://127.0.0.1:{_closed_port()}/v1"
    if "OPENAI_TIMEOUT_SECONDS" in overrides:  # not a template variable: set it so that it is restored after
        monkeypatch.setenv("OPENAI_TIMEOUT_SECONDS", overrides.pop("OPENAI_TIMEOUT_SECONDS"))
    else:
        monkeypatch.delenv("OPENAI_TIMEOUT_SECONDS", raising=False)
    if secret is None:
        overrides["OPENAI_SECRET_ARN"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret"
    api = load_token_app(stack, standin, **overrides)
    if secret is not None:
        value = CANARY_KEY if secret == "canary" else secret
        api.secrets.put_secret_value(SecretId=stack.physical_ids["OpenAIKeySecret"], SecretString=value)
    return api


def _count_key_reads(api: TokenApi) -> list[str]:
    reads: list[str] = []
    key_arn = api.module.settings.openai_secret_id

    def seen(params: dict[str, Any], **_: Any) -> None:
        if params.get("SecretId") == key_arn:
            reads.append(key_arn)

    events = api.module.services.secretsmanager.meta.events
    events.register("provide-client-params.secrets-manager.GetSecretValue", seen)
    return reads


def _assert_nothing_leaks(response_text: str, lines: list[str], tokens: set[str]) -> None:
    secrets = [CANARY_KEY, masked_fragment(CANARY_KEY), CANARY_KEY[-16:], "ek_leakcanary"]
    for secret in secrets:
        assert secret not in response_text, f"{secret[:10]}... in the answer"
        assert not any(secret in line for line in lines), f"{secret[:10]}... in a log line"
    for token in tokens:
        assert not any(token in line for line in lines), "a minted token in a log line"


def _assert_budget(api: TokenApi, expected: str, started_ms: int) -> dict[str, Any]:
    state = table_state(api.dynamodb, api.stack.table_name)
    # One request charges one day, the day it was granted on, and a give-back goes to that same day: so there is
    # exactly one day item, whatever the date, unless nothing was charged at all.
    buckets, days = state["bucket"], list(issued_by_day(state, started_ms).values())
    if expected == "untouched":
        assert buckets == {} and days == [], (buckets, days)
    elif expected == "released":
        assert len(buckets) == 1 and days == [0], (buckets, days)
        tat = next(iter(buckets.values()))
        assert tat <= now_ms(), "the caller's bucket is full again: the failed mint was given back"
    else:
        assert len(buckets) == 1 and days == [1], (buckets, days)
        assert next(iter(buckets.values())) > started_ms, "the caller was charged one token"
    return {"caller_buckets": len(buckets), "issued_today": days[0] if days else None}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault_row(row: Row, stack: LocalStack, canary_standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    api = _load(stack, canary_standin, monkeypatch, row.secret, row.env)
    for fault in row.faults():
        canary_standin.faults.add(fault)
    reads = _count_key_reads(api)
    if row.prepare:
        row.prepare(api)
    minted_before = minted_tokens(canary_standin)
    lines_before = len(EVIDENCE.lines)
    started = now_ms()

    response = api.call("POST", "/token", source_ip=CALLER_IP)

    text = response.body.decode() + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers)
    assert response.status == row.status, text
    assert response.header("cache-control") == "no-store"
    minted = minted_tokens(canary_standin) - minted_before
    lines = EVIDENCE.lines[lines_before:]
    if row.status == 200:
        token = body_of(response)["token"]
        assert minted == {token}
        _assert_nothing_leaks(text.replace(token, ""), lines, minted)
    else:
        error = body_of(response)
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}
        assert error["error"]["code"] == row.code
        assert "Injected" not in error["error"]["message"]
        assert "ek_" not in text, "no token in an error answer"
        _assert_nothing_leaks(text, lines, minted)
    if row.upstream_calls is None:
        assert canary_standin.faults.take() is None, "every injected fault was met (one try, or a try and a retry)"
    else:
        assert len(canary_standin.requests) == row.upstream_calls
    if row.settle:  # so that its late answer is not counted in the next row
        deadline = time.monotonic() + 5
        while not canary_standin.requests and time.monotonic() < deadline:
            time.sleep(0.05)
    if row.retry_after is not None:
        assert response.header("retry-after") == row.retry_after
    if row.key_reads is not None:
        assert len(reads) == row.key_reads, f"{len(reads)} reads of the key secret"
    budget = _assert_budget(api, row.budget, started)
    RESULTS.append({"row": row.id, "status": row.status, "code": row.code or "issued", "budget": row.budget,
                    "upstream_calls": row.upstream_calls, **budget})


# --- the key rotated mid-run ---------------------------------------------------------------------------------

def test_rotated_key_is_used_after_the_cache_time_without_a_401(stack: LocalStack, canary_standin: StandIn,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api = _load(stack, canary_standin, monkeypatch, "canary", {"SECRET_CACHE_SECONDS": "1"})
    started = now_ms()
    assert api.call("POST", "/token", source_ip=CALLER_IP).status == 200
    rotated = f"sk-leakcanary-rotated-{CANARY_KEY[-12:]}"
    EVIDENCE.keys.add(rotated)
    api.secrets.put_secret_value(SecretId=stack.physical_ids["OpenAIKeySecret"], SecretString=rotated)
    canary_standin.client_secrets.api_key = rotated  # OpenAI now takes only the new key
    time.sleep(1.2)
    response = api.call("POST", "/token", source_ip=CALLER_IP)
    assert response.status == 200
    assert [r.authorized for r in canary_standin.requests] == [True, True], "no 401: the new key was read in time"
    state = table_state(api.dynamodb, stack.table_name)
    assert sum(issued_by_day(state, started).values()) == 2
    RESULTS.append({"row": "secret-rotated-after-cache-time", "status": 200, "code": "issued", "budget": "charged",
                    "upstream_calls": 2, "issued_today": 2})


def test_rotated_key_a_401_triggers_exactly_one_refresh(stack: LocalStack, canary_standin: StandIn,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    api = _load(stack, canary_standin, monkeypatch, "canary", {"SECRET_CACHE_SECONDS": "300"})
    reads = _count_key_reads(api)
    assert api.call("POST", "/token", source_ip=CALLER_IP).status == 200
    assert len(reads) == 1
    rotated = f"sk-leakcanary-rotated-{CANARY_KEY[-12:]}"
    EVIDENCE.keys.add(rotated)
    api.secrets.put_secret_value(SecretId=stack.physical_ids["OpenAIKeySecret"], SecretString=rotated)
    canary_standin.client_secrets.api_key = rotated
    lines_before = len(EVIDENCE.lines)
    response = api.call("POST", "/token", source_ip="198.51.100.78")
    assert response.status == 200
    assert [r.authorized for r in canary_standin.requests] == [True, False, True]
    assert len(reads) == 2, "exactly one refresh of the secret"
    # The refused (old) key's masked fragment, quoted by OpenAI's 401, reaches no log line.
    _assert_nothing_leaks("", EVIDENCE.lines[lines_before:], set())
    # A third caller: the refreshed key is cached, no more reads.
    assert api.call("POST", "/token", source_ip="198.51.100.79").status == 200
    assert len(reads) == 2
    RESULTS.append({"row": "secret-rotated-401-one-refresh", "status": 200, "code": "issued", "budget": "charged",
                    "upstream_calls": 2, "issued_today": 3})


def test_key_refused_even_after_the_refresh_is_502_and_released(stack: LocalStack, canary_standin: StandIn,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    api = _load(stack, canary_standin, monkeypatch, "canary", {})
    canary_standin.client_secrets.api_key = "sk-fake-other-key-the-owner-forgot"
    reads = _count_key_reads(api)
    lines_before = len(EVIDENCE.lines)
    started = now_ms()
    response = api.call("POST", "/token", source_ip=CALLER_IP)
    assert response.status == 502 and body_of(response)["error"]["code"] == "upstream_auth"
    assert [r.authorized for r in canary_standin.requests] == [False, False]
    assert len(reads) == 2, "one read, one refresh, no loop"
    _assert_nothing_leaks(response.body.decode(), EVIDENCE.lines[lines_before:], set())
    _assert_budget(api, "released", started)
    RESULTS.append({"row": "secret-refused-after-refresh", "status": 502, "code": "upstream_auth",
                    "budget": "released", "upstream_calls": 2, "issued_today": 0})


# --- conditional-check and conflict storms ------------------------------------------------------------------

def test_conditional_check_storm_never_issues_more_than_the_burst(stack: LocalStack, canary_standin: StandIn,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before each of our first transactions another container takes a token for the same caller, so our
    compare-and-set fails for real (ConditionalCheckFailed in moto) and is retried with the fresh state."""
    burst, steals = 5, 4
    api = _load(stack, canary_standin, monkeypatch, "canary", {"ANONYMOUS_BURST": str(burst)})
    module = api.module
    salt = api.secrets.get_secret_value(SecretId=stack.physical_ids["HashSaltSecret"])["SecretString"]
    caller = identify(None, CALLER_IP, salt.strip().encode(), allow_anonymous=True)
    dynamodb = boto3.client("dynamodb")
    competitor = Limiter(dynamodb, stack.table_name, module.settings.limits,
                         ApiKeyLookup(ApiKeyStore(dynamodb, stack.table_name)))
    stolen = {"n": 0, "transactions": 0}

    def steal_first(**_: Any) -> None:
        stolen["transactions"] += 1
        if stolen["n"] < steals:
            stolen["n"] += 1
            competitor.acquire(caller, Spend.token(module.settings.limits))

    module.services.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", steal_first)
    started = now_ms()
    statuses = [api.call("POST", "/token", source_ip=CALLER_IP).status for _ in range(3)]
    assert statuses == [200, 429, 429], statuses
    assert stolen == {"n": steals, "transactions": steals + 1}, "each stolen slot cost one retry, no more"
    state = table_state(api.dynamodb, stack.table_name)
    issued = sum(issued_by_day(state, started).values())
    assert issued == burst, "ours (1) + the competitor's (4) == the burst, never more"
    assert len(canary_standin.requests) == 1
    RESULTS.append({"row": "conditional-check-storm", "status": 200, "code": "issued", "budget": "charged",
                    "upstream_calls": 1, "issued_today": burst})


@pytest.mark.parametrize(("conflicts", "status"), [(3, 200), (MAX_ATTEMPTS, 429)])
def test_transaction_conflict_storm(stack: LocalStack, canary_standin: StandIn, monkeypatch: pytest.MonkeyPatch,
                                    conflicts: int, status: int) -> None:
    """DynamoDB cancels our transactions with TransactionConflict: retried with jitter up to MAX_ATTEMPTS, then a
    clean 429 with nothing charged."""
    api = _load(stack, canary_standin, monkeypatch, "canary", {})
    seen = {"n": 0}

    def conflict(**_: Any) -> None:
        seen["n"] += 1
        if seen["n"] <= conflicts:
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                               "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"},
                                                       {"Code": "None"}]}, "TransactWriteItems")

    api.module.services.dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", conflict)
    started = now_ms()
    response = api.call("POST", "/token", source_ip=CALLER_IP)
    assert response.status == status
    if status == 429:
        assert body_of(response)["error"]["code"] == "rate_limited"
        assert response.header("retry-after") == "1"
        _assert_budget(api, "untouched", started)
        assert canary_standin.requests == []
    else:
        _assert_budget(api, "charged", started)
    RESULTS.append({"row": f"transaction-conflict-x{conflicts}", "status": status,
                    "code": "issued" if status == 200 else "rate_limited",
                    "budget": "charged" if status == 200 else "untouched",
                    "upstream_calls": 1 if status == 200 else 0})


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    started = time.perf_counter()
    yield
    record_figures("fault_matrix", rows_passed=len(RESULTS), rows=RESULTS,
                   seconds=round(time.perf_counter() - started, 1))


