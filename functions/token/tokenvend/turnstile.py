"""Cloudflare Turnstile's server-side check: an anonymous caller's `turnstile_token` verified at siteverify before
anything is charged.

Everything a caller did wrong (no token, a malformed, expired, reused or foreign token) is `403 turnstile_failed`;
everything that is not the caller's doing (Cloudflare slow, down or answering nonsense, our own secret refused) is
`503 turnstile_unavailable`. Either way the call is refused, so nothing is charged. Neither the token nor the secret
is ever logged or put in a message.

Cloudflare refuses a token's second verification (`timeout-or-duplicate`), across all our containers. A container
also remembers the tokens it has seen verified, so a replay into the same container is refused without a round trip.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from tokenvend.errors import ApiError, Code
from tokenvend.observability import logger

FIELD = "turnstile_token"
MAX_TOKEN_CHARS = 2048  # Cloudflare's own limit for `response`
TOKEN_LIFETIME_SECONDS = 300
# Room for the clock of this container and Cloudflare's to disagree, before a token's age is held against it.
CLOCK_SKEW_SECONDS = 30
RETRY_AFTER_SECONDS = 5
# Tokens are printable ASCII; anything else (spaces, control characters, other scripts) was never issued by the widget
# and would only go to Cloudflare to be refused there.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
# Enough for any one container's traffic within a token's lifetime; past it, the oldest are forgotten (Cloudflare
# still refuses them).
REMEMBERED_TOKENS = 10_000

# What Cloudflare's error codes say about whose fault a refusal is.
_CALLER_CODES = {"missing-input-response", "invalid-input-response", "timeout-or-duplicate"}
_OUR_SECRET_CODES = {"missing-input-secret", "invalid-input-secret"}


def _failed(reason: str) -> ApiError:
    return ApiError(403, Code.TURNSTILE_FAILED, f"{FIELD}: {reason}")


def _unavailable() -> ApiError:
    return ApiError(503, Code.TURNSTILE_UNAVAILABLE, "The human check could not be verified just now; nothing was "
                    f"charged. Complete it again and retry ({FIELD}).", {"Retry-After": str(RETRY_AFTER_SECONDS)})


class TurnstileCheck:
    def __init__(self, http: httpx.Client, secret: Callable[[], str], verify_url: str, hostnames: tuple[str, ...],
                 action: str = "call", timeout_seconds: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        """`hostnames`: the hosts the page is served from (a token names the host its widget ran on). `secret` is
        asked for on each verification that reaches Cloudflare (it caches as it pleases). `clock`: epoch seconds."""
        if not hostnames:
            raise ValueError("TurnstileCheck needs the page's hostnames: with none, every token would be refused")
        self._http = http
        self._secret = secret
        self._verify_url = verify_url
        self._hostnames = frozenset(h.lower() for h in hostnames)
        self._action = action
        # Bounds the whole exchange, not each phase: httpx's per-phase timeouts add up on a slow Cloudflare.
        self._timeout = httpx.Timeout(timeout_seconds)
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # token digest -> when it stops mattering
        self._lock = threading.Lock()

    def verify(self, token: str | None, remote_ip: str) -> None:
        """Returns when `token` is a fresh pass for this site and action; raises ApiError otherwise."""
        if token is None or token == "":
            raise _failed("missing; complete the human check, then try again.")
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
            raise _failed("not a token the human check issued.")
        digest = hashlib.sha256(token.encode()).digest()
        if self._seen_before(digest):
            raise _failed("expired or already used; complete the human check again.")
        answer = self._ask(token, remote_ip)
        if answer.get("success") is True:
            # Cloudflare has spent the token now, whatever we make of its answer below.
            self._remember(digest)
            self._check_pass(answer)
            return
        self._refusal(answer)

    # --- Cloudflare -------------------------------------------------------------------------------------------

    def _ask(self, token: str, remote_ip: str) -> dict[str, Any]:
        # A fresh idempotency key per verification: should the request be sent twice (a retried connection),
        # Cloudflare answers both alike rather than calling the second a duplicate.
        # A secret stored from a file may end in a newline, which Cloudflare would refuse as another secret.
        body = {"secret": self._secret().strip(), "response": token, "remoteip": remote_ip,
                "idempotency_key": str(uuid.uuid4())}
        started = time.perf_counter()
        try:
            response = self._http.post(self._verify_url, json=body, timeout=self._timeout,
                                       headers={"Accept": "application/json"}, follow_redirects=False)
        except httpx.TimeoutException as exc:
            logger.warning("turnstile verify timed out", extra={"error": type(exc).__name__,
                                                                "latency_ms": _ms_since(started)})
            raise _unavailable() from None
        except httpx.HTTPError as exc:
            logger.warning("turnstile verify failed", extra={"error": type(exc).__name__})
            raise _unavailable() from None
        if response.status_code >= 500:
            logger.warning("turnstile verify answered an error", extra={"status": response.status_code})
            raise _unavailable()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool) \
                or not isinstance(answer.get("error-codes", []), list):
            logger.warning("turnstile verify answered something unreadable", extra={"status": response.status_code})
            raise _unavailable()
        return answer

    def _refusal(self, answer: dict[str, Any]) -> None:
        codes = {str(code) for code in answer.get("error-codes") or []}
        if codes & _OUR_SECRET_CODES:
            # The owner's secret is missing or wrong: no caller can pass until it is fixed, so say it loudly here.
            logger.error("turnstile refused our secret key: check the secret TurnstileSecretArn names",
                         extra={"error_codes": sorted(codes)})
            raise _unavailable()
        if "timeout-or-duplicate" in codes:
            raise _failed("expired or already used; complete the human check again.")
        if codes & _CALLER_CODES:
            raise _failed("not valid; complete the human check again.")
        if not codes or codes & {"internal-error", "bad-request"}:
            logger.warning("turnstile could not verify", extra={"error_codes": sorted(codes)})
            raise _unavailable()
        # A code newer than this function: Cloudflare said no, and that is the caller's answer.
        logger.warning("turnstile refused with an unknown code", extra={"error_codes": sorted(codes)[:5]})
        raise _failed("refused by the human check; complete it again.")

    def _check_pass(self, answer: dict[str, Any]) -> None:
        hostname, action, issued = answer.get("hostname"), answer.get("action"), answer.get("challenge_ts")
        if not isinstance(hostname, str) or not isinstance(issued, str) or not isinstance(action, (str, type(None))):
            logger.warning("turnstile passed a token with an unreadable answer")
            raise _unavailable()
        if hostname.lower() not in self._hostnames:
            raise _failed("issued for another host.")
        if (action or "") != self._action:
            raise _failed("issued for another action.")
        solved = _epoch(issued)
        if solved is None:
            logger.warning("turnstile passed a token with an unreadable challenge_ts")
            raise _unavailable()
        if self._clock() - solved > TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
            raise _failed("expired or already used; complete the human check again.")

    # --- tokens this container has seen pass ------------------------------------------------------------------

    def _seen_before(self, digest: bytes) -> bool:
        with self._lock:
            self._forget_expired()
            return digest in self._seen

    def _remember(self, digest: bytes) -> None:
        with self._lock:
            self._seen[digest] = self._clock() + TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS
            self._seen.move_to_end(digest)
            while len(self._seen) > REMEMBERED_TOKENS:
                self._seen.popitem(last=False)

    def _forget_expired(self) -> None:
        now = self._clock()
        # Insertion order is expiry order (the lifetime is fixed), so the expired ones are at the front.
        while self._seen:
            digest, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[digest]


def _epoch(timestamp: str) -> float | None:
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if moment.tzinfo is None:  # Cloudflare's are UTC ("...Z"); one without a zone is read as UTC too
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
