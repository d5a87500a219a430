"""Who is calling: an API-key caller (`Authorization: Bearer <key>`) or an anonymous one, identified by the source
IP that API Gateway saw. Never a header the client sets (X-Forwarded-For and friends are ignored): those are free
to forge. IPv6 callers count per /64, the usual allocation to one subscriber, so rotating addresses inside it does
not multiply the allowance.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from enum import StrEnum
from typing import NamedTuple

from tokenvend.errors import ApiError, Code, invalid_api_key

API_KEY_PREFIX = "rtv_"
IPV6_PREFIX_LENGTH = 64


class CallerKind(StrEnum):
    """Who calls, and so which lane of the day's minutes pays (`table.LANES`)."""

    ANONYMOUS = "anonymous"
    API_KEY = "api_key"
    USER = "user"


class Caller(NamedTuple):
    kind: CallerKind
    hash: str  # salted: safe to log and to send to OpenAI as the safety identifier
    key_hash: str | None = None  # for API-key callers: the unsalted SHA-256 under which the key is stored
    network: str | None = None  # for anonymous callers: the /24 or /64 they fall in, for the owner's usage report


# What each kind of caller is hashed from (salted, `caller_hash`): the admin command names callers the same way.
def address_identity(network: str) -> str:
    return f"ip:{network}"


def key_identity(key_hash: str) -> str:
    return f"key:{key_hash}"


def user_identity(sub: str) -> str:
    return f"user:{sub}"


def caller_hash(salt: bytes, identity: str) -> str:
    return hmac.new(salt, identity.encode(), hashlib.sha256).hexdigest()[:32]


def report_network(source_ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address falls in: what the owner's usage report shows, never the address."""
    address = ipaddress.ip_address(source_ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if isinstance(address, ipaddress.IPv4Address) else IPV6_PREFIX_LENGTH
    return str(ipaddress.ip_network((address, prefix), strict=False))


def hash_api_key(key: str) -> str:
    """Keys are 256-bit random, so a plain SHA-256 cannot be reversed by guessing; no salt needed to store them."""
    return hashlib.sha256(key.encode()).hexdigest()


def network_of(source_ip: str) -> str:
    address = ipaddress.ip_address(source_ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX_LENGTH), strict=False))
    return str(address)


def identify(authorization: str | None, source_ip: str, salt: bytes, *, allow_anonymous: bool) -> Caller:
    if authorization is not None:
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith(API_KEY_PREFIX) or len(key) > 200:
            raise invalid_api_key()
        key_hash = hash_api_key(key)
        return Caller(CallerKind.API_KEY, caller_hash(salt, key_identity(key_hash)), key_hash)
    if not allow_anonymous:
        raise ApiError(401, Code.ANONYMOUS_DISABLED, "This service requires an API key: send Authorization: Bearer.",
                       {"WWW-Authenticate": "Bearer"})
    try:
        network = network_of(source_ip)
    except ValueError:
        # API Gateway always supplies one; a missing source is a broken event, and it must not share a bucket.
        raise ApiError(400, Code.INVALID_REQUEST, "The request has no usable source address.") from None
    return Caller(CallerKind.ANONYMOUS, caller_hash(salt, address_identity(network)), network=report_network(source_ip))
