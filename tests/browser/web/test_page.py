"""The voice page end to end: a real browser, the real token handler, and the local OpenAI Realtime stand-in.

The stand-in cannot understand speech: it reports how long it heard the caller speak, and answers by playing the
caller's words back with a transcript saying so. That is enough to prove audio flows both ways and that both
sides of the conversation reach the page as text.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, Route

from local.openai_standin.client_secrets import Fault
from local.system import LocalSystem
from tests.browser.web.voice_page import VoicePage

CONNECT_BUDGET_MS = 5000  # generous: locally it takes a few hundred ms

OpenPage = Callable[..., VoicePage]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def record_connect_time(artifacts: Path, test: str, timings: dict[str, float]) -> float:
    """Print and keep click-to-connected (with when the microphone and the token were ready) across runs."""
    line = (f"{test}: click-to-connected {timings['clickToConnectedMs']:.0f} ms "
            f"(microphone {timings['microphoneMs']:.0f} ms, token {timings['tokenMs']:.0f} ms)")
    print(line)
    with (artifacts / "click-to-connected.txt").open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    return timings["clickToConnectedMs"]


def assert_released(voice: VoicePage) -> None:
    report = voice.release_report()
    assert report["tracks"] and all(state == "ended" for state in report["tracks"]), report
    assert report["pc"] in (None, "closed") and report["signaling"] in (None, "closed"), report
    assert report["channel"] in (None, "closed"), report
    assert report["audioContext"] in (None, "closed"), report
    assert report["metersRunning"] is False, report
    assert report["remoteAudio"] is None, report
    assert report["levels"] == [0, 0], report


class TestCalls:
    """A call from start to finish, and each way one can fail before it starts."""

    def test_a_call_connects_and_both_sides_of_the_conversation_appear(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        voice = open_page(system, browser)
        # The page runs under the deployed policy, reaching only its own origin, the API and OpenAI.
        assert "script-src 'self'" in voice.csp_header and "style-src 'self'" in voice.csp_header
        assert origin_of(system.api_url) in voice.csp_header and origin_of(system.realtime_url) in voice.csp_header
        assert origin_of(system.page_url) != origin_of(system.api_url)
        assert voice.text("#status").startswith("Idle")

        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        assert 0 < record_connect_time(artifacts, "call", voice.timings) < CONNECT_BUDGET_MS
        assert voice.text("#status").startswith("Connected")
        assert voice.text("#talk") == "Hang up"

        # The token came cross-origin from the page; the offer went to OpenAI with the token and nothing more.
        [token_request] = voice.token_posts
        assert token_request.all_headers()["origin"] == origin_of(system.page_url)
        assert json.loads(token_request.post_data or "{}") == {"voice": "marin", "preset": "default"}
        [offer] = voice.offer_posts
        assert offer.url == system.realtime_url  # no ?model=: the model is bound to the token
        headers = offer.all_headers()
        assert headers["authorization"].startswith("Bearer ek_")
        assert headers["content-type"] == "application/sdp"
        assert not any(name.startswith("openai") for name in headers)
        assert offer.post_data and offer.post_data.startswith("v=0")
        assert voice.text("#allowance-left") == "Calls left right now: 19 of 20."

        voice.wait_for_event("session.created")
        assert voice.wait_for_level("mic-level", 0.2) > 0.2  # the fake microphone is speaking

        # The stand-in hears the sentence, transcribes it (as a duration) and plays it back.
        user = voice.page.locator("#transcript [data-role=user] .words").first
        assistant = voice.page.locator("#transcript [data-role=assistant] .words").first
        voice.wait_for_text("#transcript [data-role=user] .words", r"heard \d+\.\d s of speech")
        assert voice.wait_for_level("assistant-level", 0.2) > 0.2  # the answer is audible
        voice.wait_for_text("#transcript [data-role=assistant] .words", r"played back\.$")
        assert re.fullmatch(r"\(local stand-in heard \d+\.\d s of speech\)", user.inner_text())
        assert re.fullmatch(r"You said something for \d+\.\d seconds; here it is played back\.", assistant.inner_text())
        roles = voice.page.eval_on_selector_all("#transcript .turn", "(turns) => turns.map((t) => t.dataset.role)")
        assert roles[:2] == ["user", "assistant"]
        events = voice.page.evaluate("() => window.__voice.events")
        for expected in ("input_audio_buffer.speech_started", "response.output_audio_transcript.delta",
                         "output_audio_buffer.started", "response.done"):
            assert expected in events

        voice.page.mouse.move(0, 0)  # no hover effect in the picture
        voice.page.screenshot(path=str(artifacts / "connected.png"), full_page=True)
        assert voice.state == "connected"

    def test_hanging_up_from_the_keyboard_releases_everything(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        voice.page.keyboard.press("Tab")
        assert voice.page.evaluate("() => document.activeElement.id") == "talk"
        outline = voice.page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("", "none"), "keyboard focus must be visible"

        voice.page.keyboard.press("Enter")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        voice.wait_for_event("session.created")
        voice.wait_for_level("mic-level", 0.1)

        voice.page.click("#mute")
        assert voice.page.get_attribute("#mute", "aria-pressed") == "true"
        assert voice.page.evaluate("() => window.__voice.stream.getAudioTracks().every((t) => !t.enabled)")
        assert "muted" in voice.text("#status")
        voice.page.click("#mute")
        assert voice.page.evaluate("() => window.__voice.stream.getAudioTracks().every((t) => t.enabled)")

        voice.page.focus("#talk")
        voice.page.keyboard.press("Space")
        assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status").startswith("Call ended")
        assert voice.text("#talk") == "Talk"
        assert voice.page.is_disabled("#mute")
        assert_released(voice)

    def test_a_refused_microphone_is_explained_and_no_call_is_made(
        self, system: LocalSystem, browser_refusing_the_microphone: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser_refusing_the_microphone)
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert "Microphone access was denied" in voice.text("#message")
        # The token was asked for alongside the prompt, then dropped: no offer ever goes to OpenAI.
        assert len(voice.token_posts) == 1
        voice.page.wait_for_timeout(500)
        assert voice.offer_posts == []
        assert voice.page.evaluate("() => window.__voice.pc") is None
        assert voice.text("#talk") == "Talk" and voice.page.is_enabled("#talk")

    def test_a_token_older_than_its_lifetime_is_replaced_before_the_call(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        # A person who takes a while to answer the prompt: the microphone arrives 6 s after the click, when the
        # 10 s token fetched alongside the prompt has less than the page's 5 s margin left.
        voice.page.evaluate("""() => {
          const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
          navigator.mediaDevices.getUserMedia = (constraints) =>
            new Promise((resolve) => setTimeout(resolve, 6000)).then(() => ask(constraints));
        }""")
        voice.page.click("#talk")
        voice.page.wait_for_function("() => document.getElementById('status').innerText.startsWith('Asking')")
        assert voice.wait_for_state("connected", "error", timeout=15_000) == "connected", voice.text("#message")
        tokens = []
        for request in voice.token_posts:
            response = request.response()
            assert response is not None
            tokens.append(response.json()["token"])
        assert len(tokens) == 2, "one token alongside the prompt, a fresh one once the microphone was granted"
        [offer] = voice.offer_posts
        assert offer.all_headers()["authorization"] == f"Bearer {tokens[1]}"

    def test_openai_refusing_the_offer_shows_openais_message(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        standin = system.standin
        assert standin is not None

        def expire_on_the_way(route: Route) -> None:
            # A real token from the real API, expired at the stand-in before the page can use it.
            response = route.fetch()
            standin.registry.expire(response.json()["token"])
            route.fulfill(response=response)

        voice.page.route(system.token_url, expire_on_the_way)
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        message = voice.text("#message")
        assert message.startswith("OpenAI refused the call: Incorrect API key provided: ek_"), message
        assert len(voice.offer_posts) == 1
        assert_released(voice)

    def test_a_failing_token_service_is_explained(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        standin = system.standin
        assert standin is not None
        standin.faults.add(Fault(status=500, times=2))  # OpenAI fails the mint twice: the API answers 502
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert voice.text("#message") == ("The token service is not working right now: "
                                          "OpenAI returned an error; try again shortly.")
        assert voice.offer_posts == []
        assert all(state == "ended" for state in voice.release_report()["tracks"])

        # The API unreachable altogether (the browser gets no answer at all).
        voice.page.route(system.token_url, lambda route: route.abort("connectionrefused"))
        voice.page.click("#talk")
        voice.wait_for_text("#message", "could not be reached", timeout=5000)
        assert voice.state == "error"
        assert voice.offer_posts == []

    def test_the_page_fits_a_narrow_screen(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        voice = open_page(system, browser, viewport={"width": 360, "height": 780}, color_scheme="dark")
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        voice.page.locator("#transcript [data-role=assistant]").first.wait_for(timeout=15_000)
        overflow = voice.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a 360px screen"
        box = voice.page.locator("#talk").bounding_box()
        assert box is not None and box["width"] >= 100  # still the big button
        voice.page.mouse.move(0, 0)
        voice.page.screenshot(path=str(artifacts / "connected-narrow-dark.png"), full_page=True)


class TestRateLimit:
    """A caller over their allowance."""

    def test_a_rate_limited_caller_sees_a_live_countdown_and_can_call_after_it(
        self, limited_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(limited_system, browser)
        # Spend this caller's only token (same address as the browser), so the page's request is the one too many.
        assert httpx.post(limited_system.token_url, json={}, timeout=10).status_code == 200

        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert "too many calls" in voice.text("#message")
        assert voice.page.is_visible("#countdown")
        first = int(voice.page.get_attribute("#countdown", "data-seconds-left") or 0)
        assert 1 <= first <= 6
        assert re.fullmatch(r"You can try again in \d s\.", voice.text("#countdown"))
        assert voice.page.is_disabled("#talk")
        assert voice.offer_posts == []
        assert all(state == "ended" for state in voice.release_report()["tracks"])  # the granted mic is let go

        voice.page.wait_for_function(
            "(first) => Number(document.getElementById('countdown').dataset.secondsLeft) < first", arg=first,
            timeout=3000)  # it counts down live
        voice.page.wait_for_function("() => !document.getElementById('talk').disabled", timeout=10_000)
        assert voice.page.is_hidden("#countdown")
        assert voice.state == "idle"
        assert "You can call again now" in voice.text("#message")

        voice.page.click("#talk")  # the token earned back during the wait
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert voice.page.get_attribute("#allowance-left", "data-remaining") == "0"


class TestSessionEnd:
    """OpenAI ending a session that is under way."""

    def test_when_openai_ends_the_session_the_page_says_so_and_reconnects(
        self, short_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        voice = open_page(short_system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        voice.page.evaluate("() => { window.__firstCall = window.__voice.pc; }")

        # The stand-in sends an error event at its maximum session length, then closes the connection.
        assert voice.wait_for_state("ended", timeout=10_000) == "ended"
        message = voice.text("#message")
        assert message.startswith("The connection dropped"), message
        assert "maximum duration of 3 seconds" in message
        assert voice.text("#status") == "Call ended — the connection dropped"
        assert voice.page.is_visible("#reconnect")
        assert_released(voice)

        voice.page.click("#reconnect")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert 0 < record_connect_time(artifacts, "reconnect", voice.timings) < CONNECT_BUDGET_MS
        assert voice.page.is_hidden("#reconnect")
        assert voice.page.evaluate("() => window.__voice.pc !== window.__firstCall")
        voice.page.wait_for_function("() => window.__voice.events.filter((t) => t === 'session.created').length === 2")
        # The new session runs to the same limit, and is let go the same way.
        assert voice.wait_for_state("ended", timeout=10_000) == "ended"
        assert voice.page.is_visible("#reconnect")
        assert_released(voice)
