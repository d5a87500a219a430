"""The page as the tests see it: its DOM, what it requested, and what the browser watched it do.

The page ships no test hooks. What a test needs beyond the DOM (the peer connections, data channels, microphone
streams and audio contexts the page made, the events it received and sent, when Talk was pressed and when the
page said it was connected) is watched by init scripts that wrap the browser's own APIs in the test's browser only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
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

# Everything the page makes for a call, kept by reference so a test can see its state after the page let go of it.
WATCH_CALLS = """
(() => {
  if (!window.RTCPeerConnection || !window.MediaDevices) return;  // about:blank and the like: nothing to watch
  const watch = {pcs: [], channels: [], streams: [], audioContexts: [], events: [], sent: [], states: [],
                 clicks: [], connected: []};
  Object.defineProperty(window, '__watch', {value: watch});
  const NativePeer = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePeer {
    constructor(...args) { super(...args); watch.pcs.push(this); }
  };
  const createDataChannel = NativePeer.prototype.createDataChannel;
  NativePeer.prototype.createDataChannel = function (...args) {
    const channel = createDataChannel.apply(this, args);
    watch.channels.push(channel);
    channel.addEventListener('message', (e) => {
      try { watch.events.push(JSON.parse(e.data)); } catch { watch.events.push({type: '(not JSON)'}); }
    });
    return channel;
  };
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) { watch.sent.push(String(data)); return send.call(this, data); };
  const getUserMedia = MediaDevices.prototype.getUserMedia;
  MediaDevices.prototype.getUserMedia = async function (...args) {
    const stream = await getUserMedia.apply(this, args);
    watch.streams.push(stream);
    return stream;
  };
  const NativeAudioContext = window.AudioContext;
  window.AudioContext = class extends NativeAudioContext {
    constructor(...args) { super(...args); watch.audioContexts.push(this); }
  };
  // Click-to-connected on the page's clock: the press of Talk (or Reconnect) that starts a call, captured before
  // the page's own handler runs, and the moment the page shows "connected".
  document.addEventListener('click', (e) => {
    const button = e.target.closest?.('#talk, #reconnect');
    if (button && (button.id === 'reconnect' || button.dataset.action === 'talk')) watch.clicks.push(performance.now());
  }, true);
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.target.id !== 'app') continue;
      const state = record.target.dataset.state;
      if (watch.states.at(-1) !== state) watch.states.push(state);
      if (state === 'connected' && record.oldValue !== 'connected') watch.connected.push(performance.now());
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
})();
"""

# Everything a call holds, as the browser sees it after the call.
RELEASE_REPORT = """() => {
  const w = window.__watch;
  return {
    state: document.getElementById('app').dataset.state,
    tracks: w.streams.flatMap((s) => s.getTracks()).map((t) => t.readyState),
    pcs: w.pcs.map((pc) => [pc.connectionState, pc.signalingState]),
    channels: w.channels.map((c) => c.readyState),
    audioContexts: w.audioContexts.map((c) => c.state),
    remoteAudio: document.querySelector('#remote-audio').srcObject !== null,
    levels: [...document.querySelectorAll('meter')].map((m) => Number(m.dataset.level)),
  };
}"""


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
        return self.page.get_attribute("#app", "data-state") or ""

    def wait_for_state(self, *states: str, timeout: float = 10_000) -> str:
        self.page.wait_for_function("(states) => states.includes(document.getElementById('app').dataset.state)",
                                    arg=list(states), timeout=timeout)
        return self.state

    @property
    def event_types(self) -> list[str]:
        return self.page.evaluate("() => window.__watch.events.map((e) => e.type)")

    def wait_for_event(self, event_type: str, count: int = 1, timeout: float = 10_000) -> None:
        self.page.wait_for_function(
            "([type, count]) => window.__watch.events.filter((e) => e.type === type).length >= count",
            arg=[event_type, count], timeout=timeout)

    @property
    def channels_made(self) -> int:
        """How many data channels the page created, whatever became of them."""
        return self.page.evaluate("() => window.__watch.channels.length")

    @property
    def sent(self) -> list[str]:
        """Every message the page sent on a data channel."""
        return self.page.evaluate("() => [...window.__watch.sent]")

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

    def click_to_connected_ms(self) -> float:
        """From the latest press of Talk or Reconnect to the page showing "connected" after it."""
        return self.page.evaluate("""() => {
          const w = window.__watch;
          const click = w.clicks.at(-1);
          const connected = w.connected.find((t) => t >= click);
          return connected === undefined ? -1 : connected - click;
        }""")

    def text(self, selector: str, timeout: float = 5000) -> str:
        return self.page.inner_text(selector, timeout=timeout)

    def release_report(self) -> dict[str, Any]:
        return self.page.evaluate(RELEASE_REPORT)

    @property
    def peer_connections(self) -> list[list[str]]:
        """[connectionState, signalingState] of every RTCPeerConnection the page made."""
        return self.page.evaluate("() => window.__watch.pcs.map((pc) => [pc.connectionState, pc.signalingState])")

    def posts_to(self, url: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.url.split("?")[0] == url]

    @property
    def call_posts(self) -> list[Request]:
        return self.posts_to(self.system.calls_url)

    @property
    def hangup_posts(self) -> list[Request]:
        prefix = f"{self.system.calls_url}/"
        return [r for r in self.requests if r.method == "POST" and r.url.startswith(prefix)
                and r.url.endswith("/hangup")]

    @property
    def openai_requests(self) -> list[Request]:
        """Anything the page sent to OpenAI (the stand-in) over HTTP: with /calls, nothing ever."""
        openai = self.system.realtime_url.split("/v1/")[0]
        return [r for r in self.requests if r.url.startswith(openai)]

    def placed_calls(self) -> list[dict[str, Any]]:
        """The service's answers to the page's POST /calls that succeeded."""
        answers = []
        for request in self.call_posts:
            response = request.response()
            if response is not None and response.status == 201:
                answers.append(response.json())
        return answers

    def diagnostics(self) -> dict[str, Any]:
        """What the page showed and knew, for a failure report; whatever cannot be read (the page may have gone) is
        reported as the error reading it."""
        readers = {
            "status": lambda: self.text("#status"),
            "message": lambda: self.text("#message"),
            "time_left": lambda: self.page.get_attribute("#time-left", "data-seconds-left", timeout=1000),
            "transcript": lambda: self.text("#transcript"),
            "states": lambda: self.page.evaluate("() => window.__watch.states"),
            "events": lambda: self.event_types,
            "sent": lambda: self.sent,
            "channels_made": lambda: self.channels_made,
            "release": self.release_report,
        }
        report: dict[str, Any] = {}
        for name, read in readers.items():
            try:
                report[name] = read()
            except Exception as exc:  # a report, not a check: one unreadable field must not hide the rest
                report[name] = f"(unreadable: {exc.__class__.__name__})"
        report["requests"] = [f"{r.method} {r.url}" for r in self.requests]
        report["errors"] = self.errors
        return report

    def problems(self) -> list[str]:
        violations = self.page.evaluate("() => window.__cspViolations")
        return [*self.errors, *violations]


def json_body(request: Request) -> Any:
    return json.loads(request.post_data or "null")


def media_sections(sdp: str) -> list[str]:
    """The kinds of an SDP's media sections, in order: ["audio"], or ["audio", "application"] with a data channel."""
    return [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]


def hang_up_at_openai(system: LocalSystem, call_id: str) -> None:
    """What an owner's script, or OpenAI itself, may do: end the call at OpenAI, without our API."""
    standin = system.standin
    assert standin is not None
    path = "live/sessions" if call_id.startswith("live_") else "realtime/calls"
    answer = httpx.post(f"{standin.base_url}/{path}/{call_id}/hangup",
                        headers={"Authorization": f"Bearer {standin.api_key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
