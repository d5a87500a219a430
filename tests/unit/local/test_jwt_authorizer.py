"""The local JWT authorizer checks what API Gateway's checks (issuer discovery, the JWKS's kid, RS256 only, iss, aud or
else client_id, exp, nbf, iat), refuses with API Gateway's 401 before the function runs, and hands the function
the claims as strings. The issuer is tests.jwt_issuer's, answering in process (no network in this tier); clocks
are injected wherever a time is compared."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local.apigw import Cors, Route, routes_from_template
from local.gateway import Gateway
from local.jwt_authorizer import JwtAuthorizer, Refused
from tests.jwt_issuer import AUDIENCE, Issuer, bad_tokens

NOW = 1_800_000_000.0
ORIGIN = "https://page.example"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()  # unstarted: `fetch` answers in process


def authorizer(issuer: Issuer, clock: Clock | None = None, **options: Any) -> JwtAuthorizer:
    return JwtAuthorizer("UserJwt", issuer.url, [AUDIENCE, "second-app"], clock=clock or Clock(),
                         fetch=issuer.fetch, **options)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refusal(check: JwtAuthorizer, headers: dict[str, str]) -> Refused:
    with pytest.raises(Refused) as refused:
        check.authorize(headers)
    return refused.value


def test_a_good_token_gives_its_claims_as_api_gateway_renders_them(issuer: Issuer) -> None:
    token = issuer.mint(now=NOW, sub="user-42", groups=["admins", "callers"], email_verified=True, age=41,
                        ratio=0.5, address={"country": "FR"}, nickname=None, scope="calls:write profile")
    granted = authorizer(issuer).authorize(bearer(token))
    assert granted.claims == {
        "sub": "user-42", "iss": issuer.url, "aud": AUDIENCE, "exp": str(int(NOW) + 600), "iat": str(int(NOW)),
        "groups": "[admins callers]", "email_verified": "true", "age": "41", "ratio": "0.5",
        "address": '{"country":"FR"}', "scope": "calls:write profile"}  # a null claim is left out
    # A route without AuthorizationScopes: API Gateway passes scopes as null, whatever the token's scope says.
    assert granted.request_context() == {"jwt": {"claims": granted.claims, "scopes": None}}


def test_the_token_is_taken_bare_or_after_bearer(issuer: Issuer) -> None:
    token = issuer.mint(now=NOW)
    check = authorizer(issuer)
    for value in (token, f"Bearer {token}", f"bearer {token}", f"Bearer  {token} "):
        assert check.authorize({"authorization": value}).claims["sub"] == "user-1"


@pytest.mark.parametrize("headers", [{}, {"authorization": ""}, {"authorization": "Bearer "},
                                     {"x-api-key": "k"}])
def test_no_token_is_a_401_with_the_bare_bearer_challenge(issuer: Issuer, headers: dict[str, str]) -> None:
    refused = refusal(authorizer(issuer), headers)
    assert (refused.status, refused.challenge, refused.body) == (401, "Bearer", b'{"message":"Unauthorized"}')


def test_every_bad_token_is_refused_with_an_invalid_token_challenge(issuer: Issuer) -> None:
    # bad_tokens mints relative to the real clock, with minutes of margin either side of each limit.
    check = JwtAuthorizer("UserJwt", issuer.url, [AUDIENCE], clock=time.time, fetch=issuer.fetch)
    for name, token in bad_tokens(issuer):
        refused = refusal(check, bearer(token))
        assert refused.status == 401, name
        assert refused.body == b'{"message":"Unauthorized"}', name
        assert refused.challenge.startswith('Bearer scope="" error="invalid_token" error_description="'), name


@pytest.mark.parametrize(("token_options", "description"), [
    ({"exp": -1}, "the token has expired"),
    ({"exp": 0}, "the token has expired"),  # exp must be after now: at now it is over
    ({"exp": None}, "the token has expired"),
    ({"nbf": 1}, "the token is not valid yet"),
    ({"iat": 1}, "the token was issued in the future"),
    ({"aud": "someone-else"}, "the token does not have a valid audience"),  # AWS's own published words
    ({"aud": ["someone-else", "another"]}, "the token does not have a valid audience"),
    # aud present: client_id is not looked at, even when it would match
    ({"aud": "someone-else", "client_id": AUDIENCE}, "the token does not have a valid audience"),
    ({"aud": None}, "the token does not have a valid audience"),  # neither aud nor client_id
    ({"iss": "https://issuer.invalid/other"}, "the token does not have a valid issuer"),
    ({"iss": "https://issuer.invalid/pool/"}, "the token does not have a valid issuer"),  # exactly, not nearly
    ({"alg": "none"}, "the token's signing algorithm none is not supported"),
    ({"alg": "HS256", "key": b"secret"}, "the token's signing algorithm HS256 is not supported"),
    ({"kid": "rotated-away"}, "the token's signing key was not found in the issuer's keys"),
    ({"exp": "tomorrow"}, "the token's exp is not a number"),
])
def test_each_check_refuses_on_an_injected_clock(issuer: Issuer, token_options: dict[str, Any],
                                                 description: str) -> None:
    refused = refusal(authorizer(issuer), bearer(issuer.mint(now=NOW, **token_options)))
    assert refused.challenge == f'Bearer scope="" error="invalid_token" error_description="{description}"'


@pytest.mark.parametrize("token_options", [
    {"exp": 1},  # a second left
    {"nbf": 0, "iat": 0},  # valid from now on
    {"nbf": None, "iat": None},  # both optional
    {"aud": ["someone-else", "second-app"]},  # one of the token's audiences is one of the authorizer's
    {"aud": None, "client_id": "second-app"},  # a Cognito access token: no aud, its client_id
    {"alg": "RS512"},  # RSA-based, not only RS256
])
def test_a_token_within_every_limit_is_accepted(issuer: Issuer, token_options: dict[str, Any]) -> None:
    assert authorizer(issuer).authorize(bearer(issuer.mint(now=NOW, **token_options))).claims["sub"] == "user-1"


def test_a_token_signed_by_another_key_under_the_issuers_kid_fails_its_signature(issuer: Issuer) -> None:
    token = issuer.mint(now=NOW)
    head, claims, signature = token.split(".")
    forged_claims = issuer.mint(now=NOW, sub="admin").split(".")[1]
    for forged in (f"{head}.{forged_claims}.{signature}", f"{head}.{claims}.{signature[:-4]}AAAA"):
        assert refusal(authorizer(issuer), bearer(forged)).description == "the token's signature is not valid"
    assert refusal(authorizer(issuer), bearer("a.b")).description == "the token is malformed"
    assert refusal(authorizer(issuer), bearer("!!.??.**")).description == "the token is malformed"


def test_the_keys_are_fetched_through_discovery_once_and_kept_two_hours(issuer: Issuer) -> None:
    clock = Clock()
    check = authorizer(issuer, clock)
    issuer.requests.clear()
    check.authorize(bearer(issuer.mint(now=NOW)))
    check.authorize(bearer(issuer.mint(now=NOW)))
    assert issuer.requests == ["/pool/.well-known/openid-configuration", "/pool/.well-known/jwks.json"]
    clock.now += 2 * 3600 - 1
    check.authorize(bearer(issuer.mint(now=clock.now)))
    assert len(issuer.requests) == 2
    clock.now += 1
    check.authorize(bearer(issuer.mint(now=clock.now)))
    assert len(issuer.requests) == 4


def test_an_issuer_that_cannot_be_reached_refuses_the_token_and_is_asked_again_next_time(issuer: Issuer) -> None:
    check = authorizer(issuer)
    issuer.down = True
    try:
        refused = refusal(check, bearer(issuer.mint(now=NOW)))
    finally:
        issuer.down = False
    assert refused.status == 401 and refused.description == "the issuer's keys could not be retrieved"
    assert check.authorize(bearer(issuer.mint(now=NOW))).claims["sub"] == "user-1"  # a failure is not kept

    def nonsense(url: str) -> Any:
        return {"jwks_uri": 42} if url.endswith("openid-configuration") else ["not", "a", "jwks"]

    odd = JwtAuthorizer("UserJwt", issuer.url, [AUDIENCE], clock=Clock(), fetch=nonsense)
    assert refusal(odd, bearer(issuer.mint(now=NOW))).description == "the issuer's keys could not be retrieved"


def test_a_route_with_scopes_needs_one_of_them(issuer: Issuer) -> None:
    check = authorizer(issuer)
    granted = check.authorize(bearer(issuer.mint(now=NOW, scope="calls:write profile")), ["calls:write"])
    assert granted.scopes == ["calls:write", "profile"]
    with pytest.raises(Refused) as refused:
        check.authorize(bearer(issuer.mint(now=NOW, scope="profile")), ["calls:write"])
    assert (refused.value.status, refused.value.body) == (403, b'{"message":"Forbidden"}')


def test_the_gateway_answers_a_refusal_itself_and_hands_the_claims_on(issuer: Issuer) -> None:
    invoked: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Any:
        invoked.append(event)
        return {"statusCode": 201, "headers": {"content-type": "application/json"}, "body": "{}"}

    routes = [Route("POST", "/user/calls", authorizer(issuer)), Route("POST", "/calls")]
    gateway = Gateway(routes, Cors([ORIGIN], ["POST"]), invoke, "api.local")

    def post(path: str, token: str | None) -> Any:
        headers = [("origin", ORIGIN)] + ([("Authorization", f"Bearer {token}")] if token else [])
        return gateway.handle("POST", path, "", headers, b"{}", "192.0.2.1")

    refused = post("/user/calls", issuer.mint(now=NOW - 3600))
    assert refused.status == 401 and json.loads(refused.body) == {"message": "Unauthorized"}
    assert refused.header("www-authenticate") == ('Bearer scope="" error="invalid_token" '
                                                  'error_description="the token has expired"')
    assert refused.header("content-type") == "application/json"
    assert refused.header("access-control-allow-origin") == ORIGIN
    assert post("/user/calls", None).header("www-authenticate") == "Bearer"
    assert invoked == []

    assert post("/user/calls", issuer.mint(now=NOW, sub="user-7")).status == 201
    assert invoked[0]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "user-7"
    assert invoked[0]["requestContext"]["authorizer"]["jwt"]["scopes"] is None
    assert invoked[0]["routeKey"] == "POST /user/calls"
    assert post("/calls", "not-a-jwt").status == 201  # a route without an authorizer: the function decides
    assert "authorizer" not in invoked[1]["requestContext"]


def test_the_routes_declared_as_resources_come_from_the_provisioned_template(issuer: Issuer) -> None:
    from moto import mock_aws

    from local.template_stack import provision

    with mock_aws():
        lane = provision("jwt-lane", {"JwtIssuer": "http://127.0.0.1:9/pool", "JwtAudience": "app-1,app-2"})
        plain = provision("no-lane", {})
    routes = {route.key: route for route in routes_from_template(lane.resources, "TokenFunction")}
    user = routes["POST /user/calls"]
    assert user.authorizer is not None and user.scopes == ()
    assert (user.authorizer.name, user.authorizer.issuer, user.authorizer.audiences) == (
        "UserJwt", "http://127.0.0.1:9/pool", ["app-1", "app-2"])
    assert user.authorizer.identity_source == "$request.header.Authorization"
    assert all(route.authorizer is None for key, route in routes.items() if key != "POST /user/calls")
    assert "POST /calls" in routes and "ANY /{proxy+}" in routes
    # Without JwtIssuer the condition is false: no route, no authorizer (the function's {proxy+} answers).
    assert "POST /user/calls" not in {route.key for route in routes_from_template(plain.resources, "TokenFunction")}
    assert not [r for r in plain.resources.values() if r["Type"] == "AWS::ApiGatewayV2::Authorizer"]
    # Only routes whose integration invokes the function asked for.
    assert "POST /user/calls" not in {route.key for route in routes_from_template(lane.resources, "LeashFunction")}
