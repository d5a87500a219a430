"""How late the leash hangs a call up after its `ends_at`, through the whole local system: the real function sets
each call up (moto, the OpenAI stand-in), the local Step Functions runner waits for the call's timestamp and runs
the real leash function, which hangs up at the stand-in. The delay is the stand-in's hangup time minus `ends_at`.

Calls are set up one after another, `SPACING_SECONDS` apart, so their ends are spread as a real day's would be, and
left unconnected (the stand-in keeps an unconnected call for 30 s, longer than the limit used here): what is
measured is the timer and the hangup, not WebRTC.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from bench.common import percentile
from local.system import LocalSystem
from tests.integration.offers import make_offer_async

MAX_CALL_SECONDS = 10
SPACING_SECONDS = 0.25


async def _start_calls(calls_url: str, count: int, *, data_channel: bool) -> list[dict[str, Any]]:
    offer = await make_offer_async(data_channel=data_channel)
    calls = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(count):
            answer = await client.post(calls_url, json={"sdp": offer})
            if answer.status_code != 201:
                raise RuntimeError(f"call refused: {answer.status_code} {answer.text[:200]}")
            calls.append(answer.json())
            await asyncio.sleep(SPACING_SECONDS)
    return calls


def measure(calls: int = 50, backend: str = "realtime") -> dict[str, Any]:
    parameters = {"MaxCallSeconds": str(MAX_CALL_SECONDS), "DailyCallMinutes": "1000",
                  "CallerDailyCallMinutes": "1000", "AnonymousBurst": "1000",
                  "AnonymousRatePerHour": "1000000", "VoiceBackend": backend}
    with LocalSystem(port=0, parameters=parameters, containers=2) as system:
        assert system.standin is not None
        # Realtime takes an audio-only offer by default; GPT-Live's channel is allow-listed.
        started = asyncio.run(_start_calls(f"{system.api_url}/calls", calls, data_channel=backend == "live"))
        delays: list[float] = []
        reasons: dict[str, int] = {}
        deadline = time.monotonic() + MAX_CALL_SECONDS + 60
        for call in started:
            record = system.standin.call(call["call_id"])
            if record is None or not record.wait_ended(max(0.1, deadline - time.monotonic())):
                raise RuntimeError(f"call {call['call_id']} was not hung up")
            reasons[str(record.end_reason)] = reasons.get(str(record.end_reason), 0) + 1
            delays.append(record.ended_at - call["ends_at"])  # type: ignore[operator]
        time.sleep(1)  # the stand-in logs a hangup request once it has answered it, a moment after the call ended
        hangups = [len(system.standin.hangups_for(call["call_id"])) for call in started]
    return {
        "backend": backend, "calls": calls, "max_call_seconds": MAX_CALL_SECONDS,
        "delay_p50_s": round(percentile(delays, 50), 3), "delay_p95_s": round(percentile(delays, 95), 3),
        "delay_min_s": round(min(delays), 3), "delay_max_s": round(max(delays), 3),
        "end_reasons": reasons, "hangups_per_call": sorted(set(hangups)),
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
