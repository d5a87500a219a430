"""The page under test in headless Chromium, against the whole local system.

The browser hears a spoken sentence through Chromium's fake microphone. The page is served from one origin and the
token API from another (so CORS and the Origin check are exercised), under the Content-Security-Policy header the
deployed site gets. The token API is the real handler behind the API Gateway emulation; OpenAI is the local
Realtime stand-in, which answers a call by playing back what it heard and sends transcripts of both sides.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, Request, sync_playwright

from local.system import LocalSystem

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
SENTENCE = "Hello, can you hear me? This is a test of the voice page."

# Collected before any page script runs (init scripts are exempt from the page's CSP), so a blocked inline style or
# script anywhere in the page's life shows up here.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`);
});
"""

# Everything a call holds, as the page's debug hook shows it after the call.
RELEASE_REPORT = """() => ({
  state: window.__voice.state,
  tracks: (window.__voice.stream?.getTracks() ?? []).map((t) => t.readyState),
  pc: window.__voice.pc ? window.__voice.pc.connectionState : null,
  signaling: window.__voice.pc ? window.__voice.pc.signalingState : null,
  channel: window.__voice.channel ? window.__voice.channel.readyState : null,
  audioContext: window.__voice.audioContext ? window.__voice.audioContext.state : null,
  metersRunning: window.__voice.metersRunning,
  remoteAudio: document.querySelector('#remote-audio').srcObject,
  levels: [...document.querySelectorAll('meter')].map((m) => Number(m.dataset.level)),
})"""


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


@contextmanager
def running_system(**options: Any) -> Iterator[LocalSystem]:
    # LocalSystem points this process's AWS_* variables at its moto; give the rest of the suite its own back.
    saved = dict(os.environ)
    try:
        with LocalSystem(port=0, page_port=0, **options) as system:
            yield system
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def system() -> Iterator[LocalSystem]:
    with running_system(parameters={"AnonymousBurst": "20"}) as running:
        yield running


@pytest.fixture(scope="session")
def limited_system() -> Iterator[LocalSystem]:
    """One token at a time, one more every 6 s: the second request in a row is answered 429."""
    with running_system(parameters={"AnonymousBurst": "1", "AnonymousRatePerHour": "600"}) as running:
        yield running


@pytest.fixture(scope="session")
def short_system() -> Iterator[LocalSystem]:
    """OpenAI ends every session after 3 s, as it does after 60 minutes."""
    with running_system(parameters={"AnonymousBurst": "20"}, standin_max_session_seconds=3) as running:
        yield running


@dataclass
class VoicePage:
    """The page in one browser context, with what it requested and any script error or CSP violation it had."""

    page: Page
    system: LocalSystem
    csp_header: str
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.page.evaluate("() => window.__voice.state")

    def wait_for_state(self, *states: str, timeout: float = 10_000) -> str:
        self.page.wait_for_function("(states) => states.includes(window.__voice.state)", arg=list(states),
                                    timeout=timeout)
        return self.state

    def wait_for_event(self, event_type: str, timeout: float = 10_000) -> None:
        self.page.wait_for_function("(type) => window.__voice.events.includes(type)", arg=event_type,
                                    timeout=timeout)

    def wait_for_level(self, meter_id: str, above: float, timeout: float = 15_000) -> float:
        self.page.wait_for_function(
            "([id, above]) => Number(document.getElementById(id).dataset.level) > above",
            arg=[meter_id, above], timeout=timeout)
        return float(self.page.get_attribute(f"#{meter_id}", "data-level") or 0)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def release_report(self) -> dict[str, Any]:
        return self.page.evaluate(RELEASE_REPORT)

    def posts_to(self, url: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.split("?")[0] == url]

    @property
    def token_posts(self) -> list[Request]:
        return self.posts_to(self.system.token_url)

    @property
    def offer_posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.startswith(self.system.realtime_url)]

    def problems(self) -> list[str]:
        violations = self.page.evaluate("() => window.__cspViolations")
        return [*self.errors, *violations]


@pytest.fixture
def open_page() -> Iterator[Callable[..., VoicePage]]:
    """open_page(system, browser, **context_options): the page loaded, its options fetched, ready for Talk."""
    opened: list[VoicePage] = []

    def open_(system: LocalSystem, browser: Browser, **context_options: Any) -> VoicePage:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
        page = context.new_page()
        page.add_init_script(WATCH_CSP)
        requests: list[Request] = []
        errors: list[str] = []
        page.on("request", requests.append)
        page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        response = page.goto(system.page_url)
        assert response is not None and response.ok
        voice = VoicePage(page, system, response.headers.get("content-security-policy", ""), requests, errors)
        page.wait_for_function("() => !document.getElementById('voice').disabled")  # options are in
        opened.append(voice)
        return voice

    yield open_
    for voice in opened:
        problems = voice.problems()
        voice.page.context.close()
        assert not problems, f"the page had script errors or CSP violations: {problems}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
