"""Who may call what, and OpenAI's error answers: shared by every endpoint of the stand-in.

OpenAI takes two kinds of bearer credential: the project's standard key (`sk-...`), which a server holds, and
ephemeral `ek_...` tokens minted by client_secrets, which a browser may hold. Endpoints differ in which they take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from local.openai_standin.tokens import IssuedToken, TokenRegistry

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass
class Credentials:
    """The standard key OpenAI accepts right now (tests rotate it) and the ephemeral tokens minted so far."""

    api_key: str
    tokens: TokenRegistry

    def is_standard(self, authorization: str) -> bool:
        return authorization == f"Bearer {self.api_key}"

    def token(self, authorization: str) -> IssuedToken | None:
        return self.tokens.lookup(bearer(authorization))

    def require_standard(self, authorization: str) -> None:
        """Refused with OpenAI's 401 for anything but the standard key (an `ek_` token included)."""
        if not self.is_standard(authorization):
            raise Refused(unauthorized(authorization))


class Refused(Exception):
    """Raised by an endpoint for a request OpenAI would refuse; `response` is OpenAI's answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def bearer(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def mask_key(key: str) -> str:
    """The fragment of a refused key that OpenAI's 401 message quotes."""
    return f"{key[:6]}***{key[-4:]}" if len(key) > 10 else "***"


def unauthorized(authorization: str, headers: Mapping[str, str] | None = None) -> web.Response:
    presented = bearer(authorization)
    if not presented:
        return openai_error(401, NO_KEY_MESSAGE, "invalid_api_key", headers=headers)
    # OpenAI quotes a masked fragment of the key it refused; so do we, so leak tests have something to find.
    return openai_error(401, f"Incorrect API key provided: {mask_key(presented)}.", "invalid_api_key", headers=headers)


def openai_error(status: int, message: str, code: str | None, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> web.Response:
    """OpenAI's error envelope: `{"error": {"message", "type", "param", "code"}}`."""
    if status == 429:
        kind = "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=dict(headers or {}))


def cors_headers(request_headers: Mapping[str, str]) -> dict[str, str]:
    """A browser posts its offer to OpenAI directly (the old token flow): the answer must be readable cross-origin."""
    origin = request_headers.get("Origin")
    if origin:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Access-Control-Allow-Origin": "*"}
