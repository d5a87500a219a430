"""A fake of OUR API (`/options`, `/calls`, `/calls/{id}/hangup`, `/token`) on 127.0.0.1, in front of the real
OpenAI stand-in, so tests can inject the HTTP failures the real function only gives under duress.

Where a call must connect, the fake does what the function does: it hands the client's real SDP offer to the
stand-in over HTTP (Realtime: multipart with the standard key; GPT-Live: `POST /v1/live/sessions`) and answers
with the stand-in's SDP. The token path mints a real `ek_` at the stand-in.

Each behaviour is its own API base URL, `/{stack}/{behaviour}`, which keeps the tests free of shared state:

    ok           everything works; calls have a 300 s limit
    leash-N      calls have an N s limit, and the fake hangs them up at the stand-in when it is reached
    dead         /calls answers 201 with an SDP answer stripped of its candidates: it never connects
    fail-S       /calls and /token answer the documented error JSON for status S (Retry-After on 429 and 503)
    html-S       /calls and /token answer a non-JSON (HTML) body with status S
    slow         /calls and /token answer after 2 s
    redirect     /calls and /token answer 301
    expired      /token gives a token that the stand-in no longer accepts
    insecure     /token gives a realtime_url that is plain http to a non-local host

`stack` is a deployment of the product: `realtime` (VoiceBackend=realtime with its default, audio-only calls),
`realtime-dc` (the same with RealtimeDataChannel=true) or `live` (GPT-Live, the product's default). It decides what
`/options` says (`backend`, `data_channel`) and where `/calls` goes. As the function does, `/calls` answers an offer
that is not exactly one active audio section with `400 invalid_request` naming `sdp` where the stack allows no data
channel, and `/token` is 404 on `live`.
A token's `realtime_url` is the fake's `.../openai/realtime/calls`, which records the SDP post and passes it on to
the stand-in unchanged, so tests can see exactly what the client sends OpenAI.
The fake runs its own event loop in a thread, so synchronous clients, `asyncio.run` inside the CLI and async
tests can all call it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from local.openai_standin.server import StandIn
from realtime_client import AuthError, ClientError, EndpointError, RateLimited, ServerError

# status -> (code, message, Retry-After or None)
FAILURES: dict[int, tuple[str, str, int | None]] = {
    400: ("invalid_request", "voice must be one of: marin, cedar", None),
    401: ("invalid_api_key", "The API key is missing or not valid.", None),
    403: ("origin_not_allowed", "This origin may not use this API.", None),
    413: ("payload_too_large", "The request body is too large.", None),
    429: ("daily_budget_exhausted", "Today's call minutes are used up.", 7),
    500: ("not_configured", "The service is not configured yet.", None),
    502: ("upstream_error", "OpenAI returned an error.", None),
    503: ("leash_unavailable", "The call could not be given a time limit; try again shortly.", 4),
    504: ("upstream_timeout", "OpenAI did not answer in time.", None),
}
# status -> the error type the client raises for it
ERROR_TYPES: dict[int, type[EndpointError]] = {
    400: ClientError,
    401: AuthError,
    403: ClientError,
    413: ClientError,
    429: RateLimited,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}
RATE_LIMIT_HEADERS = {"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "60"}
DEFAULT_MAX_SECONDS = 300
SESSION = {"model": "gpt-realtime", "voice": "marin", "preset": "default"}
LIVE_MODEL = "gpt-live-1.1"
INSTRUCTIONS = "You are a helpful voice assistant."
# What the function lets a browser do on GPT-Live: speak, and see what the page renders. Never session.started or
# session.closed: both carry the session resource, the owner's instructions included.
LIVE_CLIENT_EVENTS: list[str] = []
LIVE_SERVER_EVENTS = [
    "session.input_transcript.delta",
    "session.output_transcript.delta",
    "session.usage.updated",
    "error",
]
# stack -> (backend, data_channel), as GET /options says them.
STACKS: dict[str, tuple[str, bool]] = {"realtime": ("realtime", False), "realtime-dc": ("realtime", True),
                                       "live": ("live", True)}
AUDIO_ONLY = "sdp: the offer must have exactly one audio section and nothing else (no data channel)"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeCall:
    call_id: str
    backend: str
    hangup_token: str
    ends_at: float
    hung_up: bool = False
    credited_seconds: int | None = None
    leash: asyncio.Task[None] | None = None


@dataclass
class FakeServices:
    standin: StandIn
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    calls: dict[str, FakeCall] = field(default_factory=dict)
    leash_hangups: list[str] = field(default_factory=list)  # call ids the fake's leash hung up
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _openai: httpx.AsyncClient | None = None

    def url(self, behaviour: str = "ok", route: str = "", *, stack: str = "realtime") -> str:
        """The API base URL for a behaviour on a stack, or one of its route URLs."""
        assert stack in STACKS, stack
        base = f"{self.base_url}/{stack}/{behaviour}"
        return f"{base}/{route}" if route else base

    def last(self, suffix: str) -> RecordedRequest:
        return next(r for r in reversed(self.requests) if r.path.endswith(suffix))

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-api", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake API did not start")

    def stop(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        ready.set()
        self._loop.run_forever()
        # Handlers still sleeping (slow, leash) would be reported as destroyed while pending: end them first.
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        self._loop.close()

    async def _startup(self) -> None:
        self._openai = httpx.AsyncClient(
            base_url=self.standin.base_url,
            headers={"Authorization": f"Bearer {self.standin.api_key}"},
            timeout=15,
        )
        app = web.Application()
        stack = "{stack:" + "|".join(STACKS) + "}"
        app.router.add_get(f"/{stack}/{{behaviour}}/options", self._options)
        app.router.add_post(f"/{stack}/{{behaviour}}/calls", self._create_call)
        app.router.add_post(f"/{stack}/{{behaviour}}/calls/{{call_id}}/hangup", self._hang_up)
        app.router.add_post(f"/{stack}/{{behaviour}}/token", self._token)
        app.router.add_post(f"/{stack}/{{behaviour}}/openai/realtime/calls", self._proxy_token_call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def _shutdown(self) -> None:
        for call in self.calls.values():
            if call.leash is not None:
                call.leash.cancel()
        if self._openai is not None:
            await self._openai.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.headers), body))
        return body

    # -- routes ------------------------------------------------------------------------------------------------

    async def _options(self, request: web.Request) -> web.Response:
        await self._record(request)
        (backend, data_channel), behaviour = STACKS[request.match_info["stack"]], request.match_info["behaviour"]
        return web.json_response(
            {
                "model": LIVE_MODEL if backend == "live" else SESSION["model"],
                "voices": ["marin", "cedar"],
                "default_voice": "marin",
                "presets": ["default"],
                "default_preset": "default",
                "backend": backend,
                "max_call_seconds": _max_seconds(behaviour),
                "data_channel": data_channel,
                "token_route": backend == "realtime",
            }
        )

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        (backend, data_channel), behaviour = STACKS[request.match_info["stack"]], request.match_info["behaviour"]
        failure = await _failure(behaviour)
        if failure is not None:
            return failure
        offer = json.loads(body)
        if not data_channel and not _audio_only(offer["sdp"]):
            return _error(400, "invalid_request", AUDIO_ONLY)
        voice = offer.get("voice") or SESSION["voice"]
        if backend == "live":
            call_id, answer = await self._live_session(offer["sdp"], voice)
        else:
            call_id, answer = await self._realtime_call(offer["sdp"], voice)
        if behaviour == "dead":
            answer = "".join(line for line in answer.splitlines(keepends=True) if not line.startswith("a=candidate"))
        max_seconds = _max_seconds(behaviour)
        call = FakeCall(call_id, backend, "ht_" + secrets.token_urlsafe(16), time.time() + max_seconds)
        if behaviour.startswith("leash-"):
            call.leash = asyncio.get_running_loop().create_task(self._leash(call, max_seconds))
        self.calls[call_id] = call
        answer_json = {
            "call_id": call_id,
            "sdp": answer,
            "ends_at": int(call.ends_at),
            "max_seconds": max_seconds,
            "hangup_token": call.hangup_token,
            "session": {**SESSION, "voice": voice, **({"model": LIVE_MODEL} if backend == "live" else {})},
        }
        return web.json_response(answer_json, status=201, headers={**RATE_LIMIT_HEADERS, "Cache-Control": "no-store"})

    async def _hang_up(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        call = self.calls.get(request.match_info["call_id"])
        if call is None:
            return _error(404, "not_found", "No such call.")
        try:
            token = json.loads(body).get("hangup_token")
        except (json.JSONDecodeError, AttributeError):
            token = None
        if token != call.hangup_token:
            return _error(403, "invalid_hangup_token", "That is not this call's hangup token.")
        credited = 0
        if not call.hung_up:
            call.hung_up = True
            if call.leash is not None:
                call.leash.cancel()
            credited = max(0, int(call.ends_at - time.time()))
            await self._hang_up_at_openai(call)
        call.credited_seconds = credited if call.credited_seconds is None else call.credited_seconds
        return web.json_response({"call_id": call.call_id, "state": "ended", "credited_seconds": credited})

    async def _token(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        (backend, _), behaviour = STACKS[request.match_info["stack"]], request.match_info["behaviour"]
        if backend == "live":
            return _error(404, "not_found", "Not found.")
        failure = await _failure(behaviour)
        if failure is not None:
            return failure
        if behaviour == "insecure":
            return web.json_response({"token": "ek_x", "expires_at": 1, "realtime_url": "http://example.com/calls"})
        assert self._openai is not None
        minted = await self._openai.post("/realtime/client_secrets", json={"session": _realtime_session("marin")})
        minted.raise_for_status()
        secret = minted.json()
        if behaviour == "expired":
            self.standin.registry.expire(secret["value"])
        return web.json_response(
            {
                "token": secret["value"],
                "expires_at": secret["expires_at"],
                "realtime_url": f"{self.url(behaviour, stack=request.match_info['stack'])}/openai/realtime/calls",
                "session": SESSION,
            },
            headers=RATE_LIMIT_HEADERS,
        )

    async def _proxy_token_call(self, request: web.Request) -> web.Response:
        """The token path's SDP post, recorded (to see exactly what the client sends OpenAI) and passed on."""
        body = await self._record(request)
        headers = {name: request.headers[name] for name in ("Authorization", "Content-Type") if name in request.headers}
        async with httpx.AsyncClient(timeout=15) as client:
            answer = await client.post(f"{self.standin.base_url}/realtime/calls", headers=headers, content=body)
        passed = {name: answer.headers[name] for name in ("Content-Type", "Location") if name in answer.headers}
        return web.Response(status=answer.status_code, body=answer.content, headers=passed)

    # -- the OpenAI side, over HTTP --------------------------------------------------------------------------

    async def _realtime_call(self, sdp: str, voice: str) -> tuple[str, str]:
        assert self._openai is not None
        files = {
            "sdp": (None, sdp, "application/sdp"),
            "session": (None, json.dumps(_realtime_session(voice)), "application/json"),
        }
        answer = await self._openai.post("/realtime/calls", files=files, headers={"Accept": "application/sdp"})
        if answer.status_code != 201:
            raise RuntimeError(f"the stand-in refused the call: {answer.status_code} {answer.text}")
        return answer.headers["Location"].rstrip("/").rsplit("/", 1)[-1], answer.text

    async def _live_session(self, sdp: str, voice: str) -> tuple[str, str]:
        assert self._openai is not None
        session = {
            "model": LIVE_MODEL,
            "instructions": INSTRUCTIONS,
            "audio": {"output": {"voice": voice}},
            "client": {
                "data_channel": {
                    "allowed_client_events": LIVE_CLIENT_EVENTS,
                    "allowed_server_events": [{"type": kind} for kind in LIVE_SERVER_EVENTS],
                }
            },
        }
        answer = await self._openai.post(
            "/live/sessions", json={"session": session, "transport": {"type": "webrtc", "sdp": sdp}}
        )
        if answer.status_code != 201:
            raise RuntimeError(f"the stand-in refused the live session: {answer.status_code} {answer.text}")
        created = answer.json()
        return created["session"]["id"], created["transport"]["sdp"]

    async def _hang_up_at_openai(self, call: FakeCall) -> None:
        assert self._openai is not None
        path = "live/sessions" if call.backend == "live" else "realtime/calls"
        await self._openai.post(f"/{path}/{call.call_id}/hangup")

    async def _leash(self, call: FakeCall, seconds: float) -> None:
        await asyncio.sleep(seconds)
        call.hung_up = True
        self.leash_hangups.append(call.call_id)
        await self._hang_up_at_openai(call)


def _realtime_session(voice: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "model": SESSION["model"],
        "instructions": INSTRUCTIONS,
        "audio": {
            "input": {"transcription": {"model": "gpt-4o-mini-transcribe"}, "turn_detection": {"type": "server_vad"}},
            "output": {"voice": voice},
        },
    }


def media_sections(sdp: str) -> list[str]:
    """The kinds of an SDP's media sections, in order: ["audio"], or ["audio", "application"] with a data channel."""
    return [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]


def _audio_only(sdp: str) -> bool:
    """Exactly one media section, an active (non-zero port) `m=audio`: what a stack without the channel takes."""
    media = [line.split() for line in sdp.splitlines() if line.startswith("m=")]
    return len(media) == 1 and media[0][0] == "m=audio" and media[0][1] != "0"


def _max_seconds(behaviour: str) -> int:
    if behaviour.startswith("leash-"):
        return int(behaviour.removeprefix("leash-"))
    return DEFAULT_MAX_SECONDS


async def _failure(behaviour: str) -> web.StreamResponse | None:
    """The injected failure of a behaviour, or None when the route should work."""
    kind, _, status = behaviour.partition("-")
    if kind == "fail":
        code, message, retry_after = FAILURES[int(status)]
        headers = dict(RATE_LIMIT_HEADERS)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return _error(int(status), code, message, headers)
    if kind == "html":
        page = "<html><body><h1>Bad Gateway</h1></body></html>"
        return web.Response(status=int(status), text=page, content_type="text/html")
    if kind == "slow":
        await asyncio.sleep(2)
    if kind == "redirect":
        return web.Response(status=301, headers={"Location": "/elsewhere"})
    return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)
