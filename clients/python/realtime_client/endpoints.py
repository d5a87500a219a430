"""Where the stack's routes are, from whatever URL the user has at hand.

People copy either the stack's `ApiUrl` output (`https://abc.execute-api.eu-west-1.amazonaws.com/`) or a route
URL they saw in an example (`.../calls`, `.../token`); both name the same API, so both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

ROUTES = ("calls", "token", "options", "health")
EXPECTED = "the stack's ApiUrl (https://<id>.execute-api.<region>.amazonaws.com) or its /calls or /token URL"


@dataclass(frozen=True)
class Endpoint:
    """The API's base URL (no trailing slash) and the route the given URL named, if it named one."""

    api_url: str
    route: str | None = None

    @property
    def calls_url(self) -> str:
        return f"{self.api_url}/calls"

    @property
    def user_calls_url(self) -> str:
        """The signed-in users' route (a stack deployed with JwtIssuer): a JWT instead of an API key."""
        return f"{self.api_url}/user/calls"

    @property
    def token_url(self) -> str:
        return f"{self.api_url}/token"

    @property
    def options_url(self) -> str:
        return f"{self.api_url}/options"

    def hangup_url(self, call_id: str) -> str:
        # The id comes from the server; quoting keeps a strange one from walking to another path.
        return f"{self.calls_url}/{quote(call_id, safe='')}/hangup"


def resolve_endpoint(url: str) -> Endpoint:
    """`https://x/`, `https://x/calls`, `https://x/stage/token` ... -> the API base and the named route.

    Raises ValueError for anything that is not an absolute http(s) URL.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    head, _, last = path.rpartition("/")
    route = last if last in ROUTES else None
    if route is not None:
        path = head
    if route == "calls" and path.endswith("/user"):  # the signed-in users' route, /user/calls
        path, route = path.removesuffix("/user"), "user/calls"
    # A query or fragment belongs to no route of this API; keeping it would put it in front of "/calls".
    return Endpoint(urlunsplit((parts.scheme, parts.netloc, path, "", "")), route)


def not_found_message(method: str, url: str, detail: str) -> str:
    """What a 404 means here: almost always a URL that is not this API, or /token on a stack without it."""
    hint = EXPECTED
    if resolve_endpoint(url).route == "token":
        hint += "; /token answers only on a stack deployed with EnableTokenRoute=true (talk uses /calls by default)"
    if resolve_endpoint(url).route == "user/calls":
        hint += "; /user/calls answers only on a stack deployed with JwtIssuer and JwtAudience"
    return f"{method} {url} answered 404 ({detail}); expected {hint}"
