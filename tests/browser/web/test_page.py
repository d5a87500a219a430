"""The voice page end to end on the Realtime backend: a real browser, the real call handler and its leash, and the
local OpenAI stand-in.

The stand-in cannot understand speech: it reports how long it heard the caller speak, and answers by playing the
caller's words back with a transcript saying so. That is enough to prove audio flows both ways and, where the
owner allows the data channel, that both sides of the conversation reach the page as text. Realtime's default is an
audio-only call (no data channel, so no events at all): TestAudioOnly and TestTimeLimit run that.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from local.openai_standin.faults import Fault
from local.system import LocalSystem
from tests.browser.web.voice_page import VoicePage, hang_up_at_openai, json_body, media_sections

OpenPage = Callable[..., VoicePage]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def record_connect_time(artifacts: Path, test: str, voice: VoicePage) -> float:
    """Print and keep click-to-connected across runs (the page's clock, watched by the test's init script)."""
    took = voice.click_to_connected_ms()
    line = f"{test}: click-to-connected {took:.0f} ms"
    print(line)
    with (artifacts / "click-to-connected.txt").open("a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    return took


def assert_released(voice: VoicePage) -> None:
    report = voice.release_report()
    assert report["tracks"] and all(state == "ended" for state in report["tracks"]), report
    assert report["pcs"] and all(pc == ["closed", "closed"] for pc in report["pcs"]), report
    assert all(channel == "closed" for channel in report["channels"]), report
    assert report["audioContexts"] and all(c == "closed" for c in report["audioContexts"]), report
    assert report["remoteAudio"] is False, report
    assert report["levels"] == [0, 0], report
    assert voice.page.is_hidden("#time-left")


def wait_for_hangup_at_standin(system: LocalSystem, call_id: str, timeout: float = 5) -> None:
    assert system.standin is not None
    deadline = time.monotonic() + timeout
    while not system.standin.hangups_for(call_id):
        assert time.monotonic() < deadline, f"OpenAI was never asked to hang up {call_id}"
        time.sleep(0.05)


class TestCalls:
    """A call from start to finish, and each way one can fail before it starts."""

    def test_a_call_connects_and_both_sides_of_the_conversation_appear(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        voice = open_page(system, browser)
        # The page runs under the deployed policies: the header's (scripts and styles its own), and its own <meta>,
        # written as the site deployer writes it, reaching only its own origin and the API's host.
        assert "script-src 'self'" in voice.csp_header and "style-src 'self'" in voice.csp_header
        assert "connect-src" not in voice.csp_header
        policy = voice.page.evaluate(
            "() => document.head.firstElementChild.matches('meta[http-equiv=\"Content-Security-Policy\"]')"
            " ? document.head.firstElementChild.content : ''")
        assert f"connect-src 'self' {origin_of(system.api_url)};" in policy
        assert origin_of(system.page_url) != origin_of(system.api_url)
        assert system.standin is not None
        blocked = voice.page.evaluate("(url) => fetch(url).then(() => 'fetched', () => 'blocked')",
                                      system.standin.base_url + "/realtime/calls")
        assert blocked == "blocked", "any other host, OpenAI's included, is out of the page's reach"
        # The policy blocked it (not the network): take that one violation out of those the teardown reports.
        violations = voice.page.evaluate("""(host) => {
            const mine = window.__cspViolations.filter((v) => v.includes(host));
            window.__cspViolations = window.__cspViolations.filter((v) => !v.includes(host));
            return mine; }""", origin_of(system.standin.base_url))
        assert violations and all(v.startswith("connect-src blocked") for v in violations), violations
        assert voice.text("#status").startswith("Idle")
        assert "Each call lasts at most 5 minutes." in voice.text("#allowance-policy")

        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        assert record_connect_time(artifacts, "call", voice) > 0
        assert voice.text("#status").startswith("Connected")
        assert voice.text("#talk") == "Hang up"

        # The offer went cross-origin to the call service, which answered with OpenAI's SDP: the browser itself
        # never spoke HTTP to OpenAI and never saw an OpenAI token.
        [call_request] = voice.call_posts
        assert call_request.all_headers()["origin"] == origin_of(system.page_url)
        body = json_body(call_request)
        assert set(body) == {"sdp", "voice", "preset"}
        assert body["sdp"].startswith("v=0") and media_sections(body["sdp"]) == ["audio", "application"]
        assert (body["voice"], body["preset"]) == ("marin", "default")
        response = call_request.response()
        assert response is not None and response.status == 201
        assert "ek_" not in response.text() and "token\"" not in response.text().replace("hangup_token", "")
        assert voice.openai_requests == []
        assert voice.text("#allowance-left") == "Calls left right now: 19 of 20."

        # The time left counts down from the call's limit.
        assert voice.page.is_visible("#time-left")
        assert voice.page.get_attribute("#time-left", "role") == "timer"
        left = int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0)
        assert 290 <= left <= 300
        assert re.fullmatch(r"Time left: [45]:\d\d", voice.text("#time-left"))
        assert voice.page.get_attribute("#time-left", "data-warning") == "false"

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
        events = voice.event_types
        for expected in ("input_audio_buffer.speech_started", "response.output_audio_transcript.delta",
                         "output_audio_buffer.started", "response.done"):
            assert expected in events
        assert voice.sent == []  # talking needs no client events
        assert int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0) < left  # it counts live

        voice.page.mouse.move(0, 0)  # no hover effect in the picture
        voice.page.screenshot(path=str(artifacts / "connected.png"), full_page=True)
        assert voice.state == "connected"

    def test_hanging_up_from_the_keyboard_ends_the_call_at_the_server_and_releases_everything(
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
        assert voice.page.evaluate("() => window.__watch.streams.at(-1).getAudioTracks().every((t) => !t.enabled)")
        assert "muted" in voice.text("#status")
        voice.page.click("#mute")
        assert voice.page.evaluate("() => window.__watch.streams.at(-1).getAudioTracks().every((t) => t.enabled)")

        [placed] = voice.placed_calls()
        voice.page.focus("#talk")
        with voice.page.expect_response(lambda r: r.url.endswith("/hangup")) as hung_up:
            voice.page.keyboard.press("Space")
        assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status").startswith("Call ended")
        assert voice.text("#talk") == "Talk"
        assert voice.page.is_disabled("#mute")
        assert_released(voice)

        # The hangup route got the call's own token, and gave the unused minutes back.
        [hangup] = voice.hangup_posts
        assert hangup.url == f"{system.calls_url}/{placed['call_id']}/hangup"
        assert json_body(hangup) == {"hangup_token": placed["hangup_token"]}
        assert hung_up.value.status == 200  # (a keepalive answer's body is not kept for Playwright to read)
        wait_for_hangup_at_standin(system, placed["call_id"])
        assert len(voice.call_posts) == 1

    def test_closing_the_page_hangs_up_the_call(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        [placed] = voice.placed_calls()
        # Playwright does not report a request sent as the page goes away; the API's own request log does.
        api_log: list[str] = []
        hangup = f"/calls/{placed['call_id']}/hangup"
        system.request_log = api_log.append
        try:
            voice.page.goto("about:blank")  # pagehide, as when the tab closes: the hangup goes out with keepalive
            deadline = time.monotonic() + 5
            while not any(line.startswith("POST") and hangup in line for line in api_log):
                assert time.monotonic() < deadline, api_log
                time.sleep(0.05)
        finally:
            system.request_log = None
        [answered] = [line for line in api_log if line.startswith("POST") and hangup in line]
        assert f"{hangup} 200 " in answered, answered
        wait_for_hangup_at_standin(system, placed["call_id"])

    def test_a_refused_microphone_is_explained_and_the_call_set_up_meanwhile_is_hung_up(
        self, system: LocalSystem, browser_refusing_the_microphone: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser_refusing_the_microphone)
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert "Microphone access was denied" in voice.text("#message")
        # The call was set up alongside the prompt, then hung up at once: its minutes go back.
        [placed] = voice.placed_calls()
        wait_for_hangup_at_standin(system, placed["call_id"])
        assert len(voice.hangup_posts) == 1
        assert all(pc == ["closed", "closed"] for pc in voice.peer_connections)
        assert voice.text("#talk") == "Talk" and voice.page.is_enabled("#talk")
        assert voice.page.is_hidden("#time-left")

    def test_a_slow_microphone_prompt_does_not_hold_up_the_call_and_its_time_runs_from_the_answer(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        # A person who takes 4 s to answer the prompt: the call is set up meanwhile and its time runs.
        voice.page.evaluate("""() => {
          const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
          navigator.mediaDevices.getUserMedia = (constraints) =>
            new Promise((resolve) => setTimeout(resolve, 4000)).then(() => ask(constraints));
        }""")
        voice.page.click("#talk")
        voice.page.wait_for_function("() => document.getElementById('status').innerText.startsWith('Asking')")
        voice.page.wait_for_selector("#time-left:not([hidden])", timeout=5000)  # the answer is in, the prompt open
        assert voice.state == "microphone"
        assert len(voice.call_posts) == 1
        assert voice.wait_for_state("connected", "error", timeout=15_000) == "connected", voice.text("#message")
        left = int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0)
        assert 290 <= left <= 297, left
        assert len(voice.call_posts) == 1
        voice.wait_for_level("mic-level", 0.1)  # the microphone went into the call that was already up

    def test_hanging_up_while_the_prompt_is_open_ends_the_call_already_set_up(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        voice.page.evaluate("""() => {
          const ask = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
          navigator.mediaDevices.getUserMedia = (constraints) =>
            new Promise((resolve) => setTimeout(resolve, 3000)).then(() => ask(constraints));
        }""")
        voice.page.click("#talk")
        voice.page.wait_for_selector("#time-left:not([hidden])", timeout=5000)  # set up, the prompt still open
        voice.page.click("#talk")  # "Hang up"
        assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status") == "Call ended — cancelled"
        [placed] = voice.placed_calls()
        wait_for_hangup_at_standin(system, placed["call_id"])
        assert len(voice.hangup_posts) == 1
        voice.page.wait_for_timeout(3500)  # the microphone arrives after all, and is let go at once
        report = voice.release_report()
        assert report["tracks"] and all(state == "ended" for state in report["tracks"]), report
        assert all(pc == ["closed", "closed"] for pc in report["pcs"]), report
        assert voice.state == "ended" and len(voice.call_posts) == 1

    def test_a_failing_call_service_is_explained(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(system, browser)
        standin = system.standin
        assert standin is not None
        standin.faults.add(Fault(status=500, times=2, endpoint="calls"))  # OpenAI fails the call twice: 502
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert voice.text("#message") == ("The call service is not working right now: "
                                          "OpenAI returned an error; try again shortly.")
        assert voice.placed_calls() == [] and voice.hangup_posts == []
        assert all(state == "ended" for state in voice.release_report()["tracks"])
        assert all(pc == ["closed", "closed"] for pc in voice.peer_connections)

        # The API unreachable altogether (the browser gets no answer at all).
        voice.page.route(system.calls_url, lambda route: route.abort("connectionrefused"))
        voice.page.click("#talk")
        voice.wait_for_text("#message", "could not be reached", timeout=5000)
        assert voice.state == "error"
        assert voice.openai_requests == []

    @pytest.mark.parametrize(("status", "code", "retry_after", "expected"), [
        (429, "daily_budget_exhausted", "7200", "This site has used up its call minutes for today."),
        (503, "leash_unavailable", "5",
         "The call could not be given its time limit, so it was ended before it began. Try again in a moment."),
        (401, "anonymous_access_disabled", None,
         "This site does not take calls from this page: An API key is required."),
    ])
    def test_refusals_of_the_call_service_are_explained(
        self, system: LocalSystem, browser: Browser, open_page: OpenPage, status: int, code: str,
        retry_after: str | None, expected: str
    ) -> None:
        """Refusals the local system does not easily give on demand, answered in the API's documented shape."""
        voice = open_page(system, browser)
        headers = {"access-control-allow-origin": origin_of(system.page_url),
                   "access-control-expose-headers": "retry-after, ratelimit-limit, ratelimit-remaining"}
        if retry_after:
            headers["retry-after"] = retry_after
        server_message = "An API key is required." if status == 401 else "refused"
        voice.page.route(system.calls_url, lambda route: route.fulfill(
            status=status, headers=headers, content_type="application/json",
            body=json.dumps({"error": {"code": code, "message": server_message}})))
        voice.page.click("#talk")
        assert voice.wait_for_state("error", "connected") == "error"
        assert voice.text("#message") == expected
        if retry_after:
            assert voice.page.is_visible("#countdown") and voice.page.is_disabled("#talk")
            waiting = int(voice.page.get_attribute("#countdown", "data-seconds-left") or 0)
            assert int(retry_after) - 3 <= waiting <= int(retry_after)
        else:
            assert voice.page.is_hidden("#countdown") and voice.page.is_enabled("#talk")
        assert voice.hangup_posts == []
        assert all(pc == ["closed", "closed"] for pc in voice.peer_connections)
        assert all(state == "ended" for state in voice.release_report()["tracks"])

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


class TestAudioOnly:
    """Realtime as deployed by default: GET /options says data_channel is false, and POST /calls takes only an offer
    of one audio section. The page offers exactly that and still shows everything but the transcript."""

    def test_an_audio_only_call_talks_counts_down_and_hangs_up(
        self, audio_only_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        system = audio_only_system
        assert httpx.get(f"{system.api_url}/options", timeout=10).json()["data_channel"] is False
        voice = open_page(system, browser)
        assert voice.page.get_attribute("#app", "data-backend") == "realtime"
        assert voice.text("#transcript-empty") == "Calls on this site are voice only: no transcript is shown."

        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        assert voice.text("#status") == "Connected — speak whenever you like"
        # The offer the API received: one audio section, no data channel; and the page never made one.
        [call_request] = voice.call_posts
        assert media_sections(json_body(call_request)["sdp"]) == ["audio"]
        assert voice.channels_made == 0
        [placed] = voice.placed_calls()

        left = int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0)
        assert 290 <= left <= 300
        assert re.fullmatch(r"Time left: [45]:\d\d", voice.text("#time-left"))
        # Sound both ways: the fake microphone, and the stand-in playing back what it heard on a call with no channel.
        assert voice.wait_for_level("mic-level", 0.2) > 0.2
        assert voice.wait_for_level("assistant-level", 0.2) > 0.2
        assert int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0) < left  # it counts live
        assert voice.page.locator("#transcript .turn").count() == 0
        assert voice.text("#transcript-empty") == "Calls on this site are voice only: no transcript is shown."
        voice.page.mouse.move(0, 0)
        voice.page.screenshot(path=str(artifacts / "audio-only-connected.png"), full_page=True)

        with voice.page.expect_response(lambda r: r.url.endswith("/hangup")) as hung_up:
            voice.page.click("#talk")
        assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status") == "Call ended — press Talk to call again"
        assert voice.page.get_attribute("#app", "data-reason") == "hung-up"
        assert voice.page.is_hidden("#reconnect")
        assert hung_up.value.status == 200
        assert_released(voice)
        wait_for_hangup_at_standin(system, placed["call_id"])
        assert system.standin is not None
        record = system.standin.call(placed["call_id"])
        assert record is not None and record.connected and record.ended
        assert record.server_event_types == [] and record.client_events == []  # nothing could go either way

    def test_a_call_closed_at_openai_before_its_limit_is_told_and_its_minutes_go_back(
        self, audio_only_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        system = audio_only_system
        voice = open_page(system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        [placed] = voice.placed_calls()
        voice.wait_for_level("assistant-level", 0.1)

        # The stand-in closes the connection (DTLS close_notify): the page must take that as the end, since ICE
        # goes on saying "connected" for seconds. It still tells the API, which finds the call gone at OpenAI and
        # gives its unused minutes back.
        with voice.page.expect_response(lambda r: r.url.endswith("/hangup")) as hung_up:
            hang_up_at_openai(system, placed["call_id"])
            assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status") == "Call ended — closed by OpenAI"
        assert voice.text("#message") == ("Call ended: OpenAI closed the call before its time was up. "
                                          "Press Reconnect to start a new call.")
        assert voice.page.get_attribute("#app", "data-reason") == "closed"
        assert voice.page.is_visible("#reconnect")
        assert_released(voice)
        [hangup] = voice.hangup_posts
        assert hangup.url == f"{system.calls_url}/{placed['call_id']}/hangup"
        assert hung_up.value.status == 200
        assert system.standin is not None
        assert [h.status for h in system.standin.hangups_for(placed["call_id"])] == [200, 404]  # ours, then the API's

        voice.page.click("#reconnect")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert len(voice.call_posts) == 2 and voice.channels_made == 0
        voice.page.click("#talk")
        assert voice.wait_for_state("ended") == "ended"


class TestRateLimit:
    """A caller over their allowance."""

    def test_a_rate_limited_caller_sees_a_live_countdown_and_can_call_after_it(
        self, limited_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(limited_system, browser)
        voice.page.click("#talk")  # this caller's only call
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert voice.page.get_attribute("#allowance-left", "data-remaining") == "0"
        voice.page.click("#talk")
        assert voice.wait_for_state("ended") == "ended"

        voice.page.click("#talk")  # the one too many
        assert voice.wait_for_state("error", "connected") == "error"
        assert "too many calls" in voice.text("#message")
        assert voice.page.is_visible("#countdown")
        first = int(voice.page.get_attribute("#countdown", "data-seconds-left") or 0)
        assert 1 <= first <= 6
        assert re.fullmatch(r"You can try again in \d s\.", voice.text("#countdown"))
        assert voice.page.is_disabled("#talk")
        assert len(voice.placed_calls()) == 1
        assert all(state == "ended" for state in voice.release_report()["tracks"])  # the granted mic is let go

        voice.page.wait_for_function(
            "(first) => Number(document.getElementById('countdown').dataset.secondsLeft) < first", arg=first,
            timeout=3000)  # it counts down live
        voice.page.wait_for_function("() => !document.getElementById('talk').disabled", timeout=10_000)
        assert voice.page.is_hidden("#countdown")
        assert voice.state == "idle"
        assert "You can call again now" in voice.text("#message")

        voice.page.click("#talk")  # the call earned back during the wait
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert voice.page.get_attribute("#allowance-left", "data-remaining") == "0"


class TestTimeLimit:
    """The server ends every call at MaxCallSeconds; the page counts down to it and does not call again. Audio-only
    calls: no event says the call ended, the connection closing at the limit does."""

    def test_the_server_hangs_up_at_the_limit_and_the_page_says_so_without_reconnecting(
        self, ten_second_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        system = ten_second_system
        voice = open_page(system, browser)
        assert "Each call lasts at most 10 seconds." in voice.text("#allowance-policy")
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        connected_at = time.monotonic()
        [placed] = voice.placed_calls()
        assert placed["max_seconds"] == 10
        assert media_sections(json_body(voice.call_posts[0])["sdp"]) == ["audio"] and voice.channels_made == 0

        # The countdown, already in its warning stretch: a 10-second call has less than 30 s from the start.
        left = int(voice.page.get_attribute("#time-left", "data-seconds-left") or 0)
        assert 1 <= left <= 10
        assert re.fullmatch(r"Time left: 0:(0\d|10)", voice.text("#time-left"))
        assert voice.page.get_attribute("#time-left", "data-warning") == "true"
        assert re.fullmatch(r"\d+ seconds left: the call ends at its 10-second limit\.", voice.text("#message"))
        voice.page.screenshot(path=str(artifacts / "time-limit-warning.png"), full_page=True)

        # The leash hangs the call up at OpenAI; the page sees the connection go at the limit.
        assert voice.wait_for_state("ended", timeout=20_000) == "ended"
        took = time.monotonic() - connected_at
        assert took > 5, took  # the call's 10 s, less what passed before the page showed "connected"
        assert voice.text("#message") == "Call ended: the 10-second limit was reached"
        assert voice.text("#status") == "Call ended — time limit reached"
        assert voice.page.get_attribute("#app", "data-reason") == "limit"
        assert voice.page.is_hidden("#reconnect")
        assert "Call ended: the 10-second limit was reached" in voice.text("#transcript")
        assert voice.event_types == []  # nothing said so: the page knew it from the limit and the connection
        assert system.standin is not None and len(system.standin.hangups_for(placed["call_id"])) == 1
        assert_released(voice)

        # Nothing more: no second call, and no hangup from the page for a call the server already ended.
        voice.page.wait_for_timeout(3000)
        assert len(voice.call_posts) == 1
        assert voice.hangup_posts == []
        assert voice.state == "ended"
        assert len(voice.peer_connections) == 1
        voice.page.mouse.move(0, 0)
        voice.page.screenshot(path=str(artifacts / "time-limit-reached.png"), full_page=True)


    def test_hanging_up_during_the_warning_leaves_no_stale_warning(
        self, ten_second_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(ten_second_system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert "seconds left" in voice.text("#message")  # a 10-second call is in its warning stretch at once
        voice.page.click("#talk")  # "Hang up"
        assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#status") == "Call ended — press Talk to call again"
        assert voice.text("#message") == ""
        assert voice.page.is_hidden("#time-left")
        assert_released(voice)


class TestSessionEnd:
    """OpenAI ending a session that is under way, long before the call's limit."""

    def test_when_openai_ends_the_session_the_page_says_so_and_reconnects(
        self, short_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        voice = open_page(short_system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        [placed] = voice.placed_calls()

        # The stand-in sends an error event at its maximum session length, then closes the connection.
        assert voice.wait_for_state("ended", timeout=10_000) == "ended"
        message = voice.text("#message")
        assert message.startswith("The connection dropped"), message
        assert "maximum duration of 3 seconds" in message
        assert voice.text("#status") == "Call ended — the connection dropped"
        assert voice.page.is_visible("#reconnect")
        assert_released(voice)
        # A dropped call may still run at OpenAI: the page hangs it up, which gives its unused minutes back.
        wait_for_hangup_at_standin(short_system, placed["call_id"])
        [hangup] = voice.hangup_posts
        assert hangup.url.endswith(f"/{placed['call_id']}/hangup")

        voice.page.click("#reconnect")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        assert record_connect_time(artifacts, "reconnect", voice) > 0
        assert voice.page.is_hidden("#reconnect")
        assert len(voice.call_posts) == 2  # a reconnect is a new call
        assert len(voice.peer_connections) == 2
        voice.wait_for_event("session.created", count=2)
        # The new session runs to the same limit, and is let go the same way.
        assert voice.wait_for_state("ended", timeout=10_000) == "ended"
        assert voice.page.is_visible("#reconnect")
        assert_released(voice)
