"""Ephemeral tokens (`ek_...`) minted by the stand-in, and the sessions they are bound to."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_at: int
    session: dict  # the effective session object, as returned by client_secrets and sent in session.created


@dataclass
class TokenRegistry:
    """Thread-safe: the HTTP server and the tests read it from different threads."""

    clock: Callable[[], float] = time.time
    _tokens: dict[str, IssuedToken] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, session: dict, ttl_seconds: int) -> IssuedToken:
        value = "ek_" + secrets.token_hex(16)
        token = IssuedToken(value=value, expires_at=int(self.clock()) + ttl_seconds, session=session)
        with self._lock:
            self._tokens[value] = token
        return token

    def lookup(self, value: str) -> IssuedToken | None:
        """The token if it exists and has not expired; a token may start several sessions until then."""
        with self._lock:
            token = self._tokens.get(value)
        if token is None or self.clock() >= token.expires_at:
            return None
        return token

    def expire(self, value: str) -> None:
        """Make a token expire now (tests of expired tokens need not wait)."""
        with self._lock:
            token = self._tokens.get(value)
            if token is not None:
                self._tokens[value] = IssuedToken(token.value, int(self.clock()) - 1, token.session)

    def values(self) -> set[str]:
        """Every token minted so far, expired or not."""
        with self._lock:
            return set(self._tokens)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)
