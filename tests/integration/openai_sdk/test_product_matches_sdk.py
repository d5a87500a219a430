"""The product's requests to OpenAI beside openai-python's for the same operations, both captured at the stand-in.

For each operation the product performs (a Realtime call and its hangup, a client secret, a GPT-Live session, its
hangup and its sideband's `session.close`), the SDK is given the same inputs (the same offer, the product's own
session) and the two requests are compared: method, path and query; `Content-Type` and `Accept` wherever the SDK
sends them; multipart part names, content types and filenames; the JSON, which must fit the SDK's param TypedDict
for the operation (tests/openai_shapes.py) and serialise as the SDK serialises it; and no header the SDK would not
send, transport-level ones aside.

The product is configured as the template deploys it (its parameters' defaults). Each difference found is listed in
FINDINGS with exactly what the product sends instead and why it matters or not; for those, the test asserts that
difference and no other, so that the suite stays green while it lasts, and fails once the product no longer differs,
for the entry to be removed rather than left stale. (Not xfail marks: those would also pass a test whose capture
broke, or a new difference in the same place.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from openai import OpenAI
from openai.types.live import SessionClosedEvent

from local.openai_standin.endpoint import RecordedRequest
from local.openai_standin.server import StandIn
from local.template_stack import template_function_env
from tests.integration.offers import make_offer
from tests.integration.openai_sdk.conftest import loopback_only, sdk_client, sideband
from tests.openai_shapes import (
    CLIENT_SECRET_REQUEST,
    LIVE_CREATE_REQUEST,
    LIVE_SIDEBAND_CLIENT_EVENT,
    REALTIME_SESSION,
    assert_request,
)
from tokenvend.backends import backend_for, hangups
from tokenvend.live_sideband import LiveSideband
from tokenvend.openai_client import OpenAIClient
from tokenvend.policy import SessionChoice, SessionPolicy
from tokenvend.settings import Settings

SAFETY_IDENTIFIER = "0123456789abcdef0123456789abcdef"  # the shape of the product's hashed caller id
# What any HTTP or WebSocket client sends for its own sake: not part of what the operation asks of OpenAI.
TRANSPORT_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding", "user-agent", "upgrade",
                               "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"})
_ID = re.compile(r"/(rtc|live)_[A-Za-z0-9_-]+")

OPERATIONS = ("realtime_create", "realtime_hangup", "client_secrets", "live_create", "live_hangup", "live_sideband")
# The stand-in endpoint each operation's request arrives at.
ENDPOINT = {"realtime_create": "calls", "realtime_hangup": "hangup", "client_secrets": "client_secrets",
            "live_create": "live_sessions", "live_hangup": "live_hangup", "live_sideband": "live_attach"}

@dataclass(frozen=True)
class Finding:
    """A known difference: exactly what the product sends for the aspect (where the SDK sends something else)."""

    product: Any
    why: str


_SAFETY_HEADER = Finding({"openai-safety-identifier"},
                         "the product sends `OpenAI-Safety-Identifier`, a header openai-python has no parameter for: "
                         "OpenAI's Realtime guide documents it on this request (on GPT-Live the product uses the "
                         "session's `safety_identifier` field, the SDK's way)")
# Every difference between the product's request and the SDK's, by (operation, aspect).
FINDINGS: dict[tuple[str, str], Finding] = {
    ("live_sideband", "accept"): Finding(None, "openai-python's WebSocket upgrade carries its default `Accept: "
                                               "application/json`; the product's hand-written handshake sends none"),
    ("live_sideband", "content_type"): Finding(None, "openai-python's WebSocket upgrade carries its default "
                                                     "`Content-Type: application/json`; the product's handshake (a "
                                                     "GET with no body) sends none"),
    ("realtime_create", "headers"): _SAFETY_HEADER,
    ("client_secrets", "headers"): _SAFETY_HEADER,
}


@dataclass(frozen=True)
class Seen:
    """One request as the stand-in recorded it, reduced to what the comparison reads."""

    method: str
    path: str  # with the call or session id replaced by {id}
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any
    parts: dict[str, tuple[str, str | None]] | None  # multipart: name -> (content type, filename)
    authorized: bool
    sent_events: list[Any]  # on a sideband: what the client sent over it

    @classmethod
    def of(cls, record: RecordedRequest, sent_events: list[Any] | None = None) -> Seen:
        parts = None if record.parts is None else {
            name: (labels.content_type, labels.filename) for name, labels in record.parts.items()}
        return cls(record.method, _ID.sub("/{id}", record.path), dict(record.query),
                   {name.lower(): value for name, value in record.headers.items()}, record.body, parts,
                   record.authorized, list(sent_events or []))

    def media_type(self) -> str | None:
        value = self.headers.get("content-type")
        return None if value is None else value.split(";")[0].strip().lower()


@dataclass(frozen=True)
class Pair:
    sdk: Seen
    product: Seen


class Product:
    """The product's OpenAI side, built as the function builds it, from the template's defaults."""

    def __init__(self, standin: StandIn) -> None:
        settings = Settings.from_env({**template_function_env(), "OPENAI_BASE_URL": standin.base_url})
        self.policy = SessionPolicy(settings)
        self.openai = OpenAIClient(settings.openai_base_url, settings.openai_timeout_seconds)
        self.sideband = LiveSideband(settings.openai_base_url, settings.openai_timeout_seconds)
        self.choice: SessionChoice = self.policy.choose(None, None)
        self.key = standin.api_key

    def create(self, backend: str, offer: str) -> str:
        created = backend_for(backend, self.openai, self.policy).create_call(self.key, offer, self.choice,
                                                                             SAFETY_IDENTIFIER)
        return created.value.call_id


def _new_requests(standin: StandIn, endpoint: str, action: Callable[[], Any]) -> list[RecordedRequest]:
    """The requests `action` made to `endpoint` (each is recorded by the time its client has an answer)."""
    before = len(standin.requests_to(endpoint))
    action()
    return list(standin.requests_to(endpoint)[before:])


def _capture(standin: StandIn, sdk: OpenAI, product: Product, offer: str) -> dict[str, Pair]:
    """Each operation done once by each client; the first request each sent to the operation's endpoint."""
    # What the product sends: its policy's session with the caller's hashed id in GPT-Live's own field.
    live_session = {**product.policy.live_session(product.choice), "safety_identifier": SAFETY_IDENTIFIER}
    transport = {"type": "webrtc", "sdp": offer}

    def sdk_realtime_call() -> str:
        raw = sdk.realtime.calls.with_raw_response.create(sdp=offer,
                                                          session=product.policy.realtime_session(product.choice))
        return raw.headers["location"].rsplit("/", 1)[1]

    def sdk_close(session_id: str) -> None:
        with sideband(sdk, session_id) as connection:
            connection.send({"type": "session.close"})
            assert isinstance(connection.recv(), SessionClosedEvent)

    def product_close(session_id: str) -> None:
        assert product.sideband.hang_up(product.key, session_id).value is True

    realtime_ids = [sdk_realtime_call(), product.create("realtime", offer)]
    live_ids = [sdk.live.create(session=live_session, transport=transport).session.id for _ in range(2)] + [
        product.create("live", offer) for _ in range(2)]
    actions: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "realtime_create": (sdk_realtime_call, lambda: product.create("realtime", offer)),
        "realtime_hangup": (lambda: sdk.realtime.calls.hangup(realtime_ids[0]),
                            lambda: hangups(product.openai)["realtime"].hang_up(product.key, realtime_ids[1])),
        "client_secrets": (
            lambda: sdk.realtime.client_secrets.create(**product.policy.client_secret_request(product.choice)),
            lambda: product.openai.create_client_secret(
                product.key, product.policy.client_secret_request(product.choice), SAFETY_IDENTIFIER)),
        "live_create": (lambda: sdk.live.create(session=live_session, transport=transport),
                        lambda: product.create("live", offer)),
        "live_hangup": (lambda: sdk.live.sessions.hangup(live_ids[0]),
                        lambda: hangups(product.openai)["live"].hang_up(product.key, live_ids[2])),
        "live_sideband": (lambda: sdk_close(live_ids[1]), lambda: product_close(live_ids[3])),
    }
    pairs: dict[str, Pair] = {}
    for operation, (by_sdk, by_product) in actions.items():
        endpoint = ENDPOINT[operation]
        seen = []
        for action, session_id in ((by_sdk, live_ids[1]), (by_product, live_ids[3])):
            records = _new_requests(standin, endpoint, action)
            assert records and all(r.status < 300 or r.status == 404 for r in records), (operation, records)
            events = None
            if operation == "live_sideband":
                call = standin.call(session_id)
                events = call.sideband_events if call is not None else None
            seen.append(Seen.of(records[0], events))
        pairs[operation] = Pair(*seen)
    return pairs


@pytest.fixture(scope="module")
def captured(standin: StandIn) -> Iterator[dict[str, Pair]]:
    standin.reset()
    with loopback_only() as attempts:
        sdk = sdk_client(standin)
        try:
            pairs = _capture(standin, sdk, Product(standin), make_offer())
        finally:
            sdk.close()
            standin.reset()
    assert not attempts, attempts
    yield pairs


def _agree(operation: str, aspect: str, product: Any, sdk: Any) -> None:
    """The product's value for an aspect is the SDK's, or exactly what FINDINGS says it is instead."""
    finding = FINDINGS.get((operation, aspect))
    if finding is None:
        assert product == sdk, f"{operation}: the product differs from the SDK ({aspect})"
        return
    assert product != sdk, f"{operation}: the product now does as the SDK does ({aspect}); remove: {finding.why}"
    assert product == finding.product, f"{operation}: a difference FINDINGS does not describe ({aspect})"


def test_every_finding_names_a_real_operation_and_aspect() -> None:
    aspects = {"method", "content_type", "accept", "parts", "json", "headers"}
    assert {op for op, _ in FINDINGS} <= set(OPERATIONS) and {a for _, a in FINDINGS} <= aspects


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_same_method_path_and_query(captured: dict[str, Pair], operation: str) -> None:
    pair = captured[operation]
    assert pair.product.authorized and pair.sdk.authorized  # both with the standard key, as a Bearer
    _agree(operation, "method", (pair.product.method, pair.product.path, pair.product.query),
           (pair.sdk.method, pair.sdk.path, pair.sdk.query))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_content_type_the_sdk_sends(captured: dict[str, Pair], operation: str) -> None:
    # Where the SDK labels its request, the product's label is the same; where it does not, neither does it.
    pair = captured[operation]
    _agree(operation, "content_type", pair.product.media_type(), pair.sdk.media_type())


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_accept_the_sdk_sends(captured: dict[str, Pair], operation: str) -> None:
    pair = captured[operation]
    assert "accept" in pair.sdk.headers  # the SDK states what it takes on every operation here
    _agree(operation, "accept", pair.product.headers.get("accept"), pair.sdk.headers["accept"])


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_same_multipart_parts(captured: dict[str, Pair], operation: str) -> None:
    pair = captured[operation]
    if operation == "realtime_create":  # the one multipart request: parts as OpenAI's spec encodes them
        assert pair.sdk.parts == {"sdp": ("application/sdp", None), "session": ("application/json", None)}
    _agree(operation, "parts", pair.product.parts, pair.sdk.parts)


def _product_json(operation: str, seen: Seen) -> list[tuple[Any, Any]]:
    """(value, the SDK's param type for it) for each JSON value the product sent in this operation."""
    if operation == "realtime_create":
        return [(seen.body["session"], REALTIME_SESSION)]
    if operation == "client_secrets":
        return [(seen.body, CLIENT_SECRET_REQUEST)]
    if operation == "live_create":
        return [(seen.body, LIVE_CREATE_REQUEST)]
    if operation == "live_sideband":
        return [(event, LIVE_SIDEBAND_CLIENT_EVENT) for event in seen.sent_events]
    return []


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_json_fits_the_sdk_params_and_serialises_as_the_sdk_does(captured: dict[str, Pair],
                                                                      operation: str) -> None:
    pair = captured[operation]
    for value, shape in _product_json(operation, pair.product):
        assert_request(value, shape, f"the product's {operation}")
    # Given the product's own values, the SDK sends the same JSON: nothing the product sends is renamed, dropped or
    # reshaped on the SDK's way to OpenAI.
    _agree(operation, "json", (pair.product.body, pair.product.sent_events), (pair.sdk.body, pair.sdk.sent_events))
    if operation == "live_sideband":
        assert pair.sdk.sent_events == [{"type": "session.close"}]
    if operation in ("realtime_hangup", "live_hangup"):
        assert pair.sdk.body == ""  # no body: the SDK sends none on a hangup


@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_header_the_sdk_would_not_send(captured: dict[str, Pair], operation: str) -> None:
    pair = captured[operation]
    _agree(operation, "headers", set(pair.product.headers) - set(pair.sdk.headers) - TRANSPORT_HEADERS, set())


def test_the_comparison_sees_what_it_compares(captured: dict[str, Pair]) -> None:
    """The captures are of what they claim: the right requests, with the product's session in both."""
    realtime = captured["realtime_create"]
    assert json.dumps(realtime.sdk.body["session"]) == json.dumps(realtime.product.body["session"])
    assert realtime.product.body["session"]["truncation"]["type"] == "retention_ratio"
    assert captured["live_create"].product.body["transport"]["type"] == "webrtc"
    assert captured["realtime_hangup"].sdk.path == "/v1/realtime/calls/{id}/hangup"
    assert captured["live_sideband"].sdk.path == "/v1/live/sessions/{id}/attach"
    assert captured["live_sideband"].product.method == "GET"
