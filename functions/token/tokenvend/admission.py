"""Who is calling, from what API Gateway saw: an API-key caller or an anonymous one (see `caller`).

The caller goes into the request's log context as a salted hash, never as the key or the address. Errors raised
while serving a known caller carry that caller's RateLimit-* headers, so a client always learns its allowance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tokenvend.caller import Caller, identify
from tokenvend.errors import ApiError
from tokenvend.limiter import Limiter
from tokenvend.observability import logger
from tokenvend.secret_store import SecretStore


@dataclass(frozen=True)
class RequestFacts:
    """What the edge knows about who asks. Never a header the client could set to be someone else."""

    authorization: str | None
    source_ip: str


class Admission:
    def __init__(self, secrets: SecretStore, limiter: Limiter, *, allow_anonymous: bool) -> None:
        self._secrets = secrets
        self._limiter = limiter
        self._allow_anonymous = allow_anonymous

    def identify(self, facts: RequestFacts) -> Caller:
        caller = identify(facts.authorization, facts.source_ip, self._secrets.hash_salt(),
                          allow_anonymous=self._allow_anonymous)
        logger.append_keys(caller=caller.hash, caller_kind=str(caller.kind))
        return caller

    @contextmanager
    def allowance_on_error(self, caller: Caller) -> Iterator[None]:
        try:
            yield
        except ApiError as error:
            if "RateLimit-Limit" not in error.headers:
                error.headers = {**error.headers, **self._limiter.allowance(caller).headers()}
            raise
