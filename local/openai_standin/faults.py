"""Injected faults: what the next request(s) to one endpoint get instead of OpenAI's normal answer.

A fault replaces the endpoint's own work: whatever it answers, nothing happens behind it. So a 2xx fault is OpenAI
saying yes without doing it, e.g. `Fault(endpoint="live_hangup", status=200)`: GPT-Live's hangup answers 200 (with
OpenAI's empty success body) and the session keeps running, so only the sideband's `session.close` can end it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from local.openai_standin.auth import openai_error

# The endpoints a fault can be aimed at. "calls" is every POST /v1/realtime/calls (multipart and raw SDP);
# "live_attach" is the GET that opens a Live session's sideband (a fault answers it instead of the upgrade).
ENDPOINTS = ("client_secrets", "calls", "hangup", "live_sessions", "live_hangup", "live_attach")


@dataclass
class Fault:
    """What the next `times` requests to `endpoint` get instead of a normal answer."""

    status: int = 500
    # dict -> JSON; str -> sent as is (e.g. malformed JSON); None -> OpenAI's error envelope for an error status,
    # and for a 2xx the empty body OpenAI's hangups succeed with (an error envelope under a 200 would be a fault of
    # its own, which a test can still ask for with an explicit body).
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # wait before answering (timeouts)
    drop: bool = False  # close the connection without an answer
    times: int = 1
    endpoint: str = "client_secrets"
    # After the delay, answer normally: OpenAI was slow but did the work (a call created after the caller gave up).
    proceed: bool = False

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; one of {', '.join(ENDPOINTS)}")

    @classmethod
    def from_json(cls, spec: Any) -> Fault:
        """A Fault from the control API's JSON; unknown keys are an error, so a typo cannot pass silently."""
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**spec)

    async def respond(self, request: web.Request) -> web.StreamResponse | None:
        """The faulty answer, or None when the request should now be served normally (`proceed`)."""
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.drop:
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("fault: dropped")
        if self.proceed:
            return None
        if self.body is None and 200 <= self.status < 300:
            return web.Response(status=self.status, headers=self.headers)
        if self.body is None:
            return openai_error(self.status, f"Injected fault {self.status}.", "injected", headers=self.headers)
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return web.Response(status=self.status, text=text, content_type="application/json", headers=self.headers)


class FaultPlan:
    """Queued faults per endpoint, consumed in order; thread-safe (tests add them from another thread)."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {endpoint: deque() for endpoint in ENDPOINTS}
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._queues[fault.endpoint].append(fault)

    def clear(self, endpoint: str | None = None) -> None:
        with self._lock:
            for name, queue in self._queues.items():
                if endpoint is None or name == endpoint:
                    queue.clear()

    def take(self, endpoint: str = "client_secrets") -> Fault | None:
        with self._lock:
            queue = self._queues[endpoint]
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.popleft()
            return fault

    def pending(self, endpoint: str | None = None) -> list[Fault]:
        """What is still queued (for one endpoint, or all), without consuming it."""
        with self._lock:
            return [f for name, queue in self._queues.items() if endpoint in (None, name) for f in queue]
