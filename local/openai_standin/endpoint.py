"""What every OpenAI endpoint of the stand-in does around its own logic: read the body, play an injected fault,
and record the request for tests (the Authorization header reduced to whether it was the standard key).

A record keeps what a client chose to send, so that tests can set one client's requests beside another's (the
product's beside openai-python's): method, path, query, headers, the body, and for a multipart body each part's
content type and filename."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from local.openai_standin.auth import Credentials, Refused, openai_error
from local.openai_standin.faults import ENDPOINTS, FaultPlan
from local.openai_standin.schema import RequestError


@dataclass(frozen=True)
class Part:
    """One part of a multipart/form-data body."""

    content_type: str
    text: str
    filename: str | None = None  # openai-python sends none; a client that does is sending something else


@dataclass(frozen=True)
class PartHeaders:
    """What a recorded multipart part was labelled with (its content is in the record's body)."""

    content_type: str
    filename: str | None


@dataclass
class Incoming:
    """A request with its body read: `raw` for any body, `parts` when it was multipart/form-data."""

    request: web.Request
    raw: bytes = b""
    parts: dict[str, Part] | None = None
    call_id: str | None = None  # the id a hangup names
    malformed: bool = False  # a multipart body that could not be parsed
    # Records the request with this status now, not when the handler returns: a WebSocket's handler returns only
    # when the socket has closed, which its client may see first. Recording twice does nothing.
    record_now: Callable[[int], None] = field(default=lambda _status: None, repr=False)

    @property
    def authorization(self) -> str:
        return self.request.headers.get("Authorization", "")


@dataclass
class RecordedRequest:
    headers: dict[str, str]
    body: Any
    authorized: bool  # whether the Authorization header carried the standard key; never its value
    status: int
    endpoint: str = "client_secrets"
    path: str = ""
    method: str = "POST"
    query: dict[str, str] = field(default_factory=dict)
    parts: dict[str, PartHeaders] | None = None  # for a multipart body: each part's labels, by name


@dataclass(frozen=True)
class Hangup:
    """One hangup request, whatever it was answered (a refused or faulted one too)."""

    call_id: str
    status: int
    endpoint: str  # "hangup" (Realtime) or "live_hangup"


@dataclass
class RequestLog:
    """Every request per endpoint, and every hangup. The per-endpoint lists are stable objects, so a caller may keep
    one and `clear()` it."""

    by_endpoint: dict[str, list[RecordedRequest]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    hangups: list[Hangup] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: RecordedRequest, call_id: str | None) -> None:
        with self._lock:
            self.by_endpoint[record.endpoint].append(record)
            if record.endpoint in ("hangup", "live_hangup") and call_id is not None:
                self.hangups.append(Hangup(call_id, record.status, record.endpoint))

    def clear(self) -> None:
        with self._lock:
            for records in self.by_endpoint.values():
                records.clear()
            self.hangups.clear()


Handler = Callable[[Incoming], Awaitable[web.StreamResponse]]


def json_body(incoming: Incoming, validate: Callable[[Any], None]) -> Any:
    """The JSON body, checked by `validate` (which raises RequestError); Refused with OpenAI's 400 otherwise."""
    if incoming.request.content_type != "application/json":
        raise Refused(openai_error(400, "Content-Type must be application/json.", "invalid_content_type"))
    try:
        body = json.loads(incoming.raw)
        validate(body)
    except RequestError as exc:
        raise Refused(openai_error(400, str(exc), exc.code, exc.param)) from None
    except ValueError:
        raise Refused(openai_error(400, "We could not parse the JSON body of your request.", "invalid_json")) from None
    return body


def endpoint(name: str, handler: Handler, *, faults: FaultPlan, log: RequestLog,
             credentials: Credentials) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler: body read, fault played (before any check, as an outage would), request recorded."""

    async def handle(request: web.Request) -> web.StreamResponse:
        incoming = Incoming(request, call_id=request.match_info.get("call_id"))
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
            parts = None if incoming.parts is None else {
                part_name: PartHeaders(part.content_type, part.filename) for part_name, part in incoming.parts.items()}
            log.add(RecordedRequest(headers, _recorded_body(incoming), credentials.is_standard(incoming.authorization),
                                    status, name, request.path, request.method, dict(request.query), parts),
                    incoming.call_id)

        incoming.record_now = record
        if request.content_type == "multipart/form-data":
            try:
                incoming.parts = await read_parts(request)
            except (ValueError, AssertionError, RuntimeError):  # aiohttp's reader on a bad boundary or framing
                incoming.malformed = True
        else:
            incoming.raw = await request.read()
        response: web.StreamResponse | None = None
        try:
            fault = faults.take(name)
            if fault is not None:
                response = await fault.respond(request)
            if response is None:
                try:
                    response = await handler(incoming)
                except Refused as refused:
                    response = refused.response
            return response
        finally:
            record(response.status if response is not None else 0)  # 0: the connection was dropped

    return handle


async def read_parts(request: web.Request) -> dict[str, Part]:
    """The named parts of a multipart body; a later part of the same name wins (OpenAI would take one)."""
    parts: dict[str, Part] = {}
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            return parts
        if isinstance(part, BodyPartReader) and part.name:
            content_type = part.headers.get("Content-Type", "text/plain").split(";")[0].strip().lower()
            parts[part.name] = Part(content_type, (await part.read()).decode("utf-8", "replace"), part.filename)


def _recorded_body(incoming: Incoming) -> Any:
    if incoming.parts is not None:
        return {name: _decoded(part.text) if part.content_type == "application/json" else part.text
                for name, part in incoming.parts.items()}
    return _decoded(incoming.raw.decode("utf-8", "replace"))


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
