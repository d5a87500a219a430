"""Calling OpenAI with the owner's key: one refresh of a rotated key, and OpenAI's failures as our answers.

What a failure becomes for the caller is decided here, once, for every OpenAI call the function makes.
"""

from __future__ import annotations

from collections.abc import Callable

from tokenvend.errors import ApiError, Code
from tokenvend.metric_names import UPSTREAM_ERRORS, UPSTREAM_LATENCY, tally
from tokenvend.observability import latency, logger
from tokenvend.openai_client import FailureKind, UpstreamFailure
from tokenvend.secret_store import SecretStore

_ANSWERS: dict[FailureKind, tuple[int, Code, str]] = {
    FailureKind.AUTH: (502, Code.UPSTREAM_AUTH, "OpenAI rejected this service's key. The owner must check it."),
    FailureKind.BUSY: (503, Code.UPSTREAM_BUSY, "OpenAI is busy or out of quota; try again shortly."),
    FailureKind.REJECTED: (502, Code.UPSTREAM_ERROR, "OpenAI refused the session configuration."),
    FailureKind.NOT_FOUND: (502, Code.UPSTREAM_ERROR, "OpenAI refused the session configuration."),
    FailureKind.ERROR: (502, Code.UPSTREAM_ERROR, "OpenAI returned an error; try again shortly."),
    FailureKind.UNREACHABLE: (502, Code.UPSTREAM_ERROR, "OpenAI could not be reached; try again shortly."),
    FailureKind.TIMEOUT: (504, Code.UPSTREAM_TIMEOUT, "OpenAI did not answer in time; try again shortly."),
}


def with_key_refresh[T](secrets: SecretStore, api_key: str, call: Callable[[str], T]) -> T:
    """`call(api_key)`; if OpenAI refuses the cached key, read the secret afresh and try once more. A failure left
    over is raised as the UpstreamFailure it is (the caller decides what it costs), its latency measured."""
    try:
        return call(api_key)
    except UpstreamFailure as failure:
        latency(UPSTREAM_LATENCY, failure.latency_ms)
        if failure.kind is not FailureKind.AUTH:
            raise
        # The cached key may have been rotated: read the secret afresh and try once more.
        logger.warning("OpenAI refused the cached key; refreshing it once", extra={"upstream": failure.detail})
    try:
        return call(secrets.refresh_openai_key())
    except UpstreamFailure as failure:
        latency(UPSTREAM_LATENCY, failure.latency_ms)
        raise


def as_api_error(failure: UpstreamFailure) -> ApiError:
    status, code, message = _ANSWERS[failure.kind]
    tally(UPSTREAM_ERRORS, kind=str(failure.kind))
    logger.error("OpenAI call failed", extra={"upstream_kind": str(failure.kind), "upstream": failure.detail})
    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
    return ApiError(status, code, message, headers)
