"""The stand-in as a server: an aiohttp app on its own event loop in a background thread.

`StandIn(...).start()` gives `base_url` (`http://127.0.0.1:PORT/v1`), the token registry, the client-secret
faults and the recorded requests. A small control API lets tests in another process inject faults:
`POST /_standin/faults` (a JSON Fault), `DELETE /_standin/faults`, `GET /_standin/requests`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from aiohttp import web

from local.openai_standin import calls
from local.openai_standin.client_secrets import ClientSecrets, Fault
from local.openai_standin.tokens import TokenRegistry

DEFAULT_API_KEY = "sk-local-standin-key-000000000000"  # not a real key: the stand-in's own, for local runs
MAX_SESSION_SECONDS = 60 * 60  # OpenAI's GA maximum


class StandIn:
    def __init__(self, *, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0,
                 max_session_seconds: float = MAX_SESSION_SECONDS) -> None:
        self.registry = TokenRegistry()
        self.client_secrets = ClientSecrets(self.registry, api_key)
        self.api_key = api_key
        self._host, self._port = host, port
        self._max_session_seconds = max_session_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def faults(self):
        return self.client_secrets.faults

    @property
    def requests(self):
        return self.client_secrets.requests

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        self.client_secrets.add_routes(app)
        calls.add_routes(app, self.registry, max_session_seconds=self._max_session_seconds)
        app.router.add_post("/_standin/faults", self._add_fault)
        app.router.add_delete("/_standin/faults", self._clear_faults)
        app.router.add_get("/_standin/requests", self._list_requests)
        return app

    def start(self) -> StandIn:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-standin", daemon=True)
        self._thread.start()
        started.wait(timeout=15)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
        self._loop = self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    async def _add_fault(self, request: web.Request) -> web.Response:
        spec = await request.json()
        known = {f.name for f in dataclasses.fields(Fault)}
        self.faults.add(Fault(**{k: v for k, v in spec.items() if k in known}))
        return web.json_response({"queued": True})

    async def _clear_faults(self, _: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"cleared": True})

    async def _list_requests(self, _: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(r) for r in self.requests])
