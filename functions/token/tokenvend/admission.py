"""Who is calling, from what API Gateway saw (an API-key caller or an anonymous one, see `caller`), and what they
are charged for a token OpenAI mints for them.

The caller goes into the request's log context as a salted hash, never as the key or the address. Errors raised
while serving a known caller carry that caller's RateLimit-* headers, so a client always learns its allowance.
The order of `create_metered` (the token route's; calls have their own sequence in `calls`) is the spend guarantee:
the key is read before anything is charged (a misconfigured stack charges nobody), the charge comes before OpenAI
is called (nothing is created unmetered), and anything that fails after the charge gives it back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

from tokenvend.caller import Caller, CallerKind, caller_hash, identify, user_identity
from tokenvend.errors import ApiError, Code
from tokenvend.limiter import Grant, Limiter, Spend
from tokenvend.observability import logger
from tokenvend.openai_client import UpstreamFailure
from tokenvend.secret_store import SecretStore
from tokenvend.upstream import as_api_error, with_key_refresh

# A `sub` is an identifier, not a document: OIDC says at most 255 ASCII characters.
MAX_SUB_LENGTH = 255


class RequestFacts(NamedTuple):
    """What the edge knows about who asks. Never a header the client could set to be someone else: `claims` are
    those of a token API Gateway's JWT authorizer checked (only on the signed-in users' route)."""

    authorization: str | None
    source_ip: str
    claims: Mapping[str, str] | None = None


class Admission:
    def __init__(self, secrets: SecretStore, limiter: Limiter, *, allow_anonymous: bool,
                 jwt_issuer: str | None = None) -> None:
        self._secrets = secrets
        self._limiter = limiter
        self._allow_anonymous = allow_anonymous
        self._jwt_issuer = jwt_issuer

    def identify(self, facts: RequestFacts) -> Caller:
        if facts.claims is not None:
            caller = self._signed_in(facts.claims)
        else:
            caller = identify(facts.authorization, facts.source_ip, self._secrets.hash_salt(),
                              allow_anonymous=self._allow_anonymous)
        logger.append_keys(caller=caller.hash, caller_kind=str(caller.kind))
        return caller

    def _signed_in(self, claims: Mapping[str, str]) -> Caller:
        """The user is the token's `sub`. API Gateway checked the token; the issuer is checked once more, so a
        route wired to the wrong authorizer cannot let another issuer's users in."""
        sub, issuer = claims.get("sub"), claims.get("iss")
        if (self._jwt_issuer is None or issuer != self._jwt_issuer or not isinstance(sub, str) or not sub
                or len(sub) > MAX_SUB_LENGTH):
            raise ApiError(401, Code.INVALID_API_KEY, "The sign-in token was not accepted.",
                           {"WWW-Authenticate": "Bearer"})
        return Caller(CallerKind.USER, caller_hash(self._secrets.hash_salt(), user_identity(sub)))

    def create_metered[T](self, caller: Caller, spend: Spend, create: Callable[[str], T]) -> tuple[T, Grant]:
        """`create(api_key)` at OpenAI, charged to the caller and the day; given back if it failed."""
        api_key = self._secrets.openai_key()
        grant = self._limiter.acquire(caller, spend)
        try:
            return with_key_refresh(self._secrets, api_key, create), grant
        except UpstreamFailure as failure:
            self._limiter.release(grant)
            raise as_api_error(failure) from None
        except Exception:
            # A token minted but never handed out can start nothing: giving the charge back costs nothing.
            self._limiter.release(grant)
            raise

    @contextmanager
    def allowance_on_error(self, caller: Caller) -> Iterator[None]:
        try:
            yield
        except ApiError as error:
            if "RateLimit-Limit" not in error.headers:
                error.headers = {**error.headers, **self._limiter.allowance(caller).headers()}
            raise
