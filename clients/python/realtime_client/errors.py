"""Typed failures, so callers (and the CLI's exit codes) can tell "wait and retry" from "fix your key".

Two families: `EndpointError` for our own HTTP API (`/calls`, `/token`, `/options`), `SessionError` for the
WebRTC call itself. No message here ever contains a token or a hangup secret.
"""

from __future__ import annotations


class EndpointError(Exception):
    """Our endpoint did not give us what we asked for. `status` is None when no HTTP answer arrived."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status if status is not None else '-'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


# The family's first name, from when the endpoint only vended tokens; kept so existing `except` clauses work.
TokenError = EndpointError


class AuthError(EndpointError):
    """401: our service's API key is missing, unknown or revoked."""


class SignInRefused(AuthError):
    """401 from API Gateway's JWT authorizer on `/user/calls`: the signed-in user's token was refused before our
    function saw it (expired, another issuer or audience, a bad signature). `challenge` is API Gateway's
    `www-authenticate` header, which says why; get a fresh token from the identity provider."""

    def __init__(self, status: int, code: str, message: str, challenge: str | None) -> None:
        super().__init__(status, code, message)
        self.challenge = challenge


class UserTokenFailed(EndpointError):
    """The owner's `user_token` hook (or `talk --user-token-command`) gave no token: nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "user_token_failed", message)


class RateLimited(EndpointError):
    """429: per-caller rate limit or the daily budget; `retry_after` is whole seconds."""

    def __init__(self, status: int, code: str, message: str, retry_after: int) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class ClientError(EndpointError):
    """Any other 4xx: the request itself is wrong (bad voice/preset, origin not allowed, too large)."""


class EndpointNotFound(ClientError):
    """404: the URL is not one of the stack's routes; `url` is the one tried, and the message says what fits."""

    def __init__(self, code: str, message: str, url: str) -> None:
        super().__init__(404, code, message)
        self.url = url


class ServerError(EndpointError):
    """5xx: the endpoint or OpenAI behind it failed; `retry_after` is set when the server said when to retry."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class EndpointUnreachable(EndpointError):
    """No HTTP answer at all: refused, DNS, TLS or timeout."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(None, code, message)


class InvalidResponse(EndpointError):
    """An answer that is not the documented shape (e.g. a 200 with an HTML body, or a redirect)."""


class SessionError(Exception):
    """The realtime call could not be set up or broke."""


class CallRefused(SessionError):
    """OpenAI answered the SDP offer with an error (401 for an expired or unknown token)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code


class ConnectionFailed(SessionError):
    """The offer could not be posted, or ICE/DTLS/the data channel never came up."""
