"""The page under test in headless Chromium, against the whole local system.

The browser hears a spoken sentence through Chromium's fake microphone. The page is served from one origin and the
call API from another (so CORS and the Origin check are exercised), under the Content-Security-Policy header the
deployed site gets. The call API is the real handler behind the API Gateway emulation, with its leash (the state
machine's wait-then-hang-up) run by the local system; OpenAI is the local stand-in, which answers a call by playing
back what it heard and sends transcripts of both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, Request, sync_playwright

from local.system import LocalSystem
from tests.browser.web.voice_page import WATCH_CALLS, WATCH_CSP, VoicePage

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
SENTENCE = "Hello, can you hear me? This is a test of the voice page."
CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), SENTENCE], check=True, capture_output=True)
    # 48 kHz mono, as a microphone delivers it; silence after the sentence makes every loop of the file one turn
    # for the stand-in's voice detection, with time for the answer to play before the sentence comes round again.
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav), "pad", "0.3", "4"],
                   check=True, capture_output=True)
    return wav


def chromium_args(wav: Path, *, answer_prompts: bool) -> list[str]:
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
        "--disable-features=WebRtcHideLocalIpsWithMdns",  # else host candidates wait on mDNS
        "--autoplay-policy=no-user-gesture-required",
    ]
    if answer_prompts:
        args.append("--use-fake-ui-for-media-stream")  # says yes to the microphone prompt
    return args


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("browser-home")
    # Chromium writes its config and caches under XDG dirs: keep them out of the real HOME.
    return {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}


@pytest.fixture(scope="session")
def browser(playwright: Playwright, speech_wav: Path, browser_env: dict[str, str]) -> Iterator[Browser]:
    # launch() gives every run a fresh temporary profile (user-data-dir); contexts isolate the tests.
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, env=browser_env,
                                          args=chromium_args(speech_wav, answer_prompts=True))
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser_refusing_the_microphone(playwright: Playwright, speech_wav: Path,
                                    browser_env: dict[str, str]) -> Iterator[Browser]:
    """No fake prompt UI: headless Chromium dismisses the permission prompt, as a person clicking Block would."""
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, env=browser_env,
                                          args=chromium_args(speech_wav, answer_prompts=False))
    yield launched
    launched.close()


# Class scope: each group of tests gets the system it needs, and only one runs at a time (each has its own moto,
# stand-in and function processes). The stack's default backend is GPT-Live (test_live.py); these run Realtime,
# audio only (its default: GET /options says data_channel false) or with the `oai-events` channel the owner may allow.
REALTIME_AUDIO_ONLY = {"VoiceBackend": "realtime"}
REALTIME_WITH_EVENTS = {"VoiceBackend": "realtime", "RealtimeDataChannel": "true"}


@pytest.fixture(scope="class")
def system() -> Iterator[LocalSystem]:
    """Realtime with its data channel (transcripts), 5-minute calls, room for every call the class makes."""
    with LocalSystem(port=0, page_port=0, parameters={**REALTIME_WITH_EVENTS, "AnonymousBurst": "20"}) as running:
        yield running


@pytest.fixture(scope="class")
def audio_only_system() -> Iterator[LocalSystem]:
    """Realtime as deployed by default: audio-only calls, 5 minutes each."""
    with LocalSystem(port=0, page_port=0, parameters={**REALTIME_AUDIO_ONLY, "AnonymousBurst": "20"}) as running:
        yield running


@pytest.fixture(scope="class")
def limited_system() -> Iterator[LocalSystem]:
    """One call at a time, one more every 6 s: the second call in a row is answered 429."""
    with LocalSystem(port=0, page_port=0, parameters={**REALTIME_AUDIO_ONLY, "AnonymousBurst": "1",
                                                      "AnonymousRatePerHour": "600"}) as running:
        yield running


@pytest.fixture(scope="class")
def short_system() -> Iterator[LocalSystem]:
    """OpenAI ends every session after 3 s (as it does after 60 minutes), long before the call's own limit; the
    channel carries the error that says why."""
    with LocalSystem(port=0, page_port=0, parameters={**REALTIME_WITH_EVENTS, "AnonymousBurst": "20"},
                     standin_max_session_seconds=3) as running:
        yield running


@pytest.fixture(scope="class")
def ten_second_system() -> Iterator[LocalSystem]:
    """Audio-only calls that end after 10 s (the least the template allows): the leash hangs them up while the test
    watches."""
    with LocalSystem(port=0, page_port=0, parameters={**REALTIME_AUDIO_ONLY, "AnonymousBurst": "20",
                                                      "MaxCallSeconds": "10"}) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    # Kept on the test item so open_page's teardown knows whether to save what the page showed.
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def open_page(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[Callable[..., VoicePage]]:
    """open_page(system, browser, **context_options): the page loaded, its options fetched, ready for Talk."""
    opened: list[VoicePage] = []

    def open_(system: LocalSystem, browser: Browser, **context_options: Any) -> VoicePage:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
        page = context.new_page()
        page.add_init_script(WATCH_CSP)
        page.add_init_script(WATCH_CALLS)
        requests: list[Request] = []
        errors: list[str] = []
        # On the context: a keepalive request sent as the page goes away belongs to no page any more.
        context.on("request", lambda request: requests.append(request))
        page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        response = page.goto(system.page_url)
        assert response is not None and response.ok
        voice = VoicePage(page, system, response.headers.get("content-security-policy", ""), requests, errors)
        page.wait_for_function("() => !document.getElementById('voice').disabled")  # options are in
        opened.append(voice)
        return voice

    yield open_
    failed = request.node.stash.get(CALL_FAILED, False)
    for number, voice in enumerate(opened):
        if failed:  # what the page showed and knew, for a failure that does not repeat
            name = f"failed-{request.node.name}-{number}"
            voice.page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
            (artifacts / f"{name}.json").write_text(json.dumps(voice.diagnostics(), indent=2, default=str))
        problems = voice.problems()
        voice.page.context.close()
        assert not problems, f"the page had script errors or CSP violations: {problems}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
