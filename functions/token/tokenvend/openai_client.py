"""Our HTTP calls to OpenAI, through one httpx client reused across invocations (a warm function keeps its TLS
connection).

Retry policy: one quick retry on a connection error or a 5xx, none on a 4xx (the same request would fail the same
way) and none on a read timeout (a second wait would blow the caller's time budget). Failures come out as
`UpstreamFailure` with a kind the caller maps to an HTTP answer; OpenAI's own error body never leaves this module
except as a short, key-free summary for the log. Every answer, good or bad, carries how long OpenAI took.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, NamedTuple

import httpx

RETRY_PAUSE_SECONDS = 0.2
MAX_RETRY_AFTER_SECONDS = 60


class FailureKind(StrEnum):
    AUTH = "auth"  # 401/403: the key is wrong, revoked or lacks access
    BUSY = "busy"  # 429: OpenAI rate limit or quota
    REJECTED = "rejected"  # another 4xx: OpenAI refused what we sent
    NOT_FOUND = "not_found"  # 404: the thing we named (a call) does not exist, or no longer
    ERROR = "error"  # 5xx or an answer we cannot use
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"


class UpstreamFailure(Exception):
    def __init__(self, kind: FailureKind, status: int | None, detail: str, retry_after: int | None = None,
                 latency_ms: float = 0.0, param: str | None = None, *, may_have_acted: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.status = status
        self.detail = detail  # safe for logs: status, OpenAI's error code/param/type, never a key or token
        self.retry_after = retry_after
        self.latency_ms = latency_ms
        self.param = param  # the request field OpenAI's error names, if any
        # Whether OpenAI may have done what was asked although we got no usable answer (a timeout or a lost
        # connection after the request went out, a gateway's 502/504, a 2xx we cannot read): a call may exist.
        self.may_have_acted = may_have_acted


class ClientSecret(NamedTuple):
    value: str
    expires_at: int


class Timed[T](NamedTuple):
    """A result and how long OpenAI took to give it (all attempts)."""

    value: T
    latency_ms: float


class OpenAIClient:
    def __init__(self, base_url: str, timeout_seconds: float = 10.0, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        timeout = httpx.Timeout(timeout_seconds, connect=min(3.0, timeout_seconds))
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)

    def create_client_secret(self, api_key: str, body: dict[str, Any], safety_identifier: str) -> Timed[ClientSecret]:
        """`POST /realtime/client_secrets`: an ephemeral `ek_` token bound to the session in `body`."""
        response = self.post("/realtime/client_secrets", api_key, safety_identifier, json=body,
                             headers={"Accept": "application/json"})
        return Timed(_client_secret(response.value), response.latency_ms)

    def post(self, path: str, api_key: str, safety_identifier: str | None = None, *, may_repeat: bool = True,
             **request: Any) -> Timed[httpx.Response]:
        """A 2xx answer, or UpstreamFailure. One retry on a 5xx, a connect timeout or a connection error.

        `may_repeat=False` is for a request that must not reach OpenAI twice: a call created twice leaves one that
        nobody leashes. Then a connection lost once the request may have been sent (dropped, reset, no answer) is
        not retried, nor a 502 or 504 (a gateway's answer: what stood behind it may have acted); a connection that
        was never made is, and OpenAI's own 500 or 503."""
        headers = {"Authorization": f"Bearer {api_key}", **request.pop("headers", {})}
        if safety_identifier:
            headers["OpenAI-Safety-Identifier"] = safety_identifier
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        for attempt in (1, 2):
            try:
                response = self._http.post(f"{self.base_url}{path}", headers=headers, **request)
            except httpx.TimeoutException as exc:
                never_sent = isinstance(exc, httpx.ConnectTimeout)
                if never_sent and attempt == 1:
                    time.sleep(RETRY_PAUSE_SECONDS)
                    continue
                raise UpstreamFailure(FailureKind.TIMEOUT, None, type(exc).__name__, latency_ms=elapsed(),
                                      may_have_acted=not never_sent) from None
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError)
                if attempt == 1 and (may_repeat or never_sent):
                    time.sleep(RETRY_PAUSE_SECONDS)
                    continue
                raise UpstreamFailure(FailureKind.UNREACHABLE, None, type(exc).__name__, latency_ms=elapsed(),
                                      may_have_acted=not never_sent) from None
            if response.status_code >= 500 and attempt == 1 and (may_repeat or response.status_code in (500, 503)):
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            if response.is_success:
                return Timed(response, elapsed())
            raise _failure(response, elapsed())
        raise AssertionError("unreachable")  # pragma: no cover


def _client_secret(response: httpx.Response) -> ClientSecret:
    status = response.status_code
    if status != 200:
        raise UpstreamFailure(FailureKind.ERROR, status, f"{status} where 200 was expected")
    try:
        data = response.json()
        value, expires_at = data["value"], data["expires_at"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamFailure(FailureKind.ERROR, status, "200 without a usable value/expires_at") from None
    if not isinstance(value, str) or not value or not isinstance(expires_at, int) or isinstance(expires_at, bool):
        raise UpstreamFailure(FailureKind.ERROR, status, "200 with a malformed value/expires_at")
    return ClientSecret(value=value, expires_at=expires_at)


def failure_kind(status: int) -> FailureKind:
    """What an error status from OpenAI means for us, whichever of its APIs answered."""
    if status in (401, 403):
        return FailureKind.AUTH
    if status == 429:
        return FailureKind.BUSY
    if status == 404:
        return FailureKind.NOT_FOUND
    return FailureKind.REJECTED if 400 <= status < 500 else FailureKind.ERROR


def _failure(response: httpx.Response, latency_ms: float) -> UpstreamFailure:
    status = response.status_code
    kind = failure_kind(status)
    if kind is FailureKind.AUTH:
        # OpenAI's 401 message quotes part of the key: keep only the status.
        return UpstreamFailure(kind, status, f"{status}", latency_ms=latency_ms)
    detail = f"{status} {_error_summary(response)}"
    if kind is FailureKind.BUSY:
        return UpstreamFailure(kind, status, detail, _retry_after(response), latency_ms)
    param = _error_param(response) if kind is FailureKind.REJECTED else None
    # OpenAI's own 500 and 503 say it failed; a 502 or 504 is a gateway's, and what stood behind it may have acted.
    return UpstreamFailure(kind, status, detail, latency_ms=latency_ms, param=param,
                           may_have_acted=status in (502, 504))


def _error_summary(response: httpx.Response) -> str:
    """OpenAI's error type/code/param and message: enough to diagnose a misconfiguration from the log."""
    try:
        error = response.json()["error"]
        parts = [str(error.get(k)) for k in ("type", "code", "param") if error.get(k)]
        message = str(error.get("message", ""))[:200]
        return " ".join([*parts, message]).strip()
    except (ValueError, KeyError, TypeError, AttributeError):
        return "(no error body)"


def _error_param(response: httpx.Response) -> str | None:
    try:
        param = response.json()["error"]["param"]
    except (ValueError, KeyError, TypeError):
        return None
    return param if isinstance(param, str) else None


def _retry_after(response: httpx.Response) -> int:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        seconds = 5
    return max(1, min(MAX_RETRY_AFTER_SECONDS, round(seconds)))
