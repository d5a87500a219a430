"""API Gateway's JWT authorizer (HTTP API), done locally, as AWS documents it (http-api-jwt-authorizer):

1. The token is the identity source's value (`$request.header.Authorization`): the bare token or `Bearer <token>`.
   None there: 401.
2. The token is decoded; its header's `alg` must be RSA-based (RS256, RS384, RS512: "only RSA-based algorithms are
   supported"), so `none` and HS256 are refused, whatever they claim to be signed with.
3. The public key is the one of the issuer's JWKS whose `kid` is the token's: the JWKS found through
   `<issuer>/.well-known/openid-configuration`'s `jwks_uri`, kept for up to two hours as API Gateway keeps it.
   An issuer that cannot be reached, or answers nonsense, refuses the token (401), never a 500.
4. The claims: `iss` exactly the configured issuer; `aud` one of the configured audiences, or, only when the token
   has no `aud`, its `client_id`; `exp` after now; `nbf` and `iat`, when present, not after now. No leeway: the
   documentation states no skew, and a strict local check catches a token minted too close to its limits.
   A token without `exp` is refused (no expiry is not "after now").
5. A route with AuthorizationScopes needs one of them in the token's `scope` (space-separated) or `scp`: else 403.

A refusal is `{"message":"Unauthorized"}` with a `www-authenticate` challenge of API Gateway's form:
`Bearer scope="" error="invalid_token" error_description="..."`. AWS publishes one description ("the token does not
have a valid audience"), and "the token has expired" is the one commonly reported; the others are ours, in the
same form. A request with no token gets the bare challenge `Bearer` (RFC 6750: no error code when no credentials
were sent).

What the function receives (payload 2.0): `requestContext.authorizer.jwt.claims`, each claim as a string as API
Gateway renders it (numbers and booleans as text, an array as `[a b]`, an object as JSON, a null claim left out),
and `requestContext.authorizer.jwt.scopes`: null unless the route asks for scopes.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWKS_CACHE_SECONDS = 2 * 3600  # "API Gateway can cache public keys for two hours"
FETCH_TIMEOUT_SECONDS = 3.0  # a slow issuer costs one request its answer, not the gateway a thread for long
RSA_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}
UNAUTHORIZED = b'{"message":"Unauthorized"}'
FORBIDDEN = b'{"message":"Forbidden"}'

Fetch = Callable[[str], Any]  # a URL -> its JSON document; raises on any failure


class Refused(Exception):
    """The authorizer's refusal: the status (401, or 403 for scopes) and its www-authenticate challenge."""

    def __init__(self, description: str | None, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(description or "no token")
        self.status, self.description, self.error = status, description, error

    @property
    def challenge(self) -> str:
        if self.description is None:
            return "Bearer"
        return f'Bearer scope="" error="{self.error}" error_description="{self.description}"'

    @property
    def body(self) -> bytes:
        return FORBIDDEN if self.status == 403 else UNAUTHORIZED


@dataclass(frozen=True)
class Authorized:
    """What API Gateway puts in the event's `requestContext.authorizer` for a token it accepted."""

    claims: dict[str, str]
    scopes: list[str] | None

    def request_context(self) -> dict[str, Any]:
        return {"jwt": {"claims": self.claims, "scopes": self.scopes}}


def fetch_json(url: str) -> Any:
    """GET a JSON document with short timeouts; any failure raises."""
    response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False,
                         headers={"accept": "application/json"})
    response.raise_for_status()
    return response.json()


@dataclass
class JwtAuthorizer:
    """One `AWS::ApiGatewayV2::Authorizer` of type JWT. Shared by the routes that name it (one key cache), and
    called from the gateway's many request threads."""

    name: str
    issuer: str
    audiences: list[str]
    identity_source: str = "$request.header.Authorization"
    clock: Callable[[], float] = time.time  # wall-clock seconds: what exp, nbf and iat are compared with
    fetch: Fetch = fetch_json
    cache_seconds: float = JWKS_CACHE_SECONDS
    _keys: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _fetched_at: float | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_properties(cls, logical_id: str, props: dict[str, Any], **options: Any) -> JwtAuthorizer:
        """From the resource's properties as CloudFormation would pass them (values resolved)."""
        config = props.get("JwtConfiguration") or {}
        audiences = config.get("Audience") or []
        sources = props.get("IdentitySource") or ["$request.header.Authorization"]
        return cls(name=str(props.get("Name") or logical_id), issuer=str(config.get("Issuer") or ""),
                   audiences=[str(a) for a in (audiences if isinstance(audiences, list) else [audiences])],
                   identity_source=str(sources[0] if isinstance(sources, list) else sources), **options)

    # --- the checks -------------------------------------------------------------------------------------------

    def authorize(self, headers: dict[str, str], scopes: list[str] | None = None) -> Authorized:
        """The request's lowercased headers -> its claims; Refused (401, or 403 for scopes) otherwise."""
        token = self._token(headers)
        header, claims, signed, signature = _decode(token)
        alg = header.get("alg")
        if alg not in RSA_HASHES:
            raise Refused(f"the token's signing algorithm {alg} is not supported")
        key = self._key(header.get("kid"))
        if key is None:
            raise Refused("the token's signing key was not found in the issuer's keys")
        if not _verified(key, alg, signed, signature):
            raise Refused("the token's signature is not valid")
        if claims.get("iss") != self.issuer:
            raise Refused("the token does not have a valid issuer")
        if not self._audience_ok(claims):
            raise Refused("the token does not have a valid audience")
        now = self.clock()
        exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
        if exp is None or exp <= now:
            raise Refused("the token has expired")
        if nbf is not None and nbf > now:
            raise Refused("the token is not valid yet")
        if iat is not None and iat > now:
            raise Refused("the token was issued in the future")
        granted = _token_scopes(claims)
        if scopes:
            if not set(granted) & set(scopes):
                raise Refused("the token does not have the required scope", 403, "insufficient_scope")
            return Authorized(_rendered(claims), granted)
        return Authorized(_rendered(claims), None)

    def _token(self, headers: dict[str, str]) -> str:
        name = self.identity_source.removeprefix("$request.header.").lower()
        scheme, _, rest = (headers.get(name) or "").strip().partition(" ")
        value = rest.strip() if scheme.lower() == "bearer" else scheme + (" " + rest if rest else "")
        if not value:
            raise Refused(None)
        return value

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        # "API Gateway validates client_id only if aud is not present."
        if "aud" in claims:
            aud = claims["aud"]
            given = aud if isinstance(aud, list) else [aud]
        else:
            given = [claims.get("client_id")]
        return any(isinstance(a, str) and a in self.audiences for a in given)

    # --- the issuer's keys --------------------------------------------------------------------------------

    def _key(self, kid: Any) -> dict[str, Any] | None:
        if not isinstance(kid, str):
            return None
        with self._lock:  # one fetch at a time; the others wait and read what it found
            if self._fetched_at is None or self.clock() - self._fetched_at >= self.cache_seconds:
                self._keys = self._fetch_keys()
                self._fetched_at = self.clock()
            return self._keys.get(kid)

    def _fetch_keys(self) -> dict[str, dict[str, Any]]:
        try:
            discovery = self.fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
            jwks = self.fetch(str(discovery["jwks_uri"]))
            keys = {k["kid"]: k for k in jwks["keys"] if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        except Exception:  # unreachable, not JSON, no jwks_uri: the token cannot be checked, so it is refused
            raise Refused("the issuer's keys could not be retrieved") from None
        return keys


def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused("the token is malformed")
    try:
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, binascii.Error):
        raise Refused("the token is malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refused("the token is malformed")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verified(jwk: dict[str, Any], alg: str, signed: bytes, signature: bytes) -> bool:
    if jwk.get("kty") != "RSA":
        return False
    try:
        numbers = rsa.RSAPublicNumbers(int.from_bytes(_unb64(jwk["e"]), "big"), int.from_bytes(_unb64(jwk["n"]), "big"))
        numbers.public_key().verify(signature, signed, padding.PKCS1v15(), RSA_HASHES[alg]())
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
        return False
    return True


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(f"the token's {name} is not a number")
    return float(value)


def _token_scopes(claims: dict[str, Any]) -> list[str]:
    for name in ("scp", "scope"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(v) for v in value]
    return []


def _rendered(claims: dict[str, Any]) -> dict[str, str]:
    """Every claim as API Gateway hands it on: a string, or left out when null."""
    return {name: _claim_text(value) for name, value in claims.items() if value is not None}


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(v) for v in value if v is not None) + "]"
    return json.dumps(value, separators=(",", ":"))
