"""The stand-in as a server: an aiohttp app on its own event loop in a background thread.

`StandIn(...).start()` gives `base_url` (`http://127.0.0.1:PORT/v1`) and, for tests in the same process, the token
registry, the faults, the recorded requests and hangups, and the calls. Tests in another process use the same
through the control API (control.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from local.openai_standin import control, hangup, live_sessions, live_sideband, realtime_calls
from local.openai_standin.active_calls import ActiveCalls
from local.openai_standin.auth import Credentials
from local.openai_standin.call_log import CallLog, CallRecord
from local.openai_standin.client_secrets import ClientSecrets
from local.openai_standin.endpoint import Handler, Hangup, RecordedRequest, RequestLog, endpoint
from local.openai_standin.faults import FaultPlan
from local.openai_standin.hangup import Hangups
from local.openai_standin.live_session import DEFAULT_USAGE_INTERVAL_SECONDS
from local.openai_standin.live_sessions import LiveSessions
from local.openai_standin.live_sideband import Sideband
from local.openai_standin.realtime_calls import RealtimeCalls
from local.openai_standin.tokens import TokenRegistry

DEFAULT_API_KEY = "sk-local-standin-key-000000000000"  # not a real key: the stand-in's own, for local runs
MAX_SESSION_SECONDS = 60 * 60  # OpenAI's GA maximum

# The peers, on the app for the shutdown hook and for tests that drive the app on their own loop.
ACTIVE_CALLS_KEY = web.AppKey("openai_standin_active_calls", ActiveCalls)


class StandIn:
    def __init__(self, *, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0,
                 max_session_seconds: float = MAX_SESSION_SECONDS, live_max_session_seconds: float | None = None,
                 live_usage_interval_seconds: float = DEFAULT_USAGE_INTERVAL_SECONDS) -> None:
        self.api_key = api_key  # the key it started with; `credentials.api_key` is the one accepted now
        self.registry = TokenRegistry()
        self.credentials = Credentials(api_key, self.registry)
        self.client_secrets = ClientSecrets(self.credentials)
        self.faults = FaultPlan()
        self.request_log = RequestLog()
        self.calls = CallLog()
        self._host, self._port = host, port
        self._max_session_seconds = max_session_seconds
        self._live_max_session_seconds = live_max_session_seconds or max_session_seconds
        self._live_usage_interval = live_usage_interval_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._active: ActiveCalls | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    # -- what tests look at ------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The client_secrets requests (the list itself: `clear()` works)."""
        return self.request_log.by_endpoint["client_secrets"]

    def requests_to(self, endpoint_name: str) -> list[RecordedRequest]:
        """The requests to one endpoint: client_secrets, calls, hangup, live_sessions, live_hangup or live_attach."""
        return self.request_log.by_endpoint[endpoint_name]

    @property
    def hangups(self) -> list[Hangup]:
        """Every hangup request, Realtime and Live, in order, whatever its answer."""
        return list(self.request_log.hangups)

    def hangups_for(self, call_id: str) -> list[Hangup]:
        return [h for h in self.request_log.hangups if h.call_id == call_id]

    def call(self, call_id: str) -> CallRecord | None:
        """A call (`rtc_...`) or Live session (`live_...`) the stand-in answered, running or ended."""
        return self.calls.get(call_id)

    def reset(self) -> None:
        """A clean slate between tests: running calls ended (reason "shutdown"), no faults, no recorded requests or
        hangups, no call records. On the stand-in's own loop (a test serving it there) use `areset()` instead."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self._forget()
            return
        try:
            on_its_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_its_loop = False
        if on_its_loop:
            raise RuntimeError("reset() would wait on its own loop; await areset() there")
        asyncio.run_coroutine_threadsafe(self.areset(), loop).result(timeout=15)

    async def areset(self) -> None:
        """reset(), on the stand-in's loop."""
        self.faults.clear()
        if self._active is not None:
            await self._active.close_all()
        self._forget()

    def _forget(self) -> None:
        self.faults.clear()
        self.request_log.clear()
        self.calls.forget_ended()

    # -- the app -----------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        active = self._active = ActiveCalls(self.calls)
        app[ACTIVE_CALLS_KEY] = active
        calls = RealtimeCalls(self.credentials, active, max_session_seconds=self._max_session_seconds)
        live = LiveSessions(self.credentials, active, max_session_seconds=self._live_max_session_seconds,
                            usage_interval_seconds=self._live_usage_interval)
        hangups = Hangups(self.credentials, active)

        def route(name: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
            return endpoint(name, handler, faults=self.faults, log=self.request_log, credentials=self.credentials)

        app.router.add_post("/v1/realtime/client_secrets", route("client_secrets", self.client_secrets.handle))
        app.router.add_post(realtime_calls.PATH, route("calls", calls.create))
        app.router.add_route("OPTIONS", realtime_calls.PATH, calls.preflight)
        app.router.add_post(hangup.REALTIME_PATH, route("hangup", hangups.realtime))
        app.router.add_post(live_sessions.PATH, route("live_sessions", live.create))
        app.router.add_post(hangup.LIVE_PATH, route("live_hangup", hangups.live))
        app.router.add_get(live_sideband.PATH, route("live_attach", Sideband(self.credentials, active).attach))
        control.add_routes(app, self)

        async def close_calls(_app: web.Application) -> None:
            await active.close_all()

        app.on_shutdown.append(close_calls)
        return app

    # -- running it --------------------------------------------------------------------------------------------

    def start(self) -> StandIn:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-standin", daemon=True)
        self._thread.start()
        started.wait(timeout=15)
        if failure:
            raise failure[0]
        return self

    async def serve(self) -> web.Application:
        """Serve on the running loop (what start() does in its thread); tests that drive aiortc on their own loop
        call this directly, then `aclose()`."""
        self._loop = asyncio.get_running_loop()
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return app

    async def aclose(self) -> None:
        """Stop serving what `serve()` started, closing every call."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
        self._loop = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
