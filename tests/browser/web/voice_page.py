"""The page as the tests see it: its debug hook, what it requested, and what went wrong in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Page, Request

from local.system import LocalSystem

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

    def wait_for_text(self, selector: str, pattern: str, timeout: float = 15_000) -> str:
        """Until the first element matching `selector` has text matching the JavaScript regex `pattern`."""
        self.page.wait_for_function(
            "([selector, pattern]) => new RegExp(pattern).test(document.querySelector(selector)?.innerText ?? '')",
            arg=[selector, pattern], timeout=timeout)
        return self.text(selector)

    @property
    def timings(self) -> dict[str, float]:
        return self.page.evaluate("() => window.__voice.timings")

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

    def diagnostics(self) -> dict[str, Any]:
        return {
            "status": self.text("#status"),
            "message": self.text("#message"),
            "transcript": self.text("#transcript"),
            "debug": self.page.evaluate("() => ({state: window.__voice.state, events: window.__voice.events, "
                                        "timings: window.__voice.timings})"),
            "release": {k: v for k, v in self.release_report().items() if k != "remoteAudio"},
            "requests": [f"{r.method} {r.url}" for r in self.requests],
            "errors": self.errors,
        }

    def problems(self) -> list[str]:
        violations = self.page.evaluate("() => window.__cspViolations")
        return [*self.errors, *violations]
