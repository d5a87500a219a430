"""The `/_standin/...` control API, for tests that run the stand-in in another process.

- `POST /_standin/faults` a JSON Fault (`status`, `body`, `headers`, `delay_seconds`, `drop`, `times`, `proceed`,
  `endpoint`: client_secrets | calls | hangup | live_sessions | live_hangup | live_attach; default client_secrets);
  `GET /_standin/faults[?endpoint=]` what is still queued; `DELETE /_standin/faults[?endpoint=]`.
  A fault answers instead of the endpoint, and nothing happens behind it:
  - `{"endpoint": "live_hangup", "status": 200}`: GPT-Live's hangup says yes (200, OpenAI's empty body) and the
    session goes on running; only `session.close` on its sideband ends it then. Any 2xx without a `body` answers
    with an empty body like this; `hangup` takes the same for Realtime.
  - `live_attach` aims at the sideband's opening GET: an error status refuses the upgrade (404 says the session is
    over), `drop` cuts the connection, `delay_seconds` stalls it, and with `proceed` the upgrade then goes ahead.
- `GET /_standin/requests[?endpoint=]` the recorded requests (all endpoints, or one), never the key itself: method,
  path, query, headers, body, and for a multipart body each part's content type and filename (`parts`);
  `DELETE /_standin/requests` forgets them and the hangups.
- `GET /_standin/hangups[?call_id=]` every hangup request: `{call_id, status, endpoint}`.
- `GET /_standin/calls[?active=true]` and `GET /_standin/calls/{call_id}`: the calls and Live sessions, with what
  the browser sent on `oai-events` (`client_events`) and a server on a Live sideband (`sideband_events`).
- `POST /_standin/reset`: no faults, no recorded requests or hangups, no records of ended calls.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from aiohttp import web

from local.openai_standin.faults import ENDPOINTS, Fault

if TYPE_CHECKING:
    from local.openai_standin.server import StandIn

PREFIX = "/_standin"


def add_routes(app: web.Application, standin: StandIn) -> None:
    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        standin.faults.add(fault)
        return web.json_response({"queued": True})

    async def list_faults(request: web.Request) -> web.Response:
        endpoint = _endpoint(request)
        return web.json_response([dataclasses.asdict(f) for f in standin.faults.pending(endpoint)])

    async def clear_faults(request: web.Request) -> web.Response:
        standin.faults.clear(_endpoint(request))
        return web.json_response({"cleared": True})

    async def list_requests(request: web.Request) -> web.Response:
        endpoint = _endpoint(request)
        endpoints = ENDPOINTS if endpoint is None else (endpoint,)
        records = [r for name in endpoints for r in standin.requests_to(name)]
        return web.json_response([dataclasses.asdict(r) for r in records])

    async def clear_requests(_: web.Request) -> web.Response:
        standin.request_log.clear()
        return web.json_response({"cleared": True})

    async def list_hangups(request: web.Request) -> web.Response:
        call_id = request.query.get("call_id")
        hangups = standin.hangups if call_id is None else standin.hangups_for(call_id)
        return web.json_response([dataclasses.asdict(h) for h in hangups])

    async def list_calls(request: web.Request) -> web.Response:
        records = standin.calls.active() if request.query.get("active") == "true" else standin.calls.all()
        return web.json_response([r.to_json() for r in records])

    async def get_call(request: web.Request) -> web.Response:
        record = standin.calls.get(request.match_info["call_id"])
        if record is None:
            return web.json_response({"error": "no such call"}, status=404)
        return web.json_response(record.to_json())

    async def reset(_: web.Request) -> web.Response:
        await standin.areset()
        return web.json_response({"reset": True})

    app.router.add_post(f"{PREFIX}/faults", add_fault)
    app.router.add_get(f"{PREFIX}/faults", list_faults)
    app.router.add_delete(f"{PREFIX}/faults", clear_faults)
    app.router.add_get(f"{PREFIX}/requests", list_requests)
    app.router.add_delete(f"{PREFIX}/requests", clear_requests)
    app.router.add_get(f"{PREFIX}/hangups", list_hangups)
    app.router.add_get(f"{PREFIX}/calls", list_calls)
    app.router.add_get(f"{PREFIX}/calls/{{call_id}}", get_call)
    app.router.add_post(f"{PREFIX}/reset", reset)


def _endpoint(request: web.Request) -> str | None:
    endpoint = request.query.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise web.HTTPBadRequest(text=f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
    return endpoint
