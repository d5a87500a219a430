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


class VoiceBackend(Protocol):
    """How a call is set up; how each backend's calls end is `hangups`, which the leash and the desk share."""

    name: str

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]: ...


REALTIME_CALLS = "/realtime/calls"
LIVE_SESSIONS = "/live/sessions"
REALTIME, LIVE = "realtime", "live"
# What OpenAI bills a call however short it was: GPT-Live bills 15 s when a session is created (credited once it
# runs), so a session ended at once, or created and never connected, costs 15 s. A Realtime call bills tokens only.
MINIMUM_BILLED_SECONDS = {REALTIME: 0, LIVE: 15}


class Hangup:
    """`POST <path>/{id}/hangup` with an empty body: what ends a Realtime call. OpenAI's 404 means it had already
    ended."""

    def __init__(self, openai: OpenAIClient, calls_path: str) -> None:
        self._openai = openai
        self._calls_path = calls_path

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        try:
            # An empty body labelled JSON, as OpenAI's own SDK sends it.
            timed = self._openai.post(f"{self._calls_path}/{quote(call_id, safe='')}/hangup", api_key,
                                      headers={"Accept": "*/*", "Content-Type": "application/json"})
        except UpstreamFailure as failure:
            if failure.kind is FailureKind.NOT_FOUND:
                return Timed(False, failure.latency_ms)
            raise
        return Timed(True, timed.latency_ms)


class LiveHangup:
    """A GPT-Live session counts as ended only when OpenAI confirms it: `POST .../{id}/hangup` first (OpenAI
    documents it for SIP calls, so its answer, 2xx or not, proves nothing about a WebRTC session), then the
    sideband, which says for certain: a 404 on attach (the session is over, whichever way it ended) or
    `session.closed` after our `session.close`. Anything short of that raises, and the leash tries again."""

    def __init__(self, openai: OpenAIClient, sideband: CallHangup) -> None:
        self._hangup = Hangup(openai, LIVE_SESSIONS)
        self._sideband = sideband

    def hang_up(self, api_key: str, call_id: str) -> Timed[bool]:
        asked, latency_ms = False, 0.0
        try:
            timed = self._hangup.hang_up(api_key, call_id)
            asked, latency_ms = timed.value, timed.latency_ms
        except UpstreamFailure as failure:
            if failure.kind is FailureKind.AUTH:
                raise  # the same key would be refused on the sideband: refresh it first
            latency_ms = failure.latency_ms
            logger.info("the Live hangup was refused; the sideband decides", extra={"hangup_status": failure.status})
        confirmed = self._sideband.hang_up(api_key, call_id)
        if asked and confirmed.value:
            logger.warning("the Live hangup answered 2xx but the session was still running; closed on the sideband",
                           extra={"call_id": call_id})
        return Timed(asked or confirmed.value, latency_ms + confirmed.latency_ms)


def hangups(openai: OpenAIClient) -> dict[str, CallHangup]:
    """How to hang up a call of each backend, by the backend's name (what the leash needs, and nothing else)."""
    return {REALTIME: Hangup(openai, REALTIME_CALLS),
            LIVE: LiveHangup(openai, LiveSideband(openai.base_url, openai.timeout_seconds))}


def backend_for(name: str, openai: OpenAIClient, policy: SessionPolicy) -> VoiceBackend:
    return {REALTIME: RealtimeBackend, LIVE: LiveBackend}[name](openai, policy)


class RealtimeBackend:
    """`POST /v1/realtime/calls` (multipart: the offer and the session); ended by `Hangup`."""

    name = REALTIME

    def __init__(self, openai: OpenAIClient, policy: SessionPolicy) -> None:
        self._openai = openai
        self._policy = policy
        self._events = policy.data_channel  # an audio-only call has no channel to carry any event

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]:
        # Always multipart with a session part: the raw-SDP form is for ephemeral tokens only.
        session = self._policy.realtime_session(choice, events=self._events)
        files = {"sdp": (None, offer_sdp, "application/sdp"),
                 "session": (None, json.dumps(session), "application/json")}
        timed = self._openai.post(REALTIME_CALLS, api_key, safety_identifier, files=files,
                                  headers={"Accept": "application/sdp"}, may_repeat=False)
        return Timed(_realtime_call(timed.value), timed.latency_ms)


def _realtime_call(response: httpx.Response) -> CreatedCall:
    location = response.headers.get("location", "")
    call_id = location.rstrip("/").rsplit("/", 1)[-1]
    answer = response.text
    if response.status_code != 201 or not call_id.startswith("rtc_") or not answer.lstrip().startswith("v=0"):
        raise UpstreamFailure(FailureKind.ERROR, response.status_code,
                              f"{response.status_code} without an SDP answer and an rtc_ Location",
                              may_have_acted=True)
    return CreatedCall(call_id, answer)


class LiveBackend:
    """GPT-Live: `POST /v1/live/sessions` (JSON: the session and the WebRTC offer), ended as `LiveHangup` says.
    There are no ephemeral tokens in this API at all: only a server can start a session."""

    name = LIVE

    def __init__(self, openai: OpenAIClient, policy: SessionPolicy) -> None:
        self._openai = openai
        self._policy = policy

    def create_call(self, api_key: str, offer_sdp: str, choice: SessionChoice,
                    safety_identifier: str) -> Timed[CreatedCall]:
        # The caller's hashed id goes in the session, GPT-Live's own field for it (not the Realtime API's header).
        session = {**self._policy.live_session(choice), "safety_identifier": safety_identifier}
        body = {"session": session, "transport": {"type": "webrtc", "sdp": offer_sdp}}
        timed = self._openai.post(LIVE_SESSIONS, api_key, json=body, headers={"Accept": "application/json"},
                                  may_repeat=False)
        return Timed(_live_session(timed.value), timed.latency_ms)


def _live_session(response: httpx.Response) -> CreatedCall:
    try:
        data = response.json()
        session_id, answer = data["session"]["id"], data["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        session_id = answer = None
    if (response.status_code != 201 or not isinstance(session_id, str) or not session_id.startswith("live_")
            or not isinstance(answer, str) or not answer.lstrip().startswith("v=0")):
        raise UpstreamFailure(FailureKind.ERROR, response.status_code,
                              f"{response.status_code} without a live_ session id and an SDP answer",
                              may_have_acted=True)
    return CreatedCall(session_id, answer)
