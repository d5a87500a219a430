"""The page on the GPT-Live backend (`VoiceBackend=live`, the stack's default): the same page and the same /calls
route, different events.

GPT-Live starts the session when the server creates it (the page never sends `session.start`), sends transcripts as
deltas with no done event, and reports cumulative usage in seconds. The session's allow-list lets the browser see
only those and `error`: never `session.started` or `session.closed`, which carry the owner's instructions. So the
page is connected when its data channel opens, and knows why a call ended from the limit and the connection. The
browser may send only what the allow-list lets through; the page needs nothing at all to talk.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from local.parameters import ParameterError
from local.system import LocalSystem
from tests.browser.web.voice_page import VoicePage, hang_up_at_openai, json_body, media_sections

OpenPage = Callable[..., VoicePage]
LIMIT_SECONDS = 20  # long enough for a sentence, its echo and a few usage reports
# The session resource, instructions included: the allow-list keeps both from the browser.
HIDDEN_EVENTS = {"session.started", "session.closed"}


@pytest.fixture(scope="class")
def live_system() -> Iterator[LocalSystem]:
    parameters = {"VoiceBackend": "live", "MaxCallSeconds": str(LIMIT_SECONDS), "AnonymousBurst": "20"}
    try:
        running = LocalSystem(port=0, page_port=0, parameters=parameters)
    except ParameterError as exc:
        pytest.skip(f"the stack does not accept VoiceBackend=live yet: {exc}")
    with running:
        backend = httpx.get(f"{running.api_url}/options", timeout=10).json().get("backend")
        if backend != "live":
            pytest.skip(f"VoiceBackend=live is accepted but GET /options says backend={backend!r}: not wired yet")
        yield running


class TestLive:
    def test_a_live_call_talks_shows_usage_and_ends_at_the_limit(
        self, live_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        system = live_system
        voice = open_page(system, browser)
        assert voice.page.get_attribute("#app", "data-backend") == "live"
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error", "ended") == "connected", voice.text("#message")
        connected_at = time.monotonic()
        [placed] = voice.placed_calls()
        assert placed["call_id"].startswith("live_") and placed["max_seconds"] == LIMIT_SECONDS
        # Live allows the channel, so the page offers it: connected means it opened, since no event says so.
        assert httpx.get(f"{system.api_url}/options", timeout=10).json()["data_channel"] is True
        assert media_sections(json_body(voice.call_posts[0])["sdp"]) == ["audio", "application"]
        assert voice.page.evaluate("() => window.__watch.channels.map((c) => c.readyState)") == ["open"]

        # Both sides as text, assembled from deltas.
        voice.wait_for_text("#transcript [data-role=user] .words", r"heard \d+\.\d s of speech")
        voice.wait_for_text("#transcript [data-role=assistant] .words", r"played back\.$")
        assert voice.wait_for_level("assistant-level", 0.2) > 0.2
        roles = voice.page.eval_on_selector_all("#transcript .turn", "(turns) => turns.map((t) => t.dataset.role)")
        assert roles[:2] == ["user", "assistant"]

        # Minutes used, from the session's cumulative seconds.
        voice.wait_for_event("session.usage.updated", count=2)
        assert voice.page.is_visible("#usage")
        assert re.fullmatch(r"Minutes used: \d+\.\d", voice.text("#usage"))
        assert float(voice.page.get_attribute("#usage", "data-seconds") or 0) > 0

        # The page sent nothing: no session.start, nothing the allow-list would refuse.
        assert voice.sent == []
        assert "error" not in voice.event_types
        voice.page.mouse.move(0, 0)
        voice.page.screenshot(path=str(artifacts / "live-connected.png"), full_page=True)

        # The leash hangs the session up at the limit; the page says it was the limit and calls no more.
        assert voice.wait_for_state("ended", timeout=(LIMIT_SECONDS + 10) * 1000) == "ended"
        assert time.monotonic() - connected_at > LIMIT_SECONDS - 5
        assert voice.text("#message") == f"Call ended: the {LIMIT_SECONDS}-second limit was reached"
        assert voice.text("#status") == "Call ended — time limit reached"
        assert voice.page.get_attribute("#app", "data-reason") == "limit"
        assert voice.page.is_hidden("#reconnect")
        assert HIDDEN_EVENTS.isdisjoint(voice.event_types), voice.event_types
        assert system.standin is not None
        record = system.standin.call(placed["call_id"])
        assert record is not None and record.end_reason == "hangup"  # the leash's
        assert HIDDEN_EVENTS.isdisjoint(record.server_event_types)  # not sent at all, not merely unseen
        assert float(voice.page.get_attribute("#usage", "data-seconds") or 0) >= LIMIT_SECONDS - 5
        assert all(pc == ["closed", "closed"] for pc in voice.peer_connections)
        voice.page.wait_for_timeout(2000)
        assert len(voice.call_posts) == 1 and voice.hangup_posts == []

    def test_an_event_outside_the_allow_list_is_refused_and_the_call_goes_on(
        self, live_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(live_system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        # What a visitor could try from the console: change the session. The page itself never sends this.
        attempt = {"type": "session.update", "event_id": "evt_console", "session": {"instructions": "Be rude."}}
        voice.page.evaluate("(event) => window.__watch.channels.at(-1).send(JSON.stringify(event))", attempt)
        voice.wait_for_event("error")
        [refusal] = voice.page.evaluate("() => window.__watch.events.filter((e) => e.type === 'error')")
        assert refusal["error"]["client_event_id"] == "evt_console", json.dumps(refusal)
        assert voice.text("#message").startswith("OpenAI reported:")
        # Still talking.
        assert voice.state == "connected"
        voice.wait_for_text("#transcript [data-role=assistant] .words", r"played back\.$")
        voice.page.click("#talk")
        assert voice.wait_for_state("ended") == "ended"
        assert len(voice.hangup_posts) == 1

    def test_a_session_closed_early_at_openai_is_told_in_plain_words(
        self, live_system: LocalSystem, browser: Browser, open_page: OpenPage
    ) -> None:
        voice = open_page(live_system, browser)
        voice.page.click("#talk")
        assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
        [placed] = voice.placed_calls()
        # Hung up at OpenAI long before the limit (as an owner's script might). No event says why any more: the
        # page sees the connection closed cleanly before the limit, and still tells the API (minutes back).
        with voice.page.expect_response(lambda r: r.url.endswith("/hangup")) as hung_up:
            hang_up_at_openai(live_system, placed["call_id"])
            assert voice.wait_for_state("ended") == "ended"
        assert voice.text("#message") == ("Call ended: OpenAI closed the call before its time was up. "
                                          "Press Reconnect to start a new call.")
        assert voice.text("#status") == "Call ended — closed by OpenAI"
        assert voice.page.is_visible("#reconnect")
        assert voice.page.get_attribute("#app", "data-reason") == "closed"
        assert all(pc == ["closed", "closed"] for pc in voice.peer_connections)
        assert HIDDEN_EVENTS.isdisjoint(voice.event_types), voice.event_types
        assert hung_up.value.status == 200 and len(voice.hangup_posts) == 1
