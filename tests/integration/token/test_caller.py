"""Who pays: the source address API Gateway saw (IPv6 per /64), never a header the client sets; API keys only as
`Authorization: Bearer rtv_...`, and a bad key is refused, never treated as anonymous."""

from __future__ import annotations

import pytest

from tests.integration.harness import TokenApi, body_of, load_token_app


@pytest.fixture
def burst_two(stack, fresh_standin) -> TokenApi:
    api = load_token_app(stack, fresh_standin, ANONYMOUS_BURST="2", ANONYMOUS_RATE_PER_HOUR="0.001")
    api.put_key(fresh_standin.api_key)
    return api


def statuses(api: TokenApi, *calls: dict) -> list[int]:
    return [api.call("POST", "/token", **call).status for call in calls]


# --- the network a caller is counted by ----------------------------------------------------------------------

def test_addresses_in_one_ipv6_64_share_a_bucket(burst_two: TokenApi) -> None:
    same_64 = ["2001:db8:aa:bb::1", "2001:db8:aa:bb:1234:5678:9abc:def0", "2001:db8:aa:bb:ffff::7"]
    assert statuses(burst_two, *({"source_ip": ip} for ip in same_64)) == [200, 200, 429]
    assert body_of(burst_two.call("POST", "/token", source_ip="2001:db8:aa:bb::42"))["error"]["code"] == "rate_limited"
    # The neighbouring /64s are other subscribers: their own buckets.
    assert statuses(burst_two, {"source_ip": "2001:db8:aa:bc::1"}, {"source_ip": "2001:db8:aa:ba::1"}) == [200, 200]
    assert len(burst_two.standin.requests) == 4


def test_ipv4_mapped_ipv6_is_the_ipv4_caller(burst_two: TokenApi) -> None:
    assert statuses(burst_two, {"source_ip": "198.51.100.7"}, {"source_ip": "::ffff:198.51.100.7"},
                    {"source_ip": "::ffff:c633:6407"}) == [200, 200, 429]
    assert statuses(burst_two, {"source_ip": "198.51.100.8"}) == [200]


def test_ipv4_addresses_are_counted_one_by_one(burst_two: TokenApi) -> None:
    assert statuses(burst_two, *({"source_ip": f"192.0.2.{i}"} for i in range(1, 5))) == [200] * 4


def test_spoofed_forwarding_headers_change_nothing(burst_two: TokenApi) -> None:
    spoofs = [{"x-forwarded-for": "10.0.0.1"}, {"x-forwarded-for": "192.0.2.55, 10.0.0.2"},
              {"x-real-ip": "192.0.2.66"}, {"forwarded": "for=192.0.2.77"}, {"true-client-ip": "192.0.2.88"}]
    results = statuses(burst_two, *({"source_ip": "203.0.113.50", "headers": h} for h in spoofs))
    assert results == [200, 200, 429, 429, 429]
    # And a forwarding header naming an exhausted caller does not charge that caller either.
    assert statuses(burst_two, {"source_ip": "203.0.113.51", "headers": {"x-forwarded-for": "203.0.113.50"}}) == [200]
    safety_ids = {r.headers["OpenAI-Safety-Identifier"] for r in burst_two.standin.requests}
    assert len(safety_ids) == 2


def test_anonymous_disabled_is_401(stack, fresh_standin) -> None:
    api = load_token_app(stack, fresh_standin, ALLOW_ANONYMOUS="false")
    api.put_key(fresh_standin.api_key)
    response = api.call("POST", "/token")
    assert response.status == 401
    assert body_of(response)["error"]["code"] == "anonymous_access_disabled"
    assert response.header("www-authenticate") == "Bearer"
    assert fresh_standin.requests == []
    assert api.call("GET", "/options").status == 200  # the rest of the API stays open


@pytest.mark.parametrize("authorization", [
    "",
    "Bearer",
    "Bearer ",
    "Basic cnR2X2FiYzpwYXNz",
    "Token rtv_abc",
    "rtv_abcdefghijklmnop",
    "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz",
    "Bearer rtv_" + "a" * 300,
    "Bearer rtv_unknownkeyunknownkeyunknownkeyunknownkey1",
])
def test_malformed_or_unknown_key_is_401_never_anonymous(token_api: TokenApi, authorization: str) -> None:
    response = token_api.call("POST", "/token", headers={"authorization": authorization})
    assert response.status == 401
    assert body_of(response)["error"]["code"] == "invalid_api_key"
    assert response.header("www-authenticate") == "Bearer"
    assert token_api.standin.requests == []

