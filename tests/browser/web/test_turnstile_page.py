"""The page with the owner's human check (Cloudflare Turnstile), in Chromium against the whole local system.

With `TurnstileSiteKey` set, the local system runs the Turnstile stand-in (local/turnstile_standin.py) in
Cloudflare's place: the page loads the widget script from it (its origin, and only it, allowed by the page's CSP),
the widget's iframe from there mints a token bound to the page's host, the page sends it with POST /calls, and the
function verifies it at the stand-in's siteverify before anything is charged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser

from local.system import LocalSystem
from local.turnstile_standin import PLACEHOLDER_SECRET_ARN, TurnstileStandIn
from tests.browser.web.conftest import REALTIME_AUDIO_ONLY
from tests.browser.web.voice_page import VoicePage, json_body
from tests.jwt_issuer import AUDIENCE, Issuer

OpenPage = Callable[..., VoicePage]
SITE_KEY = "0x4AAAAAAAbrowsertest"


@pytest.fixture(scope="class")
def turnstile_system() -> Iterator[LocalSystem]:
    """Audio-only Realtime calls, anonymous callers checked on every call (ChallengeAfterPercent 0). The secret ARN
    names no secret yet: the system makes one holding the stand-in's secret."""
    parameters = {**REALTIME_AUDIO_ONLY, "AnonymousBurst": "20", "TurnstileSiteKey": SITE_KEY,
                  "TurnstileSecretArn": PLACEHOLDER_SECRET_ARN, "ChallengeAfterPercent": "0"}
    with LocalSystem(port=0, page_port=0, parameters=parameters) as running:
        yield running


def standin_of(system: LocalSystem) -> TurnstileStandIn:
    standin = getattr(system, "turnstile", None)
    assert isinstance(standin, TurnstileStandIn), "the local system runs the Turnstile stand-in for a site key"
    return standin


def table_items(system: LocalSystem) -> list[dict[str, Any]]:
    """Everything the limiter and the call records hold: a call refused before its charge leaves it as it was."""
    assert system.stack is not None
    dynamodb = system.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": system.stack.table_name, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=repr)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def calls_at_openai(system: LocalSystem) -> int:
    assert system.standin is not None
    return len(system.standin.requests_to("calls")) + len(system.standin.requests_to("live_sessions"))


def wait_for_widget_token(voice: VoicePage, standin: TurnstileStandIn, loads: int) -> None:
    """Until the widget has loaded `loads` times in all and shows it solved (the stand-in's iframe says so)."""
    voice.page.wait_for_function("(loads) => document.querySelector('#human-check').dataset.state === 'ready'",
                                 arg=loads, timeout=10_000)
    assert len(standin.widget_loads) >= loads, standin.widget_loads


class TestHumanCheck:
    def test_a_call_carries_a_token_the_function_verified_and_each_call_a_fresh_one(
        self, turnstile_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        system, standin = turnstile_system, standin_of(turnstile_system)
        standin.reset()
        voice = open_page(system, browser)
        options = voice.page.evaluate("(url) => fetch(url).then((r) => r.json())", f"{system.api_url}/options")
        assert options["turnstile"] == {"site_key": SITE_KEY, "script_url": standin.script_url, "action": "call"}

        # The page's own policy names the stand-in's origin for the script and the widget's frame, nothing more.
        policy = voice.page.evaluate(
            "() => document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
        assert f"script-src 'self' {standin.url};" in policy and f"frame-src {standin.url};" in policy
        assert standin.url not in policy.split("connect-src", 1)[1].split(";", 1)[0]

        # The widget: the stand-in's iframe next to Talk, solved for this page's host.
        wait_for_widget_token(voice, standin, loads=1)
        frame = voice.page.frame_locator("#human-check iframe")
        assert "Success!" in frame.locator("body").inner_text()
        [load] = standin.widget_loads
        assert (load.sitekey, load.action, load.parent_origin) == (SITE_KEY, "call", system.page_url.rstrip("/"))

        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        [post] = voice.call_posts
        first = json_body(post)["turnstile_token"]
        assert first == load.token
        # The function verified it at the stand-in, with the caller's address, before the call was set up.
        [verified] = [v for v in standin.verifications if v.token == first]
        assert verified.answer is not None and verified.answer["success"] is True
        assert verified.answer["hostname"] == "localhost" and verified.remoteip in ("127.0.0.1", "::1")
        voice.page.click("#talk")  # hang up
        voice.wait_for_state("ended")

        # Tokens are single use: the widget solved a new one at once, and the next call carries it.
        wait_for_widget_token(voice, standin, loads=2)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        second = json_body(voice.call_posts[1])["turnstile_token"]
        assert second != first and second == standin.widget_loads[1].token
        assert [v.token for v in standin.verifications] == [first, second]
        voice.page.click("#talk")
        voice.wait_for_state("ended")

    def test_a_refused_token_is_shown_charges_nothing_and_the_next_check_passes(
        self, turnstile_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        system, standin = turnstile_system, standin_of(turnstile_system)
        standin.reset()
        voice = open_page(system, browser)
        wait_for_widget_token(voice, standin, loads=1)
        before, at_openai = table_items(system), calls_at_openai(system)

        standin.refuse_next_verify("timeout-or-duplicate")  # Cloudflare: the token was spent already
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        [post] = voice.call_posts
        answer = post.response()
        assert answer is not None and answer.status == 403
        assert answer.json()["error"]["code"] == "turnstile_failed"
        assert "turnstile_token" in answer.json()["error"]["message"]
        message = voice.text("#message")
        assert message.startswith("The human check was not accepted") and "expired or already used" in message
        # Refused before the charge: the table as it was, and OpenAI never asked.
        assert table_items(system) == before
        assert calls_at_openai(system) == at_openai
        assert voice.release_report()["tracks"] and all(t == "ended" for t in voice.release_report()["tracks"])

        # The widget started on a fresh token; with it the call goes through.
        wait_for_widget_token(voice, standin, loads=2)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        refused, passed = (json_body(p)["turnstile_token"] for p in voice.call_posts)
        assert refused != passed
        voice.page.click("#talk")
        voice.wait_for_state("ended")

    def test_a_widget_that_fails_says_so_posts_nothing_and_is_tried_again_on_talk(
        self, turnstile_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        system, standin = turnstile_system, standin_of(turnstile_system)
        standin.reset()
        standin.fail_next_widget("300030", times=2)  # the first load, and the retry the first press of Talk makes
        voice = open_page(system, browser)
        voice.page.wait_for_function("() => document.querySelector('#human-check').dataset.state === 'error'")
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert voice.text("#message") == ("The human check could not be completed (error 300030). Press Talk to try "
                                          "it again.")
        assert voice.call_posts == [] and standin.verifications == []
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        [post] = voice.call_posts
        assert json_body(post)["turnstile_token"] == standin.widget_loads[2].token
        voice.page.click("#talk")
        voice.wait_for_state("ended")


class TestWithoutHumanCheck:
    def test_nothing_of_turnstile_is_loaded_or_allowed(self, audio_only_system: LocalSystem, browser: Browser,
                                                       open_page: OpenPage) -> None:
        voice = open_page(audio_only_system, browser)
        options = voice.page.evaluate("(url) => fetch(url).then((r) => r.json())",
                                      f"{audio_only_system.api_url}/options")
        assert options["turnstile"] is None
        policy = voice.page.evaluate(
            "() => document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
        assert "frame-src" not in policy and "script-src 'self';" in policy
        assert voice.page.is_hidden("#human-check")
        assert voice.page.evaluate("() => document.scripts.length") == 1  # the page's own module, no other
        assert voice.page.evaluate("() => typeof window.turnstile") == "undefined"
        origins = {"/".join(r.url.split("/", 3)[:3]) for r in voice.requests}
        assert origins <= {audio_only_system.page_url.rstrip("/"), audio_only_system.api_url}, origins


@pytest.fixture(scope="class")
def signed_in_system() -> Iterator[tuple[LocalSystem, Issuer]]:
    """Turnstile for anonymous callers, and the signed-in users' lane with a throwaway OIDC issuer."""
    with Issuer() as issuer:
        parameters = {**REALTIME_AUDIO_ONLY, "AnonymousBurst": "20", "TurnstileSiteKey": SITE_KEY,
                      "TurnstileSecretArn": PLACEHOLDER_SECRET_ARN, "JwtIssuer": issuer.url, "JwtAudience": AUDIENCE}
        with LocalSystem(port=0, page_port=0, parameters=parameters) as running:
            yield running, issuer


class TestSignedIn:
    def test_a_site_that_signs_its_users_in_calls_the_user_route_with_their_token_and_no_human_check(
        self, signed_in_system: tuple[LocalSystem, Issuer], browser: Browser, open_page: OpenPage
    ) -> None:
        system, issuer = signed_in_system
        standin = standin_of(system)
        standin.reset()
        token = issuer.mint(sub="user-42")
        # An anonymous visitor of the same site gets the widget...
        voice = open_page(system, browser)
        wait_for_widget_token(voice, standin, loads=1)
        # ...a signed-in one does not: the owner's own script defines talkUserToken before the page's module runs.
        voice.page.add_init_script(f"window.talkUserToken = async () => {json.dumps(token)};")
        voice.page.reload()
        voice.page.wait_for_function("() => !document.getElementById('voice').disabled")
        standin.reset()
        voice.requests.clear()
        assert voice.page.evaluate("(url) => fetch(url).then((r) => r.json())",
                                   f"{system.api_url}/options")["user_calls"] is True
        assert "signed-in user" in voice.text("#allowance-policy")
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        [post] = voice.posts_to(f"{system.api_url}/user/calls")
        assert post.all_headers()["authorization"] == f"Bearer {token}"
        assert "turnstile_token" not in json_body(post) and voice.call_posts == []
        # The widget never loaded: no script, no frame, nothing asked of the stand-in.
        assert voice.page.is_hidden("#human-check") and standin.widget_loads == [] and standin.verifications == []
        assert not [r for r in voice.requests if r.url.startswith(standin.url)]
        voice.page.click("#talk")
        voice.wait_for_state("ended")
