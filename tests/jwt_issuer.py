"""A throwaway OpenID Connect issuer for tests of every tier: an RSA key pair made for this run, the discovery
document and the JWKS served over real HTTP on loopback, and `mint` for good tokens and every kind of bad one.

    with Issuer() as issuer:                       # serves http://127.0.0.1:<port>/pool
        # (unstarted, its url is https://issuer.invalid/pool and `issuer.fetch` answers in process: the unit tier)
        good = issuer.mint(sub="user-1")           # RS256, this issuer, AUDIENCE, valid for 10 minutes
        expired = issuer.mint(exp=-60)             # times are seconds relative to now (or absolute with `now=`)
        unsigned = issuer.mint(alg="none")
        hs256 = issuer.mint(alg="HS256", key=issuer.public_pem)   # "signed" with the public key's bytes
        stranger = issuer.mint(kid="not-in-the-jwks")

Times are relative to the real clock, with margins of minutes, so that no machine is slow enough to turn a good
token bad (or a bad one good) while a test runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

AUDIENCE = "local-app-client"
KID = "test-key-1"
LIFETIME = 600  # a good token's validity, seconds
_UNSET: Any = object()  # "leave the claim at its default" (None means "leave the claim out")
_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}
_HMACS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class Issuer:
    """An OIDC issuer on 127.0.0.1: `url` is its `iss`, `requests` the paths it was asked for."""

    def __init__(self, path: str = "/pool", *, kid: str = KID, audience: str = AUDIENCE) -> None:
        self.path, self.kid, self.audience = path, kid, audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.requests: list[str] = []
        self.down = False  # True: every request is answered 503, as an issuer in trouble
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- serving ----------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            return f"https://issuer.invalid{self.path}"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def document(self, path: str) -> tuple[int, Any]:
        """What the issuer answers for a path: (status, JSON document or None)."""
        self.requests.append(path)
        documents = {f"{self.path}/.well-known/openid-configuration": self.discovery,
                     f"{self.path}/.well-known/jwks.json": self.jwks}
        if self.down:
            return 503, None
        return (200, documents[path]()) if path in documents else (404, None)

    def fetch(self, url: str) -> Any:
        """The same answers without HTTP, for local.jwt_authorizer's `fetch`: a document, or an exception."""
        if not url.startswith(self.url.removesuffix(self.path) + "/"):
            raise ConnectionError(f"{url} is not this issuer")
        status, document = self.document(urlsplit(url).path)
        if status != 200:
            raise ConnectionError(f"{url} answered {status}")
        return document

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                          "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/.well-known/jwks.json",
                "id_token_signing_alg_values_supported": ["RS256"], "response_types_supported": ["code"],
                "subject_types_supported": ["public"]}

    def start(self) -> Issuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                status, document = issuer.document(self.path)
                if status != 200:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwt-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Issuer:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # --- tokens -------------------------------------------------------------------------------------------------

    def claims(self, *, sub: str | None = "user-1", iss: Any = _UNSET, aud: Any = _UNSET, client_id: Any = None,
               exp: Any = LIFETIME, nbf: Any = None, iat: Any = 0, now: float | None = None,
               **extra: Any) -> dict[str, Any]:
        """A token's claims. `exp`, `nbf` and `iat` are seconds from `now` (the real clock unless given); None
        leaves a claim out, and anything not a number is put in as given; `aud=None` with `client_id=` makes a
        Cognito-style access token."""
        base = time.time() if now is None else now
        claims: dict[str, Any] = {"sub": sub, "iss": self.url if iss is _UNSET else iss,
                                  "aud": self.audience if aud is _UNSET else aud, "client_id": client_id,
                                  "exp": exp, "nbf": nbf, "iat": iat}
        for name in ("exp", "nbf", "iat"):
            if isinstance(claims[name], int | float) and not isinstance(claims[name], bool):
                claims[name] = int(base + claims[name])
        return {**{k: v for k, v in claims.items() if v is not None}, **extra}

    def mint(self, *, alg: str = "RS256", kid: str | None = _UNSET, key: Any = None,
             header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A compact JWT. `alg`: RS256/384/512 (signed with `key`, an RSA private key, this issuer's by default),
        HS256/384/512 (an HMAC with `key`'s bytes: the public key's PEM is the classic confusion attack) or
        `none` (no signature). `kid` defaults to this issuer's key id; None leaves it out."""
        head = {"alg": alg, "typ": "JWT", **({"kid": self.kid if kid is _UNSET else kid}
                                              if kid is not None else {}), **(header or {})}
        signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(self.claims(**claims)).encode())}"
        data = signing_input.encode()
        if alg in _HASHES:
            signer = key if key is not None else self.key
            signature = signer.sign(data, padding.PKCS1v15(), _HASHES[alg]())
        elif alg in _HMACS:
            secret = key if isinstance(key, bytes) else str(key).encode()
            signature = hmac.new(secret, data, _HMACS[alg]).digest()
        elif alg.lower() == "none":
            signature = b""
        else:
            raise ValueError(f"mint cannot sign with {alg}")
        return f"{signing_input}.{b64url(signature)}"


def other_key() -> rsa.RSAPrivateKey:
    """A key no issuer publishes: a token signed with it under the issuer's own kid must fail its signature."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def bad_tokens(issuer: Issuer) -> Iterator[tuple[str, str]]:
    """(name, token) for each token the JWT authorizer must refuse with 401, as issue 22 lists them and more."""
    yield "expired", issuer.mint(exp=-300, iat=-900)
    yield "not yet valid", issuer.mint(nbf=300)
    yield "issued in the future", issuer.mint(iat=300, exp=900)
    yield "wrong issuer", issuer.mint(iss=issuer.url + "-other")
    yield "wrong audience", issuer.mint(aud="someone-else")
    yield "unsigned (alg none)", issuer.mint(alg="none")
    yield "HS256 with the public key", issuer.mint(alg="HS256", key=issuer.public_pem)
    yield "unknown kid", issuer.mint(kid="not-in-the-jwks")
    yield "no kid", issuer.mint(kid=None)
    yield "signed by another key", issuer.mint(key=other_key())
    yield "client_id of another app", issuer.mint(aud=None, client_id="someone-else")
    yield "no exp", issuer.mint(exp=None)
    yield "not a JWT", "not-a-jwt"
