"""The human check through the local system (`make run` with a TurnstileSiteKey: its stand-in plays Cloudflare):
an anonymous call needs a token made on the page's host for the `call` action, verified once before anything is
charged; a missing, reused, foreign or other-action token is 403 and a verify that fails is 503, both charging
nothing; API keys and signed-in users never need one; with ChallengeAfterPercent it is asked for only once the
anonymous lane is past that share."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.system import LocalSystem
from local.turnstile_standin import CLOUDFLARE_TEST_SECRET, TurnstileStandIn
from tests.integration.offers import make_offer
from tests.jwt_issuer import AUDIENCE, Issuer
from tokenvend import table
from tokenvend.api_keys import ApiKeyStore

SITE_KEY = "1x00000000000000000000AA"
PAGE_HOST = "localhost"  # the local page's host: a token made on it is the page's


@pytest.fixture(scope="module")
def system(issuer: Issuer) -> Iterator[LocalSystem]:
    parameters = {"TurnstileSiteKey": SITE_KEY, "JwtIssuer": issuer.url, "JwtAudience": AUDIENCE,
                  "AnonymousBurst": "20", "MaxCallSeconds": "20"}
    with LocalSystem(port=0, parameters=parameters) as running:
        yield running


@pytest.fixture
def standin(system: LocalSystem) -> Iterator[TurnstileStandIn]:
    assert system.turnstile is not None, "make run starts Cloudflare's stand-in for a site key"
    yield system.turnstile
    system.turnstile.reset()


@pytest.fixture
def api(system: LocalSystem) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.api_url, timeout=30) as client:
        yield client


def held_seconds(system: LocalSystem) -> int:
    """Every call second any day holds (whatever day the function's clock charged)."""
    items = system.client("dynamodb").scan(TableName=system.stack.table_name, ConsistentRead=True)["Items"]
    return sum(int(i.get(table.CALL_SECONDS, {}).get("N", "0")) for i in items if i["pk"]["S"].startswith("day#"))


def setups(system: LocalSystem) -> int:
    assert system.standin is not None
    return len(system.standin.requests_to("live_sessions"))  # the default backend's call setup


def call(api: httpx.Client, **body: Any) -> httpx.Response:
    return api.post("/calls", json={"sdp": make_offer(data_channel=True), **body})


def hang_up(api: httpx.Client, answer: httpx.Response) -> None:
    started = answer.json()
    ended = api.post(f"/calls/{started['call_id']}/hangup", json={"hangup_token": started["hangup_token"]})
    assert ended.status_code == 200


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


def test_the_options_name_the_widget(api: httpx.Client, standin: TurnstileStandIn) -> None:
    options = api.get("/options").json()
    assert options["turnstile"] == {"site_key": SITE_KEY, "script_url": standin.script_url, "action": "call"}


def test_a_good_token_passes_once(system: LocalSystem, api: httpx.Client, standin: TurnstileStandIn) -> None:
    token = standin.mint(PAGE_HOST)
    answer = call(api, turnstile_token=token)
    assert answer.status_code == 201, answer.text
    hang_up(api, answer)
    before = held_seconds(system)
    message = refused(call(api, turnstile_token=token), 403, "turnstile_failed")
    assert "turnstile_token" in message and "already used" in message
    assert held_seconds(system) == before, "a reused token charges nothing"


@pytest.mark.parametrize(("token_of", "words"), [
    (lambda s: None, "missing"),
    (lambda s: "", "missing"),
    (lambda s: s.mint("evil.example"), "another"),
    (lambda s: s.mint(PAGE_HOST, action="login"), "action"),
    (lambda s: "x" * 2049, "turnstile_token"),
    (lambda s: "not-a-token-the-standin-made", "turnstile_token"),
], ids=["absent", "empty", "foreign-host", "other-action", "oversized", "unknown"])
def test_a_bad_token_is_403_and_charges_nothing(system: LocalSystem, api: httpx.Client, standin: TurnstileStandIn,
                                                 token_of: Any, words: str) -> None:
    before, created = held_seconds(system), setups(system)
    token = token_of(standin)
    body = {} if token is None else {"turnstile_token": token}
    assert words in refused(call(api, **body), 403, "turnstile_failed")
    assert held_seconds(system) == before
    assert setups(system) == created, "OpenAI was never asked"


@pytest.mark.parametrize("fault", ["500", "garbled"])
def test_a_verify_that_fails_is_503_and_charges_nothing(system: LocalSystem, api: httpx.Client,
                                                         standin: TurnstileStandIn, fault: str) -> None:
    if fault == "500":
        standin.fail_next_verify(500)
    else:
        standin.garble_next_verify()
    before = held_seconds(system)
    response = call(api, turnstile_token=standin.mint(PAGE_HOST))
    refused(response, 503, "turnstile_unavailable")
    assert "retry-after" in response.headers
    assert held_seconds(system) == before


def test_keys_and_signed_in_users_never_need_it(system: LocalSystem, api: httpx.Client, issuer: Issuer) -> None:
    key, _ = ApiKeyStore(system.client("dynamodb"), system.stack.table_name).create("turnstile-free")
    with_key = api.post("/calls", json={"sdp": make_offer()}, headers={"authorization": f"Bearer {key}"})
    assert with_key.status_code == 201, with_key.text
    hang_up(api, with_key)
    signed_in = api.post("/user/calls", json={"sdp": make_offer()},
                         headers={"authorization": f"Bearer {issuer.mint(sub='turnstile-free-user')}"})
    assert signed_in.status_code == 201, signed_in.text
    hang_up(api, signed_in)


def test_challenge_after_percent_asks_only_once_the_lane_is_that_full() -> None:
    # 25 s per call against an anonymous lane of 100 s: the check is asked for once 50 s are held.
    parameters = {"TurnstileSiteKey": SITE_KEY, "ChallengeAfterPercent": "50", "MaxCallSeconds": "20",
                  "DailyCallMinutes": "2", "AnonymousDailyCallMinutes": str(100 / 60), "CallerDailyCallMinutes": "2",
                  "AnonymousBurst": "10"}
    # The share is read from today's counter: three calls must fall on one UTC day, whatever the hour of the run.
    to_midnight = 86_400 - time.time() % 86_400
    if to_midnight < 60:
        time.sleep(to_midnight + 1)
    with LocalSystem(port=0, parameters=parameters) as system, \
            httpx.Client(base_url=system.api_url, timeout=30) as api:
        assert system.turnstile is not None
        first, second = call(api), call(api)  # 0 and 25 s held: under half, no check
        assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
        assert "missing" in refused(call(api), 403, "turnstile_failed")  # 50 s held: half
        third = call(api, turnstile_token=system.turnstile.mint(PAGE_HOST))
        assert third.status_code == 201, third.text
        for answer in (first, second, third):
            hang_up(api, answer)


def test_a_verify_service_of_ones_own_is_asked_with_a_secret_it_knows() -> None:
    """TurnstileVerifyUrl elsewhere: make run starts no stand-in, and the secret it stores (none was named) is
    Cloudflare's always-passing test secret, which such a service most likely knows."""
    with TurnstileStandIn(site_key=SITE_KEY, secret=CLOUDFLARE_TEST_SECRET).start() as theirs:
        parameters = {"TurnstileSiteKey": SITE_KEY, "TurnstileVerifyUrl": theirs.verify_url, "MaxCallSeconds": "20"}
        with LocalSystem(port=0, parameters=parameters) as system, \
                httpx.Client(base_url=system.api_url, timeout=30) as api:
            assert system.turnstile is None
            assert api.get("/options").json()["turnstile"]["script_url"] == theirs.script_url
            refused(call(api), 403, "turnstile_failed")
            answer = call(api, turnstile_token=theirs.mint(PAGE_HOST))
            assert answer.status_code == 201, answer.text
            hang_up(api, answer)
