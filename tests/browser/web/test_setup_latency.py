"""Click-to-connected: calls set up by the server (`POST /calls`) against the old token + SDP flow, side by side.

One system (EnableTokenRoute=true, so both routes answer), one browser page, the same stand-in; the flows take
turns, round after round, so a slow moment of the machine hits them alike. Three figures:

- `page_calls`: the page itself, from the press of Talk to the page showing "connected" (watched by an init script);
- `script_calls`: the /calls flow as a bare script in the same page (offer, then POST /calls in parallel with the
  microphone, answer, microphone track in, data channel open);
- `script_token`: the old flow as the old page ran it (POST /token in parallel with the microphone, then the offer
  straight to OpenAI with the token, answer, data channel open).

The two scripts do the same browser work, so they compare the routes; `page_calls` is what a visitor gets. Written
to test-artifacts/setup-latency.json; nothing is asserted about the numbers. SETUP_LATENCY_RUNS changes the count.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from local.system import LocalSystem
from tests.browser.web.voice_page import VoicePage

OpenPage = Callable[..., VoicePage]
RUNS = int(os.environ.get("SETUP_LATENCY_RUNS", "20"))
SETTLE_MS = 500

# Both scripts end the call they made before returning, so each round starts from nothing.
SCRIPT_CALLS = """async ({callsUrl}) => {
  const started = performance.now();
  const pc = new RTCPeerConnection();
  const transceiver = pc.addTransceiver('audio', {direction: 'sendrecv'});
  const channel = pc.createDataChannel('oai-events');
  const opened = new Promise((resolve) => channel.addEventListener('open', resolve, {once: true}));
  await pc.setLocalDescription(await pc.createOffer());
  const [mic, answer] = await Promise.all([
    navigator.mediaDevices.getUserMedia({audio: true}),
    fetch(callsUrl, {method: 'POST', headers: {'Content-Type': 'application/json'},
                     body: JSON.stringify({sdp: pc.localDescription.sdp})}).then((r) => r.json()),
  ]);
  await pc.setRemoteDescription({type: 'answer', sdp: answer.sdp});
  await transceiver.sender.replaceTrack(mic.getAudioTracks()[0]);
  await opened;
  const took = performance.now() - started;
  await fetch(`${callsUrl}/${encodeURIComponent(answer.call_id)}/hangup`, {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({hangup_token: answer.hangup_token})});
  pc.close();
  mic.getTracks().forEach((t) => t.stop());
  return took;
}"""

SCRIPT_TOKEN = """async ({tokenUrl}) => {
  const started = performance.now();
  const [mic, token] = await Promise.all([
    navigator.mediaDevices.getUserMedia({audio: true}),
    fetch(tokenUrl, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'}).then((r) => r.json()),
  ]);
  const pc = new RTCPeerConnection();
  pc.addTrack(mic.getAudioTracks()[0], mic);
  const channel = pc.createDataChannel('oai-events');
  const opened = new Promise((resolve) => channel.addEventListener('open', resolve, {once: true}));
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await fetch(token.realtime_url, {method: 'POST', body: pc.localDescription.sdp,
    headers: {Authorization: `Bearer ${token.token}`, 'Content-Type': 'application/sdp'}});
  await pc.setRemoteDescription({type: 'answer', sdp: await answer.text()});
  await opened;
  const took = performance.now() - started;
  pc.close();
  mic.getTracks().forEach((t) => t.stop());
  return took;
}"""


@pytest.fixture(scope="class")
def both_routes_system() -> Iterator[LocalSystem]:
    # Realtime with its data channel: the token flow always has one, so both flows connect on the same event.
    parameters = {"VoiceBackend": "realtime", "RealtimeDataChannel": "true", "EnableTokenRoute": "true",
                  "AnonymousBurst": "200", "GlobalDailyLimit": "1000", "MaxCallSeconds": "60",
                  "DailyCallMinutes": "600", "CallerDailyCallMinutes": "600"}
    with LocalSystem(port=0, page_port=0, parameters=parameters) as running:
        yield running


def summary(samples: list[float]) -> dict[str, object]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 1), "min_ms": round(ordered[0], 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1),
            "samples_ms": [round(s, 1) for s in samples]}


class TestSetupLatency:
    def test_click_to_connected_calls_against_token_flow(
        self, both_routes_system: LocalSystem, browser: Browser, open_page: OpenPage, artifacts: Path
    ) -> None:
        system = both_routes_system
        # The old flow posts its offer to OpenAI from the page; whatever the page's CSP allows, measure both.
        voice = open_page(system, browser, bypass_csp=True)

        def page_calls() -> float:
            voice.page.click("#talk")
            assert voice.wait_for_state("connected", "error") == "connected", voice.text("#message")
            took = voice.click_to_connected_ms()
            # The hangup is answered before the next round, as the scripts' are: it must not overlap the next call.
            with voice.page.expect_response(lambda r: r.url.endswith("/hangup")):
                voice.page.click("#talk")
            assert voice.wait_for_state("ended") == "ended"
            return took

        def script_calls() -> float:
            return voice.page.evaluate(SCRIPT_CALLS, {"callsUrl": system.calls_url})

        def script_token() -> float:
            return voice.page.evaluate(SCRIPT_TOKEN, {"tokenUrl": system.token_url})

        flows = {"page_calls": page_calls, "script_calls": script_calls, "script_token": script_token}
        for flow in flows.values():
            flow()  # warm-up, not counted: first use of each route, codec and code path in this browser
        samples: dict[str, list[float]] = {name: [] for name in flows}
        began = time.monotonic()
        names = list(flows)
        for round_ in range(RUNS):
            # Each flow goes first in turn, and the machine settles between flows: the stand-in tears the previous
            # peer down in the background, which must not land on one flow more than another.
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                voice.page.wait_for_timeout(SETTLE_MS)
                samples[name].append(flows[name]())

        report = {
            "what": "click-to-connected in headless Chromium against the local system (real function, moto, the "
                    "OpenAI stand-in over HTTP and WebRTC on loopback), flows interleaved round by round; "
                    "connected = data channel open (the page: status 'connected', microphone attached); "
                    f"each flow first in turn, {SETTLE_MS} ms pause before each",
            "runs": RUNS,
            "warm_up_runs_excluded": 1,
            "seconds": round(time.monotonic() - began, 1),
            "flows": {name: summary(values) for name, values in samples.items()},
            "median_difference_ms": {
                "script_calls_minus_script_token": round(statistics.median(samples["script_calls"])
                                                         - statistics.median(samples["script_token"]), 1),
                "page_calls_minus_script_token": round(statistics.median(samples["page_calls"])
                                                       - statistics.median(samples["script_token"]), 1),
            },
            "machine": {"python": platform.python_version(), "system": platform.platform(),
                        "cpus": os.cpu_count(), "browser": browser.version},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (artifacts / "setup-latency.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({name: value["median_ms"] for name, value in report["flows"].items()}))
        assert all(len(values) == RUNS for values in samples.values())
