"""Click to connected in headless Chromium: our page against OpenAI's sample flow, on the same local peer and API.

Our page (web/, served by the local system) posts its offer to `POST /calls` while the microphone is asked for. The
bare flow is OpenAI's browser sample with an ephemeral token, in order: fetch the token (`POST /token`, switched on
for this), THEN getUserMedia, THEN create the offer, THEN POST the SDP to OpenAI. It is a small page served here from
its own origin (the API's CORS allows it). Both count from the click to the call being up, which is when our page
says "Connected". Runs alternate, each in a fresh browser context; a first round of each is discarded (warm-up).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import Spread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream", "--disable-features=WebRtcHideLocalIpsWithMdns"]

BARE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bare flow</title></head>
<body><button id="talk" type="button" disabled>Talk</button><script type="module" src="bare.js"></script></body>
</html>
"""

# OpenAI's WebRTC sample, step by step, pointed at our token API (`token`, `realtime_url` in its answer).
BARE_JS = """
const result = { clickAt: null, connectedAt: null, ms: null, error: null };
window.__bare = result;
const config = await (await fetch('config.json', { cache: 'no-store' })).json();
const talk = document.getElementById('talk');
talk.disabled = false;
talk.addEventListener('click', async () => {
  result.clickAt = performance.now();
  try {
    const tokenResponse = await fetch(config.tokenUrl, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}',
    });
    const minted = await tokenResponse.json();
    const pc = new RTCPeerConnection();
    const audio = document.createElement('audio');
    audio.autoplay = true;
    pc.ontrack = (event) => { audio.srcObject = event.streams[0]; };
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTrack(stream.getTracks()[0]);
    const channel = pc.createDataChannel('oai-events');
    const opened = new Promise((resolve) => channel.addEventListener('open', resolve, { once: true }));
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdpResponse = await fetch(minted.realtime_url, {
      method: 'POST', body: offer.sdp,
      headers: { Authorization: `Bearer ${minted.token}`, 'Content-Type': 'application/sdp' },
    });
    await pc.setRemoteDescription({ type: 'answer', sdp: await sdpResponse.text() });
    await opened;
    result.connectedAt = performance.now();
    result.ms = result.connectedAt - result.clickAt;
    window.__barePc = pc;
  } catch (error) {
    result.error = String(error);
  }
});
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(folder: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bare-page", daemon=True).start()
    return server


def measure(*, runs: int, timeout_ms: float = 30_000) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from local.system import LocalSystem

    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} not found"}
    if not (Path(__file__).resolve().parent.parent / "web" / "index.html").exists():
        return {"skipped": "web/index.html not found"}
    saved_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        folder = Path(tmp)
        (folder / "index.html").write_text(BARE_HTML)
        (folder / "bare.js").write_text(BARE_JS)
        bare_server = _serve(folder)
        bare_origin = f"http://127.0.0.1:{bare_server.server_address[1]}"
        try:
            with LocalSystem(port=0, page_port=0, parameters={
                "AllowedOrigins": bare_origin, "AnonymousBurst": "1000", "GlobalDailyLimit": "100000",
                "DailyCallMinutes": "100000", "CallerDailyCallMinutes": "100000", "EnableTokenRoute": "true",
                # The same call both ways: a token's session is Realtime with its channel, so ours is too.
                "VoiceBackend": "realtime", "RealtimeDataChannel": "true",
            }) as system:
                (folder / "config.json").write_bytes(system.config_json())
                home = folder / "home"
                env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                                         env=env)
                    try:
                        page_ms, bare_ms = [], []
                        for i in range(runs + 1):  # round 0 warms up and is discarded
                            order = [("page", page_ms), ("bare", bare_ms)]
                            for name, sink in (order if i % 2 == 0 else order[::-1]):
                                ms = (_our_page(browser, system.page_url, timeout_ms) if name == "page"
                                      else _bare_page(browser, f"{bare_origin}/", timeout_ms))
                                if i > 0:
                                    sink.append(ms)
                    finally:
                        browser.close()
        finally:
            bare_server.shutdown()
            bare_server.server_close()
            os.environ.clear()
            os.environ.update(saved_env)
    ratio = Spread.of([p / b for p, b in zip(page_ms, bare_ms, strict=True)], "x")
    phases = {}
    for name, rows in PHASES.items():
        kept = rows[1:]  # the warm-up round
        phases[name] = {key: statistics.median(seen) if (seen := [r[key] for r in kept if r[key] is not None])
                        else None  # our page fetches no token
                        for key in ("tokenStart", "tokenEnd", "sdpStart", "sdpEnd")}
        PHASES[name] = []
    return {
        "page_ms": Spread.of(page_ms, "ms").as_dict(),
        "bare_ms": Spread.of(bare_ms, "ms").as_dict(),
        "ratio": ratio.as_dict(),
        "phases_median_ms": phases,
        "page_samples_ms": page_ms,
        "bare_samples_ms": bare_ms,
        "goals": {"click_to_connected": {"goal": "< 1x the bare flow (median)", "value": ratio.median,
                                         "met": Spread.of(page_ms, "ms").median < Spread.of(bare_ms, "ms").median}},
    }


# Where the time went, from the click: the token request and the SDP POST (resource timing), then connected. On our
# page there is no token: the SDP goes to /calls.
_PHASES = """(clickAt) => {
  const entries = performance.getEntriesByType('resource');
  const find = (part) => entries.filter((e) => e.name.includes(part) && e.startTime >= clickAt - 1).at(-1);
  const token = find('/token'), sdp = find('/realtime/calls') ?? find('/calls');
  return { tokenStart: token ? token.startTime - clickAt : null, tokenEnd: token ? token.responseEnd - clickAt : null,
           sdpStart: sdp ? sdp.startTime - clickAt : null, sdpEnd: sdp ? sdp.responseEnd - clickAt : null };
}"""
PHASES: dict[str, list[dict[str, float | None]]] = {"page": [], "bare": []}


# The page ships no hooks for measuring; this watcher lives only in the benchmark's browser: the click (before the
# page's own handler runs) and the moment the page's state becomes "connected", on the page's clock.
_WATCH = """
document.addEventListener('click', () => { window.__clickAt ??= performance.now(); }, true);
new MutationObserver(() => {
  const state = document.getElementById('app')?.dataset.state;
  if (state === 'connected' || state === 'error') window.__endAt ??= [state, performance.now()];
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
"""


def _our_page(browser: Any, url: str, timeout_ms: float) -> float:
    context = browser.new_context()
    try:
        context.add_init_script(_WATCH)
        page = context.new_page()
        page.goto(url)
        # Ready as a person sees it: the settings and the options are in (voice list filled).
        page.wait_for_function("() => !document.getElementById('talk').disabled && "
                               "!document.getElementById('voice').disabled", timeout=timeout_ms)
        page.click("#talk")
        page.wait_for_function("() => window.__endAt !== undefined", timeout=timeout_ms)
        click_at, (state, end_at) = page.evaluate("() => [window.__clickAt, window.__endAt]")
        if state != "connected":
            raise RuntimeError("our page did not connect")
        PHASES["page"].append(page.evaluate(_PHASES, click_at))
        return float(end_at - click_at)
    finally:
        context.close()


def _bare_page(browser: Any, url: str, timeout_ms: float) -> float:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.__bare && !document.getElementById('talk').disabled", timeout=timeout_ms)
        page.click("#talk")
        page.wait_for_function("() => window.__bare.ms !== null || window.__bare.error !== null", timeout=timeout_ms)
        result = page.evaluate("() => window.__bare")
        if result["ms"] is None:
            raise RuntimeError(f"the bare flow did not connect: {result['error']}")
        PHASES["bare"].append(page.evaluate(_PHASES, result["clickAt"]))
        return float(result["ms"])
    finally:
        context.close()
