"""A real HTTP server on 127.0.0.1 playing both our token endpoint and OpenAI's `/v1/realtime/calls`.

It runs its own event loop in a thread, so synchronous clients, `asyncio.run` inside the CLI and async tests
can all call it. Each token-endpoint behaviour has its own path, which keeps the tests free of shared state:

    POST /token                 200 with a token valid for /v1/realtime/calls
    POST /token/{flavor}        200; flavor "expired" (the call gets 401), "mute" (answers with silence),
                                "dead" (answers the SDP, then never connects), "hangup" (closes after replying)
    POST /fail/{status}         the documented error JSON for that status (Retry-After on 429 and 503)
    POST /html/{status}         a non-JSON (HTML) body with that status
    POST /slow                  answers after 2 s
    POST /redirect              301 to /token
    POST /insecure              200 whose realtime_url is plain http to a non-local host
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.integration.clients.fake_realtime_answerer import FakeCall

# status -> (code, message, Retry-After or None)
FAILURES: dict[int, tuple[str, str, int | None]] = {
    400: ("invalid_request", "voice must be one of: marin, cedar", None),
    401: ("invalid_api_key", "The API key is missing or not valid.", None),
    403: ("origin_not_allowed", "This origin may not request tokens.", None),
    413: ("payload_too_large", "The request body is too large.", None),
    429: ("rate_limited", "Too many tokens requested; slow down.", 7),
    500: ("not_configured", "The service is not configured yet.", None),
    502: ("upstream_error", "OpenAI returned an error.", None),
    503: ("upstream_busy", "OpenAI is busy; try again shortly.", 4),
    504: ("upstream_timeout", "OpenAI did not answer in time.", None),
}
RATE_LIMIT_HEADERS = {"RateLimit-Limit": "10", "RateLimit-Remaining": "9", "RateLimit-Reset": "60"}


@dataclass
class RecordedRequest:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServices:
    base_url: str = ""
    token_requests: list[RecordedRequest] = field(default_factory=list)
    call_requests: list[RecordedRequest] = field(default_factory=list)
    calls: list[FakeCall] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    _valid: dict[str, str] = field(default_factory=dict)  # token -> flavor
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-services", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake services did not start")

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
        # Handlers still sleeping (/slow) would be reported as destroyed while pending: end them first.
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        self._loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/token/{flavor}", self._token)
        app.router.add_post("/fail/{status:\\d+}", self._fail)
        app.router.add_post("/html/{status:\\d+}", self._html)
        app.router.add_post("/slow", self._slow)
        app.router.add_post("/redirect", self._redirect)
        app.router.add_post("/insecure", self._insecure)
        app.router.add_post("/v1/realtime/calls", self._call)
        app.router.add_post("/{flavor}/v1/realtime/calls", self._call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def _shutdown(self) -> None:
        await asyncio.gather(*(call.close() for call in self.calls), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request, into: list[RecordedRequest]) -> bytes:
        body = await request.read()
        into.append(RecordedRequest(request.path, request.query_string, dict(request.headers), body))
        return body

    async def _token(self, request: web.Request) -> web.Response:
        await self._record(request, self.token_requests)
        flavor = request.match_info.get("flavor", "normal")
        value = "ek_test_" + secrets.token_hex(12)
        self.issued.add(value)
        if flavor != "expired":
            self._valid[value] = flavor
        calls_url = self.url("/v1/realtime/calls" if flavor == "normal" else f"/{flavor}/v1/realtime/calls")
        return web.json_response(
            {
                "token": value,
                "expires_at": int(time.time()) + 60,
                "realtime_url": calls_url,
                "session": {"model": "gpt-realtime", "voice": "marin", "preset": "default"},
            },
            headers=RATE_LIMIT_HEADERS,
        )

    async def _fail(self, request: web.Request) -> web.Response:
        await self._record(request, self.token_requests)
        status = int(request.match_info["status"])
        code, message, retry_after = FAILURES[status]
        headers = dict(RATE_LIMIT_HEADERS)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)

    async def _html(self, request: web.Request) -> web.Response:
        await self._record(request, self.token_requests)
        status = int(request.match_info["status"])
        page = "<html><body><h1>Bad Gateway</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return await self._token(request)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location="/token")

    async def _insecure(self, request: web.Request) -> web.Response:
        return web.json_response({"token": "ek_x", "expires_at": 1, "realtime_url": "http://example.com/calls"})

    async def _call(self, request: web.Request) -> web.Response:
        body = await self._record(request, self.call_requests)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        flavor = self._valid.get(token)
        if flavor is None:
            return web.json_response(
                {
                    "error": {
                        "message": "Ephemeral token expired or not found.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                        "param": None,
                    }
                },
                status=401,
            )
        if request.content_type != "application/sdp":
            return web.json_response({"error": {"message": "Content-Type must be application/sdp"}}, status=400)
        call = FakeCall(
            call_id=f"rtc_test{next(self._ids)}", mute=flavor == "mute", hang_up_after_reply=flavor == "hangup"
        )
        self.calls.append(call)
        answer = await call.answer(body.decode())
        if flavor == "dead":
            await call.close()
        return web.Response(
            status=201,
            body=answer.encode(),
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call.call_id}"},
        )
