"""`POST /v1/realtime/client_secrets` as OpenAI answers it, plus injectable faults for tests.

Checks the Bearer key, the content type and the body against our strict model of OpenAI's schema, and answers
`{"value": "ek_...", "expires_at", "session"}` with the effective session. Every request is recorded (with the
Authorization header reduced to whether it matched) so tests can assert what the handler sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from local.openai_standin.schema import RequestError, validate_client_secret_request
from local.openai_standin.tokens import TokenRegistry

DEFAULT_TTL_SECONDS = 600
DEFAULT_SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
                      "idle_timeout_ms": None, "create_response": True, "interrupt_response": True}
PCM_24K = {"type": "audio/pcm", "rate": 24000}


@dataclass
class Fault:
    """What the next request(s) get instead of a normal answer."""

    status: int = 500
    body: Any = None  # dict -> JSON; str -> sent as is (e.g. malformed JSON); None -> OpenAI-style error for status
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # wait before answering (timeouts)
    drop: bool = False  # close the connection without an answer
    times: int = 1


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    body: Any
    authorized: bool
    status: int


class FaultPlan:
    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault


class ClientSecrets:
    def __init__(self, registry: TokenRegistry, api_key: str) -> None:
        self.registry = registry
        self.api_key = api_key
        self.faults = FaultPlan()
        self.requests: list[RecordedRequest] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/realtime/client_secrets", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        authorized = request.headers.get("Authorization", "") == f"Bearer {self.api_key}"
        response = await self._answer(request, raw, authorized)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.requests.append(RecordedRequest(headers, body, authorized, response.status))
        return response

    async def _answer(self, request: web.Request, raw: bytes, authorized: bool) -> web.StreamResponse:
        fault = self.faults.take()
        if fault is not None:
            return await self._fault(request, fault)
        if not authorized:
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
            # OpenAI quotes a masked fragment of the key it refused; so do we, so leak tests have something to find.
            return openai_error(401, f"Incorrect API key provided: {mask_key(presented)}.", "invalid_api_key")
        if request.content_type != "application/json":
            return openai_error(400, "Content-Type must be application/json.", "invalid_content_type")
        try:
            body = json.loads(raw)
            validate_client_secret_request(body)
        except ValueError as exc:
            param = getattr(exc, "param", None)
            code = getattr(exc, "code", "invalid_json")
            message = str(exc) if isinstance(exc, RequestError) else "We could not parse the JSON body of your request."
            return openai_error(400, message, code, param)
        session_request = body.get("session") or {"type": "realtime"}
        ttl = body.get("expires_after", {}).get("seconds", DEFAULT_TTL_SECONDS)
        token = self.registry.issue(effective_session(session_request), ttl)
        return web.json_response({"value": token.value, "expires_at": token.expires_at, "session": token.session})

    async def _fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.drop:
            transport = request.transport
            if transport is not None:
                transport.close()
            raise ConnectionResetError("fault: dropped")
        if fault.body is None:
            return openai_error(fault.status, f"Injected fault {fault.status}.", "injected", headers=fault.headers)
        text = fault.body if isinstance(fault.body, str) else json.dumps(fault.body)
        return web.Response(status=fault.status, text=text, content_type="application/json", headers=fault.headers)


def mask_key(key: str) -> str:
    """The fragment of a refused key that OpenAI's 401 message quotes."""
    return f"{key[:6]}***{key[-4:]}" if len(key) > 10 else "***"


def openai_error(status: int, message: str, code: str | None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> web.Response:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "invalid_request_error"
                                                                           if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def effective_session(requested: dict[str, Any]) -> dict[str, Any]:
    """The session object OpenAI returns: what was asked for, with OpenAI's defaults filled in."""
    audio = requested.get("audio", {})
    audio_in, audio_out = audio.get("input", {}), audio.get("output", {})
    turn_detection = audio_in.get("turn_detection", DEFAULT_SERVER_VAD)
    if turn_detection is not None and turn_detection.get("type") == "server_vad":
        turn_detection = {**DEFAULT_SERVER_VAD, **turn_detection}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_" + secrets.token_hex(10),
        "model": requested.get("model", "gpt-realtime"),
        "output_modalities": requested.get("output_modalities", ["audio"]),
        "instructions": requested.get("instructions", "You are a helpful assistant (local stand-in)."),
        "tools": requested.get("tools", []),
        "tool_choice": requested.get("tool_choice", "auto"),
        "max_output_tokens": requested.get("max_output_tokens", "inf"),
        "tracing": requested.get("tracing"),
        "truncation": requested.get("truncation", "auto"),
        "prompt": requested.get("prompt"),
        "expires_at": 0,
        "audio": {
            "input": {
                "format": audio_in.get("format", PCM_24K),
                "transcription": audio_in.get("transcription"),
                "noise_reduction": audio_in.get("noise_reduction"),
                "turn_detection": turn_detection,
            },
            "output": {
                "format": audio_out.get("format", PCM_24K),
                "voice": audio_out.get("voice", "alloy"),
                "speed": audio_out.get("speed", 1.0),
            },
        },
        "include": requested.get("include"),
    }
