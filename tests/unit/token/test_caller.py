"""Who pays, as pure functions: the network a source address counts as (IPv6 per /64), salted identities, and API
keys refused before any lookup when they are malformed."""

from __future__ import annotations

import pytest

from tokenvend.caller import CallerKind, identify, network_of
from tokenvend.errors import ApiError, Code

SALT = b"test-salt"


@pytest.mark.parametrize(("source", "network"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:0:0:0:abcd", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
])
def test_network_of(source: str, network: str) -> None:
    assert network_of(source) == network


def test_identity_is_salted_and_stable() -> None:
    one = identify(None, "2001:db8:1:2::1", SALT, allow_anonymous=True)
    assert one == identify(None, "2001:db8:1:2::9", SALT, allow_anonymous=True)
    assert one != identify(None, "2001:db8:1:3::1", SALT, allow_anonymous=True)
    assert one != identify(None, "2001:db8:1:2::1", b"other-salt", allow_anonymous=True)
    assert one.kind is CallerKind.ANONYMOUS and len(one.hash) == 32 and "2001" not in one.hash


@pytest.mark.parametrize("source", ["", "not-an-ip", "203.0.113"])
def test_unusable_source_is_400_not_a_shared_bucket(source: str) -> None:
    with pytest.raises(ApiError) as caught:
        identify(None, source, SALT, allow_anonymous=True)
    assert caught.value.status == 400


# --- through the handler --------------------------------------------------------------------------------------


def test_identify_refuses_bad_keys_before_any_lookup() -> None:
    for authorization in ("Bearer", "Basic x", "Bearer sk-abc", "Bearer rtv_" + "x" * 300):
        with pytest.raises(ApiError) as caught:
            identify(authorization, "203.0.113.7", SALT, allow_anonymous=True)
        assert caught.value.code == Code.INVALID_API_KEY
    caller = identify("bearer  rtv_abc ", "203.0.113.7", SALT, allow_anonymous=False)
    assert caller.kind is CallerKind.API_KEY and caller.key_hash and caller.hash != caller.key_hash
