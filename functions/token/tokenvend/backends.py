"""The voice backends: how a call is set up at OpenAI with the owner's key, and how it is hung up.

One interface (`VoiceBackend`), chosen once at start-up; the routes, the limiter, the leash and the budget do not
know which one runs. The browser's SDP offer goes to OpenAI from here, so the browser never holds an OpenAI token
and we always know the call's id, which is what a server-side hangup needs.
"""

from __future__ import annotations

import json
from typing import NamedTuple, Protocol
from urllib.parse import quote

import httpx

from tokenvend.live_sideband import LiveSideband
from tokenvend.observability import logger
from tokenvend.openai_client import FailureKind, OpenAIClient, Timed, UpstreamFailure
from tokenvend.policy import SessionChoice, SessionPolicy


class CreatedCall(NamedTuple):
    call_id: str
    answer_sdp: str


class CallHangup(Protocol):
    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        """True if OpenAI ended the call now, False if it had already ended (404); UpstreamFailure otherwise."""
        ...


class VoiceBackend(CallHangup, Protocol):
    name: str

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]: ...


class Hangup:
    """`POST <path>/{id}/hangup` with no body: what ends a call, whichever way it was set up.

    `when_refused`, if given, is asked next when OpenAI refuses the hangup with a 4xx (its 404 included): OpenAI
    documents Live's hangup for SIP calls, and ends a WebRTC session through its sideband for certain."""

    def __init__(self, openai: OpenAIClient, calls_path: str, when_refused: CallHangup | None = None) -> None:
        self._openai = openai
        self._calls_path = calls_path
        self._when_refused = when_refused

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        try:
            timed = self._openai.post(f"{self._calls_path}/{quote(call_id, safe='')}/hangup", api_key,
                                      headers={"Accept": "*/*"})
        except UpstreamFailure as failure:
            second_way = self._when_refused
            if second_way is not None and failure.kind in (FailureKind.NOT_FOUND, FailureKind.REJECTED):
                ended = second_way.hang_up(api_key, call_id)
                logger.info("hangup refused; the call was ended the second way" if ended.value
                            else "hangup refused; the call was already over",
                            extra={"call_id": call_id, "hangup_status": failure.status})
                return Timed(ended.value, failure.latency_ms + ended.latency_ms)
            if failure.kind is FailureKind.NOT_FOUND:
                return Timed(False, failure.latency_ms)
            raise
        return Timed(True, timed.latency_ms)


REALTIME_CALLS = "/realtime/calls"
LIVE_SESSIONS = "/live/sessions"


def hangups(openai: OpenAIClient) -> dict[str, CallHangup]:
    """How to hang up a call of each backend, by the backend's name (what the leash needs, and nothing else)."""
    return {RealtimeBackend.name: Hangup(openai, REALTIME_CALLS), LiveBackend.name: live_hangup(openai)}


def live_hangup(openai: OpenAIClient) -> Hangup:
    return Hangup(openai, LIVE_SESSIONS, when_refused=LiveSideband(openai.base_url, openai.timeout_seconds))


def backend_for(name: str, openai: OpenAIClient, policy: SessionPolicy) -> VoiceBackend:
    return {RealtimeBackend.name: RealtimeBackend, LiveBackend.name: LiveBackend}[name](openai, policy)


class RealtimeBackend:
    """`POST /v1/realtime/calls` (multipart: the offer and the session) and `.../{call_id}/hangup`."""

    name = "realtime"

    def __init__(self, openai: OpenAIClient, policy: SessionPolicy) -> None:
        self._openai = openai
        self._policy = policy
        self._hangup = Hangup(openai, REALTIME_CALLS)

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]:
        # Always multipart with a session part: the raw-SDP form is for ephemeral tokens only.
        files = {"sdp": (None, offer_sdp, "application/sdp"),
                 "session": (None, json.dumps(self._policy.realtime_session(choice)), "application/json")}
        timed = self._openai.post(REALTIME_CALLS, api_key, safety_identifier, files=files,
                                  headers={"Accept": "application/sdp"}, may_repeat=False)
        return Timed(_realtime_call(timed.value), timed.latency_ms)

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        return self._hangup.hang_up(api_key, call_id)


def _realtime_call(response: httpx.Response) -> CreatedCall:
    location = response.headers.get("location", "")
    call_id = location.rstrip("/").rsplit("/", 1)[-1]
    answer = response.text
    if response.status_code != 201 or not call_id.startswith("rtc_") or not answer.lstrip().startswith("v=0"):
        raise UpstreamFailure(FailureKind.ERROR, response.status_code,
                              f"{response.status_code} without an SDP answer and an rtc_ Location")
    return CreatedCall(call_id, answer)


class LiveBackend:
    """GPT-Live: `POST /v1/live/sessions` (JSON: the session and the WebRTC offer) and `.../{id}/hangup`, or the
    sideband's `session.close` if that is refused. There are no ephemeral tokens in this API at all: only a server
    can start a session."""

    name = "live"

    def __init__(self, openai: OpenAIClient, policy: SessionPolicy) -> None:
        self._openai = openai
        self._policy = policy
        self._hangup = live_hangup(openai)

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]:
        body = {"session": self._policy.live_session(choice), "transport": {"type": "webrtc", "sdp": offer_sdp}}
        timed = self._openai.post(LIVE_SESSIONS, api_key, safety_identifier, json=body, may_repeat=False)
        return Timed(_live_session(timed.value), timed.latency_ms)

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        return self._hangup.hang_up(api_key, call_id)


def _live_session(response: httpx.Response) -> CreatedCall:
    try:
        data = response.json()
        session_id, answer = data["session"]["id"], data["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        session_id = answer = None
    if (response.status_code != 201 or not isinstance(session_id, str) or not session_id.startswith("live_")
            or not isinstance(answer, str) or not answer.lstrip().startswith("v=0")):
        raise UpstreamFailure(FailureKind.ERROR, response.status_code,
                              f"{response.status_code} without a live_ session id and an SDP answer")
    return CreatedCall(session_id, answer)
