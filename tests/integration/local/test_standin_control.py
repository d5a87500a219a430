"""The stand-in's `/_standin/...` control API, as a test in another process uses it: faults per endpoint (a Live
hangup that says yes and ends nothing, a refused sideband), the recorded requests and hangups, the calls and
sessions, and a reset; with the stand-in running in its own thread."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from local.openai_standin.server import StandIn
from tests.integration.local.conftest import LIVE_SESSION, REALTIME_SESSION, multipart, offer_sdp


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as running:
        yield running


@pytest.fixture
def control(standin: StandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{standin.port}/_standin") as client:
        assert client.post("/reset").json() == {"reset": True}
        yield client
        client.post("/reset")


@pytest.fixture(scope="module")
def offer() -> str:
    return asyncio.run(offer_sdp())


def openai(standin: StandIn, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {standin.api_key if key is None else key}"}
    return httpx.post(f"{standin.base_url}{path}", headers=headers, **kwargs)


def create_call(standin: StandIn, offer: str) -> httpx.Response:
    return openai(standin, "/realtime/calls", files=multipart(offer, REALTIME_SESSION))


def test_faults_per_endpoint_over_http(standin: StandIn, control: httpx.Client, offer: str) -> None:
    assert control.post("/faults", json={"status": 500, "times": 3, "endpoint": "hangup"}).json() == {"queued": True}
    assert control.post("/faults", json={"status": 503, "endpoint": "calls"}).status_code == 200
    pending = control.get("/faults", params={"endpoint": "hangup"}).json()
    assert [(f["endpoint"], f["status"], f["times"]) for f in pending] == [("hangup", 500, 3)]

    assert create_call(standin, offer).status_code == 503
    call_id = create_call(standin, offer).headers["location"].rsplit("/", 1)[1]
    statuses = [openai(standin, f"/realtime/calls/{call_id}/hangup").status_code for _ in range(4)]
    assert statuses == [500, 500, 500, 200]
    assert control.get("/hangups", params={"call_id": call_id}).json() == [
        {"call_id": call_id, "status": s, "endpoint": "hangup"} for s in statuses]
    assert control.get("/faults").json() == []


@pytest.mark.parametrize("spec", [{"status": 500, "endpoint": "tokens"}, {"status": 500, "retries": 2}, [1]])
def test_a_fault_that_cannot_mean_anything_is_refused(control: httpx.Client, spec: Any) -> None:
    response = control.post("/faults", json=spec)
    assert response.status_code == 400 and response.json()["error"]
    assert control.get("/faults").json() == []


def test_clearing_faults_for_one_endpoint(control: httpx.Client) -> None:
    control.post("/faults", json={"endpoint": "live_sessions"})
    control.post("/faults", json={"endpoint": "live_hangup"})
    assert control.delete("/faults", params={"endpoint": "live_sessions"}).status_code == 200
    assert [f["endpoint"] for f in control.get("/faults").json()] == ["live_hangup"]
    assert control.get("/faults", params={"endpoint": "nope"}).status_code == 400


def test_recorded_requests_per_endpoint_never_hold_the_key(standin: StandIn, control: httpx.Client,
                                                           offer: str) -> None:
    assert create_call(standin, offer).status_code == 201
    assert openai(standin, "/realtime/calls", key="sk-wrong-0000000000000",
                  files=multipart(offer, REALTIME_SESSION)).status_code == 401
    live = openai(standin, "/live/sessions", json={"session": LIVE_SESSION,
                                                   "transport": {"type": "webrtc", "sdp": offer}})
    assert live.status_code == 201

    calls = control.get("/requests", params={"endpoint": "calls"}).json()
    assert [(r["authorized"], r["status"], r["endpoint"]) for r in calls] == [(True, 201, "calls"),
                                                                             (False, 401, "calls")]
    assert calls[0]["body"] == {"sdp": offer, "session": REALTIME_SESSION}
    everything = control.get("/requests").json()
    assert {r["endpoint"] for r in everything} == {"calls", "live_sessions"}
    text = repr(everything)
    assert standin.api_key not in text and "sk-wrong-0000000000000" not in text and "Authorization" not in text
    assert control.delete("/requests").json() == {"cleared": True}
    assert control.get("/requests").json() == []


def test_calls_and_sessions_by_id(standin: StandIn, control: httpx.Client, offer: str) -> None:
    call_id = create_call(standin, offer).headers["location"].rsplit("/", 1)[1]
    session_id = openai(standin, "/live/sessions", json={"session": LIVE_SESSION, "transport": {
        "type": "webrtc", "sdp": offer}}).json()["session"]["id"]

    listed = {c["call_id"]: c for c in control.get("/calls", params={"active": "true"}).json()}
    assert set(listed) == {call_id, session_id}
    assert listed[call_id]["kind"] == "realtime" and listed[session_id]["kind"] == "live"
    assert listed[session_id]["session"]["id"] == session_id and not listed[call_id]["ended"]

    assert openai(standin, f"/live/sessions/{session_id}/hangup").status_code == 200
    ended = control.get(f"/calls/{session_id}").json()
    assert ended["ended"] and ended["end_reason"] == "hangup" and ended["ended_at"] >= ended["created_at"]
    assert [c["call_id"] for c in control.get("/calls", params={"active": "true"}).json()] == [call_id]
    assert control.get("/calls/rtc_nope").status_code == 404


def test_reset_ends_running_calls_so_their_hangup_is_404(standin: StandIn, control: httpx.Client,
                                                         offer: str) -> None:
    call_id = create_call(standin, offer).headers["location"].rsplit("/", 1)[1]
    control.post("/faults", json={"endpoint": "hangup"})
    record = standin.call(call_id)
    assert record is not None

    assert control.post("/reset").status_code == 200
    assert record.ended and record.end_reason == "shutdown"
    assert control.get("/calls").json() == [] and control.get("/faults").json() == []
    assert openai(standin, f"/realtime/calls/{call_id}/hangup").status_code == 404


def test_in_process_reset_from_another_thread(standin: StandIn, control: httpx.Client, offer: str) -> None:
    call_id = create_call(standin, offer).headers["location"].rsplit("/", 1)[1]
    record = standin.call(call_id)
    assert record is not None
    worker = threading.Thread(target=standin.reset)
    worker.start()
    worker.join(10)
    assert record.wait_ended(1) and standin.calls.all() == [] and standin.hangups == []


def live_session(standin: StandIn, offer: str) -> str:
    created = openai(standin, "/live/sessions", json={"session": LIVE_SESSION,
                                                       "transport": {"type": "webrtc", "sdp": offer}})
    assert created.status_code == 201, created.text
    return created.json()["session"]["id"]


async def close_on_sideband(standin: StandIn, session_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Opens the session's sideband as a server would and sends session.close: (the attach's status, what came back)."""
    url = f"{standin.base_url}/live/sessions/{session_id}/attach"
    headers = {"Authorization": f"Bearer {standin.api_key}"}
    async with aiohttp.ClientSession() as http:
        try:
            socket = await http.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status, []
        async with socket:
            await socket.send_json({"type": "session.close"})
            return 101, [json.loads(message.data) async for message in socket
                         if message.type is aiohttp.WSMsgType.TEXT]


def test_a_live_hangup_fault_of_200_leaves_the_session_to_the_sideband(standin: StandIn, control: httpx.Client,
                                                                       offer: str) -> None:
    """What the leash's attack matrix needs: GPT-Live's hangup says 200 and ends nothing; session.close does."""
    session_id = live_session(standin, offer)
    assert control.post("/faults", json={"endpoint": "live_hangup", "status": 200}).status_code == 200

    said_yes = openai(standin, f"/live/sessions/{session_id}/hangup")
    assert (said_yes.status_code, said_yes.content) == (200, b"")  # OpenAI's success, word for word
    running = control.get(f"/calls/{session_id}").json()
    assert not running["ended"] and session_id in {c["call_id"] for c in control.get(
        "/calls", params={"active": "true"}).json()}
    assert control.get("/hangups", params={"call_id": session_id}).json() == [
        {"call_id": session_id, "status": 200, "endpoint": "live_hangup"}]

    status, events = asyncio.run(close_on_sideband(standin, session_id))
    assert status == 101 and [e["type"] for e in events] == ["session.closed"]
    ended = control.get(f"/calls/{session_id}").json()
    assert ended["ended"] and ended["end_reason"] == "sideband_close"
    assert ended["sideband_events"] == [{"type": "session.close"}]


def test_a_fault_aimed_at_the_sideband_over_http(standin: StandIn, control: httpx.Client, offer: str) -> None:
    session_id = live_session(standin, offer)
    assert control.post("/faults", json={"endpoint": "live_attach", "status": 404}).status_code == 200
    assert [f["endpoint"] for f in control.get("/faults", params={"endpoint": "live_attach"}).json()] == [
        "live_attach"]

    assert asyncio.run(close_on_sideband(standin, session_id)) == (404, [])  # "over", though it is not
    assert not control.get(f"/calls/{session_id}").json()["ended"]
    status, events = asyncio.run(close_on_sideband(standin, session_id))
    assert status == 101 and events[-1]["type"] == "session.closed"
    attaches = control.get("/requests", params={"endpoint": "live_attach"}).json()
    assert [(a["method"], a["status"]) for a in attaches] == [("GET", 404), ("GET", 101)]


def test_recorded_requests_keep_method_query_and_part_labels(standin: StandIn, control: httpx.Client,
                                                             offer: str) -> None:
    files = {**multipart(offer, REALTIME_SESSION), "sdp": ("offer.sdp", offer, "application/sdp")}
    assert openai(standin, "/realtime/calls", files=files, params={"trace": "1"}).status_code == 201
    (recorded,) = control.get("/requests", params={"endpoint": "calls"}).json()
    assert (recorded["method"], recorded["path"], recorded["query"]) == ("POST", "/v1/realtime/calls", {"trace": "1"})
    assert recorded["parts"] == {"sdp": {"content_type": "application/sdp", "filename": "offer.sdp"},
                                 "session": {"content_type": "application/json", "filename": None}}
